"""Every method over the tiny Llama and GPT-2, as PEFT's own suite does: each trains ~20 steps
with the loss going down, leaves the base weights alone, saves only what trained, reloads to
identical logits and generates.

Adding a method means adding a row to ``METHODS``; a row is named after its method, or after the
PEFT type for the generic ``peft`` method (``peft-loha``), whose options then name the method.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import make_records, training_config, write_jsonl
from tunelab.errors import UserError
from tunelab.inference.generate import generate_text
from tunelab.methods.last_layers import find_transformer_blocks
from tunelab.methods.loading import load_causal_lm
from tunelab.training.recipe import train

PEFT = {"method.name": "peft", "train.max_steps": 10}
METHODS = {
    "full": {},
    "last_layers": {"method.layers": 1},
    "lora": {"method.r": 4},
    "dora": {"method.r": 4},
    "qlora": {"method.r": 4},
    "adalora": {"method.init_r": 6, "method.target_r": 2},
    "ia3": {},
    "prefix": {"method.virtual_tokens": 4},
    # the tiny random models answer near-uniformly: a prompt needs a large step to move them
    "prompt": {"method.virtual_tokens": 8, "method.init_text": "say the word", "train.lr": 0.3},
    "ptuning": {"method.virtual_tokens": 4, "method.encoder_hidden_size": 16},
    "multitask_prompt": {"method.virtual_tokens": 8, "train.lr": 0.3},
    "llama_adapter": {"method.adapter_len": 4, "method.adapter_layers": 1},
    "adapter": {"method.reduction_factor": 8},
    # the generic PEFT method, one row per type: PEFT's defaults but smaller ranks and frequency
    # counts, for speed, and 10 steps; VeRA trains two scaling vectors per layer and needs a larger
    # step to move the tiny model at all
    "peft-loha": {**PEFT, "method.type": "loha", "method.r": 4},
    "peft-lokr": {**PEFT, "method.type": "lokr", "method.r": 4},
    "peft-vera": {**PEFT, "method.type": "vera", "method.r": 16, "train.lr": 0.1},
    "peft-oft": {**PEFT, "method.type": "oft"},
    "peft-boft": {**PEFT, "method.type": "boft"},
    "peft-fourierft": {**PEFT, "method.type": "fourierft", "method.n_frequency": 200},
}
METHOD_NAMES = {options.get("method.name", row) for row, options in METHODS.items()}
PEFT_ROWS = [row for row in METHODS if row.startswith("peft-")]
ARCHITECTURES = ["tiny_llama", "tiny_gpt2"]
UNSUPPORTED: dict[tuple[str, str], str] = {  # (method, architecture) -> why it is skipped
    (row, "tiny_gpt2"): f"PEFT's {row.removeprefix('peft-')} has no layer for GPT-2's Conv1D (test_peft_method.py)"
    for row in ("peft-loha", "peft-lokr", "peft-oft", "peft-boft")
}
WHOLE_MODEL = {"full", "last_layers"}
IDS = torch.tensor([[1, 10, 20, 30, 40, 50, 60]])


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    rows = [{**row, "task": index % 2} for index, row in enumerate(make_records(48))]
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", rows)


@pytest.fixture(scope="module")
def trained(request, task_data, tmp_path_factory):
    """Train each (method, architecture) once for all the tests below."""
    runs = {}

    def run(method: str, architecture: str):
        if (method, architecture) in UNSUPPORTED:
            pytest.skip(UNSUPPORTED[method, architecture])
        if method == "qlora":
            pytest.importorskip("bitsandbytes", reason="qlora needs the quant extra (bitsandbytes)")
        if (method, architecture) not in runs:
            model_folder = request.getfixturevalue(architecture)
            options = {
                "method.name": method,
                "train.max_steps": 20,
                "train.lr": 1e-2,
                "train.batch_size": 8,
                "train.log_every": 1,
                **METHODS[method],
            }
            output = tmp_path_factory.mktemp(f"{method}-{architecture}")
            runs[method, architecture] = (
                model_folder,
                train(training_config(model_folder, task_data, output, **options), progress=False),
            )
        return runs[method, architecture]

    return run


def _inputs(method: str) -> dict:
    inputs = {"input_ids": IDS, "attention_mask": torch.ones_like(IDS)}
    if method == "multitask_prompt":
        inputs["task_ids"] = torch.tensor([1])
    return inputs


def _logits(model, method):
    with torch.no_grad():
        logits = model(**_inputs(method)).logits
    return logits[:, -IDS.shape[1] :]  # prompt methods prepend virtual tokens


MATRIX = [(m, a) for m in METHODS for a in ARCHITECTURES]


@pytest.mark.parametrize(("method", "architecture"), MATRIX)
def test_loss_goes_down(trained, method, architecture):
    _, result = trained(method, architecture)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


@pytest.mark.parametrize(("method", "architecture"), MATRIX)
def test_artifact_reloads_to_identical_logits_and_generates(trained, method, architecture):
    _, result = trained(method, architecture)
    reloaded = load_causal_lm(str(result.run_dir)).eval()
    torch.testing.assert_close(_logits(reloaded, method), _logits(result.model, method), atol=1e-5, rtol=1e-5)
    task = "1" if method == "multitask_prompt" else None
    text = generate_text(str(result.run_dir), prompt="robot say fox:", max_new_tokens=6, task=task)
    assert isinstance(text, str)


def _normalised(name: str) -> list[str]:
    """The names a base parameter may have had before PEFT wrapped its modules."""
    unwrapped = re.sub(r"\.(self_attn|attn)\.model\.", r".\1.", name.replace(".base_layer", ""))
    # LoRA-style tuners add "base_model.model.", prompt learning only "base_model."
    return [unwrapped.removeprefix("base_model.model."), unwrapped.removeprefix("base_model.")]


@pytest.mark.parametrize(
    ("method", "architecture"), [(m, a) for m, a in MATRIX if m not in WHOLE_MODEL and m != "qlora"]
)
def test_base_weights_are_unchanged(trained, method, architecture):
    model_folder, result = trained(method, architecture)
    fresh = load_causal_lm(str(model_folder))
    trained_params = {
        alias: p for name, p in result.model.named_parameters(remove_duplicate=False) for alias in _normalised(name)
    }
    compared = 0
    for name, parameter in fresh.named_parameters():
        counterpart = trained_params.get(name)
        assert counterpart is not None, f"{name} not found in the trained model"
        assert not counterpart.requires_grad
        torch.testing.assert_close(counterpart.data.float(), parameter.data.float(), atol=0, rtol=0)
        compared += 1
    assert compared == len(list(fresh.named_parameters()))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_last_layers_trains_only_the_top_block(trained, architecture):
    model_folder, result = trained("last_layers", architecture)
    base = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    before = {name: tensor.clone() for name, tensor in base.state_dict().items()}
    after = result.model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    blocks = find_transformer_blocks(base)
    top = {name for name, p in base.named_parameters() if any(p is q for q in blocks[-1].parameters())}
    bottom = {name for name, p in base.named_parameters() if any(p is q for q in blocks[0].parameters())}
    assert top <= changed
    assert not bottom & changed


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_lora_trainable_params_match_the_formula(trained, architecture):
    model_folder, result = trained("lora", architecture)
    base = AutoModelForCausalLM.from_pretrained(model_folder)
    head = base.get_output_embeddings()
    expected = 0
    for module in base.modules():
        if module is head or type(module).__name__ not in ("Linear", "Conv1D"):
            continue
        weight = module.weight  # Conv1D (GPT-2) stores (in, out), Linear (out, in): r * (in + out) either way
        expected += 4 * (weight.shape[0] + weight.shape[1])
    assert result.summary["trainable_params"] == expected
    saved = load_file(result.run_dir / "adapter_model.safetensors")
    assert sum(t.numel() for t in saved.values()) == expected  # the artifact holds only what trained


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_prompt_trainable_params_match_the_formula(trained, request, architecture):
    _, result = trained("prompt", architecture)
    hidden = result.model.config.hidden_size
    assert result.summary["trainable_params"] == 8 * hidden  # virtual tokens x embedding width


def test_adalora_allocator_prunes_ranks_below_the_initial_rank(trained):
    from tunelab.methods.adalora import ranks

    _, result = trained("adalora", "tiny_llama")
    final = ranks(result.model)
    assert final and max(final.values()) <= 6
    assert sum(final.values()) < 6 * len(final)  # the budget was cut: not every layer kept init_r
    assert sum(final.values()) <= 2 * len(final) + len(final)  # about target_r on average


def test_qlora_base_is_4bit_and_smaller(trained):
    _, lora = trained("lora", "tiny_llama")
    _, qlora = trained("qlora", "tiny_llama")
    assert qlora.summary["base_weights_bytes"] < 0.6 * lora.summary["base_weights_bytes"]
    assert qlora.summary["total_params"] == lora.summary["total_params"]
    quantized = [m for m in qlora.model.modules() if type(m).__name__ == "Linear4bit"]
    assert quantized and not any(m.weight.requires_grad for m in quantized)  # the 4-bit base stays frozen


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_llama_adapter_starts_as_the_base_model(request, architecture, task_data, tmp_path):
    from tunelab.config.schema import parse_method_options
    from tunelab.methods.base import TrainingPlan
    from tunelab.methods.registry import available_methods, get_method

    model_folder = request.getfixturevalue(architecture)
    base = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = base(input_ids=IDS).logits
    method = get_method("llama_adapter")
    options = parse_method_options(
        {"name": "llama_adapter", "adapter_len": 4, "adapter_layers": 1}, available_methods()
    )
    adapted = method.prepare(
        AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32), options, TrainingPlan()
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(adapted(input_ids=IDS).logits, expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method.name": "lora", "method.target_modules": "[not_a_module]"}, "not_a_module"),
        ({"method.name": "last_layers", "method.layers": 9}, "only 2 blocks"),
        ({"method.name": "prefix", "data.packing": True}, "cannot keep packed examples apart"),
        ({"method.name": "llama_adapter", "method.adapter_layers": 5}, "only 2 layers"),
    ],
)
def test_options_that_do_not_fit_are_clear_errors(tiny_llama, tmp_path, prompt_completion_file, options, message):
    with pytest.raises(UserError, match=message):
        train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run", **options), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("method", ["prefix", "prompt", "ptuning", "multitask_prompt", "llama_adapter"])
def test_merge_refuses_methods_that_cannot_merge(trained, method, tmp_path, capsys):
    from tunelab.cli.main import main

    _, result = trained(method, "tiny_llama")
    assert main(["merge", str(result.run_dir), "--output", str(tmp_path / "merged")]) == 2
    assert "cannot be merged" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("method", ["dora", "ia3", "adalora", "qlora", *PEFT_ROWS])
def test_merge_matches_base_plus_adapter(trained, method, tmp_path):
    from tunelab.inference.merge import merge_run

    model_folder, result = trained(method, "tiny_llama")
    merged = AutoModelForCausalLM.from_pretrained(merge_run(result.run_dir, tmp_path / "merged")).eval()
    adapted = load_causal_lm(str(result.run_dir)).eval()
    # qlora merges into the dequantised 4-bit base; bitsandbytes' CPU kernels round a little differently
    atol, rtol = (5e-3, 1e-2) if method == "qlora" else (1e-5, 1e-5)
    torch.testing.assert_close(_logits(merged, method), _logits(adapted, method), atol=atol, rtol=rtol)


def test_a_lora_run_can_be_the_base_of_the_next_stage(tiny_llama, tmp_path, prompt_completion_file):
    first = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "one"), progress=False)
    second = train(training_config(first.run_dir, prompt_completion_file, tmp_path / "two"), progress=False)
    merged_first = load_causal_lm(str(first.run_dir)).merge_and_unload()
    base_of_second = second.model.unload()
    torch.testing.assert_close(
        _logits(base_of_second, "lora"), _logits(merged_first.eval(), "lora"), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("method", ["prefix", "prompt", "llama_adapter", "adapter", "lora"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_generation_with_the_kv_cache_matches_without(trained, method, architecture):
    """Prefix tuning and LLaMA-Adapter are where generation with a cache breaks elsewhere."""
    _, result = trained(method, architecture)
    model = load_causal_lm(str(result.run_dir)).eval()
    sequence = torch.tensor([[1, 12, 24, 36]])
    eos = model.config.eos_token_id
    with torch.no_grad():
        cached = model.generate(
            input_ids=sequence,
            attention_mask=torch.ones_like(sequence),
            max_new_tokens=8,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )[0, sequence.shape[1] :].tolist()
        recomputed = []  # greedy by hand: the whole sequence again at every step, no cache reused
        while len(recomputed) < 8 and (not recomputed or recomputed[-1] != eos):
            logits = model(input_ids=sequence, attention_mask=torch.ones_like(sequence)).logits
            next_token = int(logits[0, -1].argmax())
            recomputed.append(next_token)
            sequence = torch.cat([sequence, torch.tensor([[next_token]])], dim=1)
    assert cached == recomputed


@pytest.mark.parametrize("method", [m for m in METHODS if m not in WHOLE_MODEL and m != "ptuning"])
def test_artifact_holds_exactly_what_trained(trained, method):
    _, result = trained(method, "tiny_llama")
    saved = load_file(result.run_dir / "adapter_model.safetensors")
    stored = sum(t.numel() for t in saved.values() if t.is_floating_point())
    if method == "adalora":  # PEFT stores only the ranks the allocator kept
        assert 0 < stored < result.summary["trainable_params"]
    elif method == "peft-vera":  # and VeRA its frozen random projections, shared by every layer
        projections = sum(t.numel() for name, t in saved.items() if name.rsplit(".", 1)[-1] in ("vera_A", "vera_B"))
        assert projections and stored == result.summary["trainable_params"] + projections
    else:
        assert stored == result.summary["trainable_params"]


def test_methods_listing_counts_parameters_without_training(tiny_llama):
    from tunelab.methods.listing import list_methods

    listings = {item.name: item for item in list_methods(str(tiny_llama))}
    # features trains classifiers only (tests/methods/test_features.py); the rest train nothing
    assert set(listings) == METHOD_NAMES | {"features", "zeroshot", "fewshot", "rag"}
    for name in ("zeroshot", "fewshot", "rag"):
        assert listings[name].trainable_params == 0 and listings[name].total_params == listings["full"].total_params
    assert "classification" in listings["features"].note
    for name in METHOD_NAMES:
        item = listings[name]
        assert item.trainable_params and 0 < item.trainable_pct <= 100, item
    assert listings["full"].trainable_pct == 100
    assert listings["lora"].trainable_params == 16_384  # r=8 on every linear layer of the tiny Llama
    assert listings["peft"].trainable_params == 16_384  # its default type is lora, at PEFT's r=8


def test_qlora_on_gpt2_merges_into_a_loadable_model(trained, tmp_path):
    from tunelab.inference.merge import merge_run

    _, result = trained("qlora", "tiny_gpt2")
    merged = AutoModelForCausalLM.from_pretrained(merge_run(result.run_dir, tmp_path / "merged")).eval()
    assert merged(**_inputs("qlora")).logits.shape[-1] == result.model.config.vocab_size


def test_multitask_tasks_are_named_as_in_the_data(trained):
    _, result = trained("multitask_prompt", "tiny_llama")
    assert result.summary["task_ids"] == {"0": 0, "1": 1}
    with pytest.raises(UserError, match="choose one with --task"):
        generate_text(str(result.run_dir), prompt="hi", max_new_tokens=2)
    with pytest.raises(UserError, match="only to a multi-task"):
        generate_text(str(trained("lora", "tiny_llama")[1].run_dir), prompt="hi", max_new_tokens=2, task="0")


def test_adalora_refuses_to_resume(tiny_llama, prompt_completion_file, tmp_path):
    config = training_config(
        tiny_llama, prompt_completion_file, tmp_path / "run", **{"method.name": "adalora", "train.resume": True}
    )
    with pytest.raises(UserError, match="cannot resume"):
        train(config, progress=False)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_in_bf16_with_its_trained_weights_in_fp32(method, tiny_llama, task_data, tmp_path):
    """train.precision=bf16 on the CPU: autocast over a bf16 frozen base (adapter methods) or fp32
    weights (full, last layers); a few steps with finite losses, and what trains stays fp32."""
    if method == "qlora":
        pytest.importorskip("bitsandbytes", reason="qlora needs the quant extra (bitsandbytes)")
    options = {"method.name": method, "train.lr": 1e-2, "train.batch_size": 8, **METHODS[method]}
    options.update({"train.max_steps": 3, "train.log_every": 1, "train.precision": "bf16"})
    result = train(training_config(tiny_llama, task_data, tmp_path / "run", **options), progress=False)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(map(math.isfinite, losses)) and result.summary["precision"] == "bf16"
    trained_dtypes = {p.dtype for p in result.model.parameters() if p.requires_grad}
    assert trained_dtypes == {torch.float32}, trained_dtypes
