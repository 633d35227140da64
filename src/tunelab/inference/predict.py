"""Label texts with a finished classification run: each label with its probability.

Works for every method, including feature-based runs (the frozen encoder embeds, the head
classifies). Texts are tokenized as in training (special tokens, ``data.max_length``) and padded
on the side the architecture reads its label from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.config.schema import PromptConfig
from tunelab.data.classification import classifier_text
from tunelab.errors import UserError
from tunelab.run_files import is_run_folder, read_run_config, read_summary

PREDICT_BATCH = 32


@dataclass
class Prediction:
    text: str
    label: str
    probabilities: dict[str, float]  # every label, most likely first

    def to_record(self) -> dict:
        return {"text": self.text, "label": self.label, "probabilities": self.probabilities}


def classification_labels(run_dir: Path) -> list[str]:
    if not is_run_folder(run_dir):
        raise UserError(f"{run_dir} is not a finished tunelab run (no config.yaml and summary.json)")
    summary = read_summary(run_dir)
    if summary.get("task") != "classification":
        raise UserError(f"{run_dir} is a '{summary.get('task')}' run; predict labels texts with a classification run")
    return list(summary["labels"])


def predict_labels(
    run_dir: str | Path, texts: Sequence[str | dict[str, Any]], batch_size: int = PREDICT_BATCH
) -> list[Prediction]:
    """Each text's most likely label and the probability of every label. A text may be a row of
    fields (``text`` and any a prompt template names): it is worded as the run was trained."""
    import torch

    from tunelab.data.classification import ClassificationExample
    from tunelab.data.collate import collate_classification, padding_id
    from tunelab.inference.generate import best_device
    from tunelab.methods.base import Method, padding_side_by_architecture
    from tunelab.methods.loading import load_model
    from tunelab.methods.registry import get_method
    from tunelab.models.loading import load_tokenizer

    run_dir = Path(run_dir)
    labels = classification_labels(run_dir)
    if not texts:
        return []
    run_config = read_run_config(run_dir)
    max_length = int(run_config.get("data", {}).get("max_length", 512))
    prompt = PromptConfig(**(run_config.get("prompt") or {}))
    rows = [{"text": text} if isinstance(text, str) else text for text in texts]
    texts = [row["text"] for row in rows]
    inputs = [classifier_text(row, prompt, Path("input"), index) for index, row in enumerate(rows)]
    tokenizer = load_tokenizer(str(run_dir))
    model = load_model(str(run_dir), dtype=torch.float32).to(best_device()).eval()
    method = get_method(run_config["method"]["name"])
    side = method.padding_side(model) if isinstance(method, Method) else padding_side_by_architecture(model)
    pad_id = padding_id(tokenizer)
    encoded = tokenizer(inputs, truncation=True, max_length=max_length)["input_ids"]
    predictions = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            items = [ClassificationExample(list(ids), 0) for ids in encoded[start : start + batch_size]]
            batch = collate_classification(items, pad_id, side).to(next(model.parameters()).device)
            probabilities = torch.softmax(model(**batch.model_inputs).logits.float(), dim=-1).cpu()
            for text, row in zip(texts[start : start + batch_size], probabilities, strict=True):
                ranked = sorted(zip(labels, row.tolist(), strict=True), key=lambda pair: -pair[1])
                predictions.append(Prediction(text, ranked[0][0], dict(ranked)))
    return predictions
