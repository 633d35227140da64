"""``tunelab methods [--model M]``: every method, what it trains, whether it merges, and, given a
model, how many parameters it would train with its default options (nothing is trained)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from tunelab.errors import UserError
from tunelab.methods.base import TrainingPlan
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


def list_methods(model_reference: str | None = None) -> list[MethodListing]:
    """One listing per registered method; with a model, its trainable share under default options."""
    listings = []
    base = None
    if model_reference is not None:
        import torch

        from tunelab.models.loading import load_causal_lm

        base = load_causal_lm(model_reference, dtype=torch.float32, merge_adapters=True)
    for method in available_methods().values():
        listing = MethodListing(method.name, method.summary, method.trains, method.can_merge)
        listing.recommended = {task: method.recommended_train(task) for task in method.tasks}
        if base is not None and method.trains_nothing:  # only the prompt changes: nothing to build
            from tunelab.training.measure import count_parameters

            listing.trainable_params, listing.total_params = 0, count_parameters(base)[1]
        elif base is not None:
            try:
                options = method.options_type()
                plan = TrainingPlan(total_steps=100, model_reference=model_reference)
                fresh = method.load_base(model_reference, "fp32") if method.name == "qlora" else copy.deepcopy(base)
                prepared = method.prepare(fresh, options, plan)
                from tunelab.training.measure import count_parameters

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
