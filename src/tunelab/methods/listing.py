"""``tunelab methods [--model M] [--task T]``: every method, what it trains, whether it merges, and,
given a model, how many parameters it would train with its default options (nothing is trained).

The count is for the task the model is for: an encoder (BERT, MiniLM) has no pretrained language-model
head, so by default it is counted as a classifier (with a two-label head); a decoder as a language model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from tunelab.errors import UserError
from tunelab.methods.base import Method, TrainingPlan
from tunelab.methods.in_context import InContextStrategy
from tunelab.methods.registry import available_methods


@dataclass
class MethodListing:
    name: str
    summary: str
    trains: str
    merges: bool
    trainable_params: int | None = None
    total_params: int | None = None
    note: str = ""
    recommended: dict[str, dict[str, float]] | None = None  # task -> train settings it starts from

    @property
    def trainable_pct(self) -> float | None:
        if self.trainable_params is None or not self.total_params:
            return None
        return 100.0 * self.trainable_params / self.total_params


# The head a classifier is counted with: two labels, the smallest a classification task has.
COUNTING_HEAD_LABELS = ("first", "second")


def default_task(model_reference: str) -> str:
    """``classification`` for an encoder (it has a masked-LM variant and no pretrained LM head), else
    ``causal_lm``; read from the model's config alone."""
    from transformers import AutoConfig

    from tunelab.models.heads import is_encoder_type
    from tunelab.models.resolve import model_location
    from tunelab.run_files import is_run_folder, run_task

    if is_run_folder(model_reference):
        return run_task(model_reference) or "causal_lm"
    model_type = AutoConfig.from_pretrained(model_location(model_reference)).model_type
    return "classification" if is_encoder_type(model_type) else "causal_lm"


def list_methods(model_reference: str | None = None, task: str | None = None) -> list[MethodListing]:
    """One listing per registered method; with a model, its trainable share under default options
    for ``task`` (by default the one the model is for, see ``default_task``)."""
    listings = []
    base = head = None
    if model_reference is not None:
        import torch

        from tunelab.methods.loading import load_model
        from tunelab.models.loading import ClassifierHead, run_head
        from tunelab.run_files import is_run_folder

        task = task or default_task(model_reference)
        if task == "classification":
            head = (run_head(model_reference) if is_run_folder(model_reference) else None) or ClassifierHead(
                COUNTING_HEAD_LABELS
            )
        base = load_model(model_reference, dtype=torch.float32, merge_adapters=True, head=head)
    for method in available_methods().values():
        listing = MethodListing(
            method.name, method.summary, method.trains, isinstance(method, Method) and method.can_merge
        )
        listing.recommended = {each: method.recommended_train(each) for each in method.tasks}
        if base is not None and task not in method.tasks:
            listing.note = f"trains {' and '.join(method.tasks)} only, not {task}"
        elif base is not None and isinstance(method, InContextStrategy):  # only the prompt changes: nothing to build
            from tunelab.models.size import count_parameters

            listing.trainable_params, listing.total_params = 0, count_parameters(base)[1]
        elif base is not None:
            assert isinstance(method, Method)
            try:
                options = method.options_type()
                plan = TrainingPlan(
                    total_steps=100,
                    model_reference=model_reference,
                    task=task,
                    labels=head.labels if head is not None else (),
                )
                fresh = (
                    method.load_base(model_reference, "fp32", head) if method.needs_own_base else copy.deepcopy(base)
                )
                prepared = method.prepare(fresh, options, plan)
                from tunelab.models.size import count_parameters

                listing.trainable_params, listing.total_params = count_parameters(prepared)
            except UserError as error:
                listing.note = str(error)
        listings.append(listing)
    return listings


def format_listing(listings: list[MethodListing]) -> str:
    lines = []
    for item in listings:
        merge = "merges" if item.merges else "no merge"
        line = f"{item.name:<17} {item.summary}\n{'':<17} trains: {item.trains}; {merge}"
        if item.trainable_pct is not None:
            line += f"; {item.trainable_params:,} of {item.total_params:,} parameters ({item.trainable_pct:.4f}%)"
        elif item.note:
            line += f"; n/a: {item.note}"
        defaults = [
            f"{task} " + ", ".join(f"{key} {value:g}" for key, value in settings.items())
            for task, settings in (item.recommended or {}).items()
            if settings
        ]
        if defaults:
            line += f"\n{'':<17} defaults: {'; '.join(defaults)}"
        lines.append(line)
    return "\n".join(lines)
