"""A comparison file (COMPARE.yaml): one base config, one training budget, named entries.

Layout::

    output_dir: runs/compare-demo        # the comparison folder (default runs/compare)
    base: {model: ..., data: ..., train: ...}   # any train config keys except method / output_dir
    budget: {steps: 40}                  # or {tokens: 20000} or {epochs: 2}: the same for every entry
    seeds: 3                             # optional: every entry trains with 3 seeds (mean and spread)
    entries:
      - {name: lora-r8, method: {name: lora, r: 8}}
      - {name: full, method: full, train: {lr: 5e-5}}    # an entry may override any section
      - {name: big, method: full, resources: {cpus: 4, gpus: 1}}   # what its Ray task asks for

Each entry's config is ``base`` with the entry merged over it, the budget written into
``train.max_steps`` / ``train.max_tokens`` / ``train.epochs``, and its run folder ``output_dir/runs/<name>``. The seed
is the comparison's (``base.train.seed``): entries may not set it, nor the budget's keys. Relative
paths mean relative to the current directory, as in ``tunelab train`` and ``tunelab pipeline``.
``resources`` (in ``base`` or an entry, the entry's keys winning) is what the entry's task asks of
Ray under ``--executor ray``; it is not part of the train config, and the sequential executor
ignores it.
Dotted ``key=value`` overrides apply to the file's tree (``budget.steps=10``,
``base.train.batch_size=4``, ``entries.lora-r8.method.r=4``). Everything is validated here, before
anything trains; what runs the entries is ``tunelab.compare.runner``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.config.loading import apply_override, deep_merge, read_yaml_mapping
from tunelab.config.schema import TunelabConfig
from tunelab.data.loading import count_rows
from tunelab.errors import UserError
from tunelab.methods.config_loading import validate_config
from tunelab.methods.registry import available_methods

TOP_LEVEL_KEYS = ("output_dir", "base", "budget", "seeds", "entries")
DEFAULT_OUTPUT_DIR = "runs/compare"
BUDGET_KEYS = {"steps": "max_steps", "tokens": "max_tokens", "epochs": "epochs"}
# Train keys the comparison sets for every entry; a base or an entry may not set them.
OWNED_TRAIN_KEYS = {
    "max_steps": "the budget sets it (budget.steps)",
    "max_tokens": "the budget sets it (budget.tokens)",
    "resume": "the comparison resumes an interrupted entry by itself",
}
ENTRY_NAME = re.compile(r"[A-Za-z0-9_.-]+")
RESOURCE_KEYS = ("cpus", "gpus")
# Keys of base and of an entry that are the comparison's, not the train config's.
COMPARISON_KEYS = ("tune", "resources")


@dataclass(frozen=True)
class Budget:
    """The training cost every entry gets: optimizer steps, input tokens or passes over the data."""

    kind: str  # "steps", "tokens" or "epochs"
    amount: int

    @property
    def train_key(self) -> str:
        return BUDGET_KEYS[self.kind]


@dataclass(frozen=True)
class Resources:
    """What one entry's Ray task asks for; None where the comparison file leaves it to the executor."""

    cpus: float | None = None
    gpus: float | None = None


@dataclass
class Entry:
    name: str
    tree: dict[str, Any]  # the entry's train config: base + entry + budget + checkpoints, output_dir set
    run_dir: Path
    group: str = ""  # with ``seeds: N``: the entry as the file names it (``lora`` for ``lora.seed1``)
    tune_lr: tuple[float, ...] = ()  # ``tune: {lr: [...]}`` or ``tune: auto``: the learning rates to try
    seed: int | None = None  # with ``seeds: N``: this run's seed
    resources: Resources = Resources()  # ``resources: {cpus: 2, gpus: 1}``: for ``--executor ray``

    @property
    def entry_name(self) -> str:
        return self.group or self.name


@dataclass
class ComparisonSpec:
    output_dir: Path
    budget: Budget
    entries: list[Entry]

    def entry(self, name: str) -> Entry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise UserError(f"no entry named '{name}' (entries: {', '.join(e.name for e in self.entries)})")

    def runs_of(self, name: str) -> list[Entry]:
        """The runs of an entry: itself, or with ``seeds: N`` one per seed (``--only lora`` runs them all)."""
        runs = [entry for entry in self.entries if name in (entry.name, entry.group)]
        if not runs:
            names = dict.fromkeys(entry.entry_name for entry in self.entries)
            raise UserError(f"no entry named '{name}' (entries: {', '.join(names)})")
        return runs


def entry_config(entry: Entry) -> TunelabConfig:
    """The entry's validated train config; errors name the entry."""
    try:
        return validate_config(copy.deepcopy(entry.tree))
    except UserError as error:
        raise UserError(f"entry '{entry.name}': {error}") from None


def checkpoint_interval(budget: Budget, config: TunelabConfig) -> int:
    """Checkpoint about four times per run, so an interrupted entry can resume.

    A token budget's steps are known only once the data is tokenized; assuming full-length
    sequences (``data.max_length``) gives the fewest steps the budget can take, so a run checkpoints
    at least four times (more often where its sequences are shorter).
    """
    if budget.kind == "steps":
        return max(1, budget.amount // 4)
    if budget.kind == "epochs":
        examples_per_step = config.train.batch_size * config.train.grad_accum
        return max(1, -(-data_rows(config.data.train) // examples_per_step) * budget.amount // 4)
    tokens_per_step = config.train.batch_size * config.train.grad_accum * config.data.max_length
    return max(1, budget.amount // tokens_per_step // 4)


def _apply_overrides(tree: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    """``base.*`` and ``entries.NAME.*`` go to that train config, so string and path keys keep their text."""
    for assignment in overrides:
        key, separator, value = assignment.partition("=")
        parts = key.strip().split(".")
        if separator and parts[0] == "base" and len(parts) > 1:
            if not isinstance(tree.get("base"), dict):
                tree["base"] = {}
            target, rest = tree["base"], parts[1:]
        elif separator and parts[0] == "entries":
            if len(parts) < 3:
                raise UserError(f"override '{assignment}': give entries.NAME.key=value (e.g. entries.lora.method.r=4)")
            target, rest = _entry_tree(tree, parts[1]), parts[2:]
        else:
            target, rest = tree, parts
        apply_override(target, f"{'.'.join(rest)}={value}" if separator else assignment, available_methods())


def _entry_tree(tree: dict[str, Any], name: str) -> dict[str, Any]:
    entries = tree.get("entries") if isinstance(tree.get("entries"), list) else []
    for raw in entries:
        if isinstance(raw, dict) and str(raw.get("name")) == name:
            return raw
    raise UserError(f"override for entries.{name}: no entry named '{name}'")


def data_rows(path: Path | str | None) -> int:
    """About how many examples a data file holds, without tokenizing it (lines, CSV rows, Parquet rows)."""
    if path is None or not Path(path).is_file():
        return 1
    return max(1, count_rows(Path(path)))


def _read_budget(path: Path, raw: Any) -> Budget:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in BUDGET_KEYS:
        raise UserError(f"{path}: budget must have exactly one of steps, tokens or epochs (e.g. budget: {{steps: 40}})")
    kind, amount = next(iter(raw.items()))
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise UserError(f"{path}: budget.{kind} must be a positive whole number (got {amount!r})")
    return Budget(kind, amount)


def _check_train_keys(path: Path, where: str, section: Any, entry: bool) -> None:
    if section is None:
        return
    if not isinstance(section, dict):
        raise UserError(f"{path}: {where}: train must be a mapping")
    for key, reason in OWNED_TRAIN_KEYS.items():
        if key in section:
            raise UserError(f"{path}: {where}: train.{key}: {reason}; remove it")
    if entry and "seed" in section:
        raise UserError(f"{path}: {where}: train.seed: every entry trains with the same seed; set base.train.seed")


def _read_base(path: Path, raw: Any) -> dict[str, Any]:
    base = raw if raw is not None else {}
    if not isinstance(base, dict):
        raise UserError(f"{path}: base must be a mapping of train config keys")
    for key in ("method", "output_dir"):
        if key in base:
            raise UserError(f"{path}: base: {key}: set per entry (method) or by the comparison (output_dir)")
    _check_train_keys(path, "base", base.get("train"), entry=False)
    _read_resources(path, "base", base.get("resources"))
    return base


def _read_resources(path: Path, where: str, raw: Any) -> dict[str, float]:
    """``resources: {cpus: 2, gpus: 1}``: positive numbers (a fraction shares a device between tasks)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: {where}: resources must be a mapping (e.g. resources: {{cpus: 2, gpus: 1}})")
    for key, value in raw.items():
        if key not in RESOURCE_KEYS:
            known = ", ".join(RESOURCE_KEYS)
            raise UserError(f"{path}: {where}: resources: unknown key '{key}' (resources take {known})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
            raise UserError(f"{path}: {where}: resources.{key} must be a positive number (got {value!r})")
    return {key: float(value) for key, value in raw.items()}


def auto_grid(center: float) -> tuple[float, ...]:
    """``tune: auto``: the method's own learning rate and a factor of about 3 either side."""
    return (center / 3, center, center * 3)


def _read_tune(path: Path, where: str, raw: Any) -> Any:
    """``tune: auto`` or ``tune: {lr: [values]}``; None where the entry does not tune."""
    if raw is None or raw == "auto":
        return raw
    values = raw.get("lr") if isinstance(raw, dict) and set(raw) == {"lr"} else None
    if not isinstance(values, list) or not values or not all(_positive_number(value) for value in values):
        raise UserError(
            f"{path}: {where}: tune must be 'auto' or {{lr: [positive numbers]}} (e.g. tune: {{lr: [1e-4, 3e-4]}})"
        )
    return {"lr": [float(value) for value in values]}


def _positive_number(value: Any) -> bool:
    """A positive number, or its text: YAML reads ``1e-4`` (no dot) as a string."""
    if isinstance(value, bool):
        return False
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _read_entry(
    path: Path, index: int, raw: Any, spec: ComparisonSpec, base: dict[str, Any], named: list[Entry]
) -> Entry:
    if not isinstance(raw, dict):
        raise UserError(f"{path}: entry {index + 1} must be a mapping with a name and a method")
    name = str(raw.get("name") or "")
    if not ENTRY_NAME.fullmatch(name) or any(entry.name == name for entry in named):
        raise UserError(f"{path}: entry {index + 1}: name '{name}' must be unique and use letters, digits, . _ -")
    where = f"entry '{name}'"
    if "method" not in raw:
        raise UserError(f"{path}: {where}: method: required (e.g. method: {{name: lora, r: 8}})")
    for key in ("output_dir", "budget"):
        if key in raw:
            raise UserError(f"{path}: {where}: {key}: set by the comparison for every entry; remove it")
    _check_train_keys(path, where, raw.get("train"), entry=True)
    tune = _read_tune(path, where, raw["tune"] if "tune" in raw else base.get("tune"))
    resources = {**_read_resources(path, "base", base.get("resources"))}
    resources.update(_read_resources(path, where, raw.get("resources")))
    tree = deep_merge(
        {key: value for key, value in base.items() if key not in COMPARISON_KEYS},
        {key: value for key, value in raw.items() if key not in ("name", *COMPARISON_KEYS)},
    )
    if spec.budget.kind == "epochs" and "epochs" in tree.get("train", {}):
        raise UserError(f"{path}: {where}: train.epochs: the budget sets it (budget.epochs); remove it")
    tree.setdefault("train", {})[spec.budget.train_key] = spec.budget.amount
    tree["output_dir"] = str(spec.output_dir / "runs" / name)
    if tree["train"].get("report_to") and not tree["train"].get("report_project"):
        tree["train"]["report_project"] = spec.output_dir.name  # trackers group the entries by comparison
    entry = Entry(name, tree, spec.output_dir / "runs" / name, resources=Resources(**resources))
    try:
        config = entry_config(entry)  # validate now, before anything runs
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    if tune is not None:
        if "lr" in tree.get("train", {}):
            raise UserError(f"{path}: {where}: train.lr and tune both set the learning rate; keep one")
        if config.data.train is None:
            raise UserError(f"{path}: {where}: tune needs data.train to carve a validation split from")
        entry.tune_lr = auto_grid(config.train.lr) if tune == "auto" else tuple(tune["lr"])
    if config.train.save_every is None:
        tree["train"]["save_every"] = checkpoint_interval(spec.budget, config)
    return entry


def _read_seeds(path: Path, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 100:
        raise UserError(f"{path}: seeds must be a whole number from 1 to 100 (got {raw!r})")
    return raw


def with_seeds(entry: Entry, seeds: int, output_dir: Path) -> list[Entry]:
    """The entry itself for one seed; else one run per seed (base.train.seed, +1, ...), each in
    ``runs/<name>.seed<S>``."""
    if seeds == 1:
        return [entry]
    first = int(entry.tree.get("train", {}).get("seed", 0))
    runs = []
    for seed in range(first, first + seeds):
        tree = copy.deepcopy(entry.tree)
        tree["train"]["seed"] = seed
        name = f"{entry.name}.seed{seed}"
        tree["output_dir"] = str(output_dir / "runs" / name)
        run_dir = output_dir / "runs" / name
        # each seed's run tunes on its own (its own held-out split and trials): the spread over
        # seeds then includes what tuning varies
        runs.append(
            Entry(name, tree, run_dir, group=entry.name, tune_lr=entry.tune_lr, seed=seed, resources=entry.resources)
        )
    return runs


def load_comparison(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> ComparisonSpec:
    """The validated comparison from a COMPARE.yaml file and dotted ``key=value`` overrides."""
    path = Path(path)
    tree = read_yaml_mapping(path)
    _apply_overrides(tree, overrides)
    unknown = sorted(set(tree) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key '{unknown[0]}' (a comparison has {', '.join(TOP_LEVEL_KEYS)})")
    entries = tree.get("entries")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: 'entries' must be a non-empty list, each with a name and a method")
    output_dir = Path(str(tree.get("output_dir") or DEFAULT_OUTPUT_DIR)).expanduser().absolute()
    spec = ComparisonSpec(output_dir, _read_budget(path, tree.get("budget")), [])
    base = _read_base(path, tree.get("base"))
    seeds = _read_seeds(path, tree.get("seeds", 1))
    named: list[Entry] = []
    for index, raw in enumerate(entries):
        named.append(_read_entry(path, index, raw, spec, base, named))
    spec.entries = [run for entry in named for run in with_seeds(entry, seeds, output_dir)]
    return spec
