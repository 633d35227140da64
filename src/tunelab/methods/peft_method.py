"""``peft``: any PEFT tuner, chosen by ``method.type`` (LoHa, LoKr, VeRA, OFT, BOFT, FourierFT, ...,
LoRA, IA3), with that tuner's own options; and ``PeftPreset``, what ``lora``, ``dora`` and ``ia3``
are: one PEFT type under tunelab's option names and defaults.

PEFT builds, trains, saves, reloads and merges every tuner; what is ours is small: the options are
checked against the type's PEFT config class before anything loads (peft_types), PEFT's task type
follows the run's task, ``target_modules`` is filled where the user gives none
(peft_types.TYPE_DEFAULTS), a classifier's head trains and is saved with the adapter (peft_adapter),
and every refusal is one line. Types another tunelab method trains (prompt learning, LLaMA-Adapter's
adaption prompt, AdaLoRA) are refused with the method to use rather than routed to it, so that a
run's config.yaml always names the method that trained it and reloads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError, first_line
from tunelab.methods.base import TrainingPlan, peft_task_type
from tunelab.methods.peft_adapter import PeftAdapterMethod

if TYPE_CHECKING:
    from peft import PeftConfig

DEFAULT_TYPE = "lora"


class PeftOptions(MethodOptions):
    """``type`` and, as further keys, that PEFT type's options under PEFT's own names (``r``,
    ``lora_alpha``, ``boft_block_size``); the defaults tunelab fills in are recorded with them."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: Literal["peft"] = "peft"
    type: str = Field(
        DEFAULT_TYPE,
        description="PEFT tuner: loha, lokr, vera, oft, boft, fourierft, lora, ia3, ... (any in PEFT's registry); "
        "other method.* keys are its PEFT config's options",
    )

    @model_validator(mode="before")
    @classmethod
    def _tuner_options(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        from tunelab.methods.peft_types import resolve_type, resolved_options

        kind = resolve_type(value.get("type", DEFAULT_TYPE))
        given = {key: option for key, option in value.items() if key not in ("name", "type")}
        return {"name": value.get("name", "peft"), "type": kind, **resolved_options(kind, given)}

    def tuner_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PeftTuner(PeftAdapterMethod):
    """A method that is one PEFT tuner: its options become that tuner's PEFT config."""

    can_merge = True  # where PEFT cannot merge a type, merge says so in one line (PeftAdapterMethod.merge)

    def tuner_type(self, options: MethodOptions | None) -> str:  # pragma: no cover
        raise NotImplementedError

    def tuner_options(self, options: MethodOptions) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def label(self, options: MethodOptions) -> str:
        kind = self.tuner_type(options)
        return self.name if kind == self.name else f"{self.name} ({kind})"

    def recommended_train(self, task: str, options: MethodOptions | None = None) -> dict[str, float]:
        from tunelab.methods.peft_types import recommended_train

        return recommended_train(self.tuner_type(options), task)

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from tunelab.methods.peft_types import tuner_config

        try:
            return tuner_config(self.tuner_type(options), self.tuner_options(options), peft_task_type(plan))
        except (ValueError, TypeError) as error:
            raise UserError(f"method {self.label(options)}: {first_line(error)}") from None


class PeftPreset(PeftTuner):
    """One PEFT type under tunelab's own option names and defaults (``lora``, ``dora``, ``ia3``)."""

    peft_type: ClassVar[str]
    renamed: ClassVar[dict[str, str]] = {}  # our option name -> PEFT's (alpha -> lora_alpha)
    fixed: ClassVar[dict[str, Any]] = {}  # PEFT options the preset always sets (DoRA: use_dora)

    def tuner_type(self, options: MethodOptions | None) -> str:
        return self.peft_type

    def tuner_options(self, options: MethodOptions) -> dict[str, Any]:
        ours = options.model_dump(exclude={"name"})
        return {**{self.renamed.get(key, key): value for key, value in ours.items()}, **self.fixed}


class Peft(PeftTuner):
    name = "peft"
    options_type = PeftOptions
    summary = "any PEFT tuner by method.type: lora unless set; loha, lokr, vera, oft, boft, fourierft, ... (PEFT)"
    trains = "what the PEFT type (method.type) trains, with its options"

    def tuner_type(self, options: MethodOptions | None) -> str:
        return options.type if isinstance(options, PeftOptions) else DEFAULT_TYPE

    def tuner_options(self, options: MethodOptions) -> dict[str, Any]:
        assert isinstance(options, PeftOptions)
        return options.tuner_options()
