"""``features``: the pretrained model stays frozen and embeds every text once; a small head trains on top.

The classic feature-based transfer: pooled hidden states (``method.pooling`` mean / cls /
last_token, from ``method.layer``) go into a logistic-regression layer or a one-hidden-layer MLP.
Embeddings are cached on disk (see ``features.cache``), so a second task over the same texts
trains without running the model again. The training loop then runs over the vectors alone: the
same optimizer, schedule, budget and metrics as every other method. The artifact is the head
(``feature_head.safetensors``) and how it was made (``feature_head.json``); the base model is
loaded from where it was, as for adapters.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError
from tunelab.features.cache import embeddings_for
from tunelab.features.embedding import Pooling
from tunelab.methods.base import Method, TrainingPlan
from tunelab.run_files import is_run_folder

if TYPE_CHECKING:
    from torch import nn

    from tunelab.data.collate import Batch
    from tunelab.data.pipeline import PreparedData
    from tunelab.models.loading import ClassifierHead

log = logging.getLogger("tunelab")
HEAD_WEIGHTS = "feature_head.safetensors"
HEAD_CONFIG = "feature_head.json"


class FeaturesOptions(MethodOptions):
    name: Literal["features"] = "features"
    pooling: Pooling = Field("mean", description="mean | cls | last_token: how token states become one vector")
    layer: int = Field(-1, description="hidden layer to pool (-1: the last; 0: the embeddings)")
    head: Literal["logistic", "mlp"] = Field("logistic", description="logistic | mlp")
    hidden_size: int = Field(256, gt=0, description="mlp only: hidden width")
    dropout: float = Field(0.1, ge=0, lt=1, description="mlp only: dropout before the output layer")
    cache: bool = Field(True, description="reuse embeddings cached on disk for the same model and texts")


class FeatureBased(Method):
    # the head is a convex problem on cached embeddings: several cheap epochs bring it near convergence
    recommended = {"classification": {"lr": 3e-2, "epochs": 5}}
    name = "features"
    options_type = FeaturesOptions
    summary = "frozen model as an embedding extractor, a logistic or MLP head trained on top"
    trains = "the head only; embeddings computed once and cached"
    saves_adapter_only = True
    tasks = ("classification",)

    def padding_side(self, model: nn.Module) -> str:
        """Right: the embeddings pool with the attention mask, and the stored ones were embedded so."""
        return "right"

    def batch_function(self, model: nn.Module, task: str, pad_id: int) -> Callable[[list[Any]], Batch]:
        """The stored embeddings stacked (``transform_items`` made every example one)."""
        from tunelab.data.collate import collate_embedded

        return collate_embedded

    def load_base(self, reference: str, precision: str, head: ClassifierHead | None = None) -> nn.Module:
        """The bare encoder (no task head); a run folder is loaded whole and its hidden states used."""
        import torch

        from tunelab.methods.loading import load_model
        from tunelab.models.loading import load_backbone

        if is_run_folder(reference):
            return load_model(reference, dtype=torch.float32, merge_adapters=True)
        return load_backbone(reference, torch.float32)

    def transform_items(
        self, model: nn.Module, data: PreparedData, options: MethodOptions, plan: TrainingPlan
    ) -> PreparedData:
        """Every example becomes its embedding (from the cache where the same texts were embedded)."""
        from tunelab.data.classification import EmbeddedExample

        assert isinstance(options, FeaturesOptions)
        started = time.perf_counter()
        # the configured model (a run folder stays a run folder, its adapter part of the cache key)
        reference = plan.model_reference or str(getattr(model.config, "_name_or_path", ""))
        converted = {}
        for part in ("train", "eval"):
            items = getattr(data, part)
            if not items:
                converted[part] = []
                continue
            sequences = [item.input_ids for item in items]
            vectors, cached = embeddings_for(model, reference, sequences, options.pooling, options.layer, options.cache)
            where = "used the embedding cache for" if cached else "embedded"
            log.info(f"features: {where} {len(sequences)} {part} texts")
            converted[part] = [
                EmbeddedExample(vector, item.label, len(item.input_ids))
                for vector, item in zip(vectors, items, strict=True)
            ]
        return replace(
            data, train=converted["train"], eval=converted["eval"], method_seconds=time.perf_counter() - started
        )

    def prepare(self, model: nn.Module, options: MethodOptions, plan: TrainingPlan) -> nn.Module:
        from tunelab.features.classifier import FeatureClassifier, build_head

        assert isinstance(options, FeaturesOptions)
        if len(plan.labels) < 2:
            raise UserError("method features trains a classifier: set task: classification")
        width = _embedding_width(model, options)
        return FeatureClassifier(model, build_head(options, width, len(plan.labels)), options, list(plan.labels))

    def save_artifact(self, model: nn.Module, directory: Path, base_reference: str) -> None:
        from safetensors.torch import save_file

        from tunelab.features.classifier import FeatureClassifier

        assert isinstance(model, FeatureClassifier)
        weights = {key: value.detach().contiguous().cpu() for key, value in model.head.state_dict().items()}
        save_file(weights, Path(directory) / HEAD_WEIGHTS, metadata={"format": "pt"})
        config = {
            **model.options.model_dump(),
            "labels": model.labels,
            "input_size": _embedding_width(model.encoder, model.options),
            "base_model_name_or_path": base_reference,
        }
        (Path(directory) / HEAD_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def load_artifact(self, base_model: nn.Module, directory: Path) -> nn.Module:
        from safetensors.torch import load_file

        from tunelab.features.classifier import FeatureClassifier, build_head

        config_path, weights_path = Path(directory) / HEAD_CONFIG, Path(directory) / HEAD_WEIGHTS
        if not config_path.is_file() or not weights_path.is_file():
            raise UserError(f"{directory}: no feature head ({HEAD_CONFIG}, {HEAD_WEIGHTS})")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        options = FeaturesOptions.model_validate({key: config[key] for key in FeaturesOptions.model_fields})
        head = build_head(options, config["input_size"], len(config["labels"]))
        head.load_state_dict(load_file(weights_path))
        return FeatureClassifier(base_model, head, options, config["labels"]).eval()


def _embedding_width(model: nn.Module, options: FeaturesOptions) -> int:
    config = model.config
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise UserError(f"method features: cannot tell the hidden size of {type(model).__name__}")
