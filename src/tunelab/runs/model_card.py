"""The run folder's README.md: a model card a reader (or the Hugging Face hub) can trust.

PEFT writes an empty template whose ``base_model`` is a local path; this card says what the folder
holds instead: the base model and where it came from, the method and its options, the data files
(rows and SHA-256), the budget, the final metrics, how to load it with transformers / PEFT and with
tunelab, and the tunelab version. It is rebuilt from config.yaml and summary.json each time the
summary is written, so it never disagrees with them. No library writes a card from a training run's
own record, which is why this one is ours.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from tunelab.data.loading import count_rows
from tunelab.metrics import SUMMARY_METRICS
from tunelab.models.gguf import file_sha256
from tunelab.models.resolve import gguf_source, looks_like_path, model_location
from tunelab.run_files import read_run_config

CARD_FILE = "README.md"
# summary figures worth a reader's attention, in the order shown
RESULT_KEYS = ("train_loss", "eval_loss", *SUMMARY_METRICS)
ADAPTER_FILE = "adapter_config.json"
WHOLE_MODEL_FILE = "config.json"


def file_facts(path: Path) -> dict[str, Any]:
    """The data file's rows (``count_rows``) and SHA-256."""
    return {"rows": count_rows(path), "sha256": file_sha256(path)}


def tunelab_version() -> str:
    try:
        return metadata.version("tunelab")
    except metadata.PackageNotFoundError:
        return "unknown"


def _base_source(reference: str) -> str:
    gguf = gguf_source(reference)
    if gguf is not None:
        return f"GGUF file `{gguf.file}` (SHA-256 `{gguf.sha256}`), dequantised to `{gguf.folder}`"
    if _is_hub_id(reference):
        return f"Hugging Face hub: https://huggingface.co/{reference}"
    location = model_location(reference)
    return f"local folder `{location}`" if location != reference else "local folder"


def _pretrained(config: dict[str, Any]) -> str | None:
    """The pretrained model the run started from; None for a model built from scratch (a mapping)."""
    model = config.get("model")
    return None if isinstance(model, dict) else str(model)


def _is_hub_id(reference: str) -> bool:
    """A name on the Hugging Face hub: not a GGUF file or packaged model (those resolve to a folder of
    their own), not a local path."""
    local = looks_like_path(reference) or Path(reference).exists()
    return model_location(reference) == reference and not local


def _loading_snippet(folder: Path, config: dict[str, Any], summary: dict[str, Any]) -> str:
    classifier = summary.get("task") == "classification"
    auto = "AutoModelForSequenceClassification" if classifier else "AutoModelForCausalLM"
    pretrained = _pretrained(config)
    if (folder / ADAPTER_FILE).is_file() and pretrained is not None:
        base = model_location(pretrained)
        return (
            f"from peft import PeftModel\nfrom transformers import AutoTokenizer, {auto}\n\n"
            f'base = {auto}.from_pretrained("{base}")\n'
            f'model = PeftModel.from_pretrained(base, "{folder}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{folder}")'
        )
    if (folder / WHOLE_MODEL_FILE).is_file():
        return (
            f"from transformers import AutoTokenizer, {auto}\n\n"
            f'model = {auto}.from_pretrained("{folder}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{folder}")'
        )
    return ""


def _tunelab_usage(folder: Path, summary: dict[str, Any]) -> str:
    if summary.get("task") == "classification":
        return f'tunelab predict {folder} --text "..."\ntunelab eval {folder} --data held-out.jsonl'
    merge = (
        f"\ntunelab merge {folder} --output merged/    # a standalone transformers model"
        if (folder / ADAPTER_FILE).is_file()
        else ""
    )
    return f'tunelab generate {folder} --prompt "..."{merge}'


def _front_matter(config: dict[str, Any], summary: dict[str, Any], adapter: bool) -> str:
    meta: dict[str, Any] = {"library_name": "peft" if adapter else "transformers"}
    pretrained = _pretrained(config)
    if pretrained is not None and _is_hub_id(pretrained):
        meta["base_model"] = pretrained
    meta["pipeline_tag"] = "text-classification" if summary.get("task") == "classification" else "text-generation"
    meta["tags"] = ["tunelab", str(config["method"]["name"]), str(summary.get("task", "causal_lm"))]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _figure(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if value == 0 or abs(value) >= 0.01 else f"{value:.3g}"


def model_card(folder: Path | str, summary: dict[str, Any]) -> str:
    """The card's Markdown for the run in ``folder`` with this ``summary``."""
    folder = Path(folder).absolute()
    config = read_run_config(folder)
    method = dict(config.get("method") or {})
    adapter = (folder / ADAPTER_FILE).is_file()
    train = config.get("train") or {}
    data = config.get("data") or {}
    task = summary.get("task", config.get("task", "causal_lm"))
    pretrained = _pretrained(config)
    if pretrained is None:
        scratch = config["model"]
        base, source = (
            f"a {scratch.get('architecture', 'model')} built from scratch",
            (f"initialised at random as config.yaml's `model` says, tokenizer `{scratch.get('tokenizer')}`"),
        )
    else:
        base, source = f"`{pretrained}`", _base_source(pretrained)

    parts = [
        _front_matter(config, summary, adapter),
        f"# {folder.name}\n",
        f"`{method.get('name')}` on {base} for {task}, trained with tunelab {tunelab_version()}.\n",
        "## Base model\n",
        f"- {base}: {source}\n",
        "## Method\n",
        _table(("option", "value"), [(key, f"`{value}`") for key, value in method.items()]) + "\n",
        f"Trainable parameters: {summary.get('trainable_params', 0):,} of {summary.get('total_params', 0):,}"
        + (f" ({summary['trainable_pct']:.4f}%)" if isinstance(summary.get("trainable_pct"), float) else "")
        + ".\n",
    ]
    files = [(part, Path(data[part])) for part in ("train", "eval") if data.get(part)]
    if files:
        rows = []
        for part, path in files:
            facts = file_facts(path) if path.is_file() else {"rows": "missing", "sha256": ""}
            rows.append((part, f"`{path}`", facts["rows"], f"`{facts['sha256']}`"))
        parts += ["## Data\n", _table(("split", "file", "rows", "SHA-256"), rows) + "\n"]
        if data.get("format"):
            parts.append(
                f"Format: `{summary.get('data_format', data['format'])}`, max length {data.get('max_length')}.\n"
            )
    budget = [
        ("optimizer steps", summary.get("steps")),
        ("epochs", summary.get("epochs")),
        ("tokens seen", summary.get("tokens_seen")),
        ("batch size × accumulation", f"{train.get('batch_size')} × {train.get('grad_accum')}"),
        ("learning rate", train.get("lr")),
        ("precision", summary.get("precision", train.get("precision"))),
        ("processes", summary.get("processes")),
        ("training time (s)", summary.get("train_time_s")),
        ("seed", train.get("seed")),
    ]
    parts += ["## Budget\n", _table(("", "value"), [(k, _figure(v)) for k, v in budget if v is not None]) + "\n"]
    results = [(key, _figure(summary[key])) for key in RESULT_KEYS if summary.get(key) is not None]
    if results:
        parts += ["## Results\n", _table(("metric", "value"), results) + "\n"]
    snippet = _loading_snippet(folder, config, summary)
    parts.append("## How to load it\n")
    if snippet:
        parts.append(f"With transformers{' and PEFT' if adapter else ''}:\n\n```python\n{snippet}\n```\n")
    parts.append(f"With tunelab:\n\n```bash\n{_tunelab_usage(folder, summary)}\n```\n")
    return "\n".join(parts)
