"""tunelab's own loop trains exactly like Hugging Face's ``transformers.Trainer`` where the two overlap.

The recipe (``tunelab.training.recipe``) says its loop matches Trainer on what both do; it keeps a
loop of its own only for what Trainer does not give: packing with per-example positions, token
budgets, deterministic mid-epoch resume, one loop for language-model, classifier and feature items,
and throughput. This test keeps that claim honest on one small setting: full fine-tuning of the tiny
random Llama, fp32, batch 4, six AdamW steps on a cosine schedule without warm-up, clipping at 1.0,
no dropout, the same number of CPU threads, and no weight decay: the two sides pick the decayed
parameters by different rules (tunelab every matrix, Trainer all but biases and norms), which happen
to agree on Llama but not on every model or method.

Both sides start from the same weights (the fixture's folder; nothing is initialised at random for a
causal LM) and see the same micro-batches in the same order: tunelab's own data stage tokenizes the
examples, ``epoch_micro_batches`` gives the run's seeded order, tunelab's ``collate`` pads them, and
Trainer reads that order sequentially (``train_sampling_strategy="sequential"``). Then the mean
token loss of every optimizer step, its learning rate and the final weights must agree, with and
without gradient accumulation. With accumulation, both must normalise the step's summed loss by the
target tokens of all its micro-batches (Trainer 5 passes ``num_items_in_batch`` to the model's loss);
half of the accumulated steps here pair micro-batches with different target-token counts (28 and 34
in the first), so a mean of per-micro-batch means would show. Two negative controls show that the
comparison can fail: Trainer at another learning rate, and Trainer averaging per-micro-batch means
(as it did before ``num_items_in_batch``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import make_records, training_config, write_jsonl
from tunelab.data.chat_template import ensure_chat_template
from tunelab.data.collate import collate_tokens, padding_id
from tunelab.data.pipeline import prepare_data
from tunelab.models.loading import load_tokenizer
from tunelab.training.batching import epoch_micro_batches
from tunelab.training.recipe import train

STEPS = 6
BATCH = 4
EXAMPLES = 48  # whole micro-batches of 4: Trainer's sequential batches line up with tunelab's
LR = 1e-3
SEED = 0
THREADS = 1  # both sides alike (tunelab sets its own count for the run); one also suits a busy shared CPU
# tunelab takes the loss from the target positions' hidden states (training.head_loss) and sums it in
# float64, Trainer's model from the full logits in float32: the curves differ by about 1e-7 relative
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


@dataclass
class Curve:
    """One training run as the comparison sees it."""

    losses: list[float]  # mean token loss of each optimizer step
    learning_rates: list[float]  # the rate each step used
    model: nn.Module  # after the last step
    device: str


def _config(model: Path, data: Path, output_dir: Path, grad_accum: int):
    return training_config(
        model,
        data,
        output_dir,
        **{
            "method.name": "full",
            "train.precision": "fp32",
            "train.batch_size": BATCH,
            "train.grad_accum": grad_accum,
            "train.max_steps": STEPS,
            "train.lr": LR,
            "train.weight_decay": 0.0,
            "train.scheduler": "cosine",
            "train.warmup_ratio": 0.0,
            "train.max_grad_norm": 1.0,
            "train.seed": SEED,
            "train.threads": THREADS,
            "train.log_every": 1,
        },
    )


def _tunelab_curve(config) -> Curve:
    result = train(config, progress=False)
    lines = (result.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert [record["step"] for record in records] == list(range(1, STEPS + 1))
    return Curve(
        [record["loss"] for record in records],
        [record["lr"] for record in records],
        result.model,
        result.summary["device"],
    )


def _examples_in_tunelab_order(config) -> tuple[list, int]:
    """The training items as the recipe tokenizes them, in the order its first steps take them, and the pad id."""
    tokenizer = load_tokenizer(str(config.model))
    ensure_chat_template(tokenizer)
    items = prepare_data(config.data, tokenizer, config.train.seed, prompt=config.prompt).train
    needed = STEPS * config.train.grad_accum
    micro_batches: list[list[int]] = []
    epoch = 0
    while len(micro_batches) < needed:
        micro_batches += epoch_micro_batches(len(items), config.train.batch_size, config.train.seed, epoch)
        epoch += 1
    micro_batches = micro_batches[:needed]
    assert all(len(indices) == config.train.batch_size for indices in micro_batches)
    return [items[index] for indices in micro_batches for index in indices], padding_id(tokenizer)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _trainer_curve(config, model_folder: Path, output_dir: Path, device: str, trainer_class=None, lr: float = LR):
    """``config``'s training run by transformers' Trainer, on the kind of device tunelab's run used."""
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, PrinterCallback, Trainer, TrainingArguments

    examples, pad_id = _examples_in_tunelab_order(config)

    def collate_for_trainer(items: list) -> dict[str, torch.Tensor]:
        batch = collate_tokens(items, pad_id)
        inputs = batch.model_inputs
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "labels": batch.labels}

    set_seed(config.train.seed)  # as the recipe does before it loads the model
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    model.config.use_cache = False  # as the recipe sets it for training
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.train.batch_size,
        gradient_accumulation_steps=config.train.grad_accum,
        max_steps=STEPS,
        learning_rate=lr,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",  # torch.optim.AdamW with its default betas and eps, as tunelab's
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        seed=config.train.seed,
        train_sampling_strategy="sequential",  # the dataset is already in tunelab's order
        remove_unused_columns=False,  # the items are tunelab's dataclasses; the collator picks the fields
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=torch.device(device).type == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = (trainer_class or Trainer)(
        model=model, args=args, train_dataset=examples, data_collator=collate_for_trainer
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm prints every log line instead
    with _torch_threads(THREADS):
        trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logged] == list(range(1, STEPS + 1))
    return Curve(
        [entry["loss"] for entry in logged],
        [entry["learning_rate"] for entry in logged],
        trainer.model,
        str(trainer.args.device),
    )


def _max_weight_difference(a: nn.Module, b: nn.Module) -> float:
    other = dict(b.named_parameters())
    with torch.no_grad():
        return max(float((tensor - other[name]).abs().max()) for name, tensor in a.named_parameters())


@pytest.fixture(scope="module")
def parity_data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("parity-data") / "train.jsonl", make_records(EXAMPLES))


@pytest.fixture(scope="module")
def tunelab_curves(tiny_llama, parity_data, tmp_path_factory) -> dict[int, Curve]:
    """tunelab's run without and with gradient accumulation (grad_accum -> curve), shared by the tests."""
    folder = tmp_path_factory.mktemp("parity-tunelab")
    return {
        grad_accum: _tunelab_curve(_config(tiny_llama, parity_data, folder / f"accum-{grad_accum}", grad_accum))
        for grad_accum in (1, 2)
    }


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_trainer_gives_the_same_loss_curve_and_weights(tiny_llama, parity_data, tunelab_curves, grad_accum, tmp_path):
    config = _config(tiny_llama, parity_data, tmp_path / "unused", grad_accum)
    ours = tunelab_curves[grad_accum]
    theirs = _trainer_curve(config, tiny_llama, tmp_path / "trainer", ours.device)

    assert torch.device(theirs.device).type == torch.device(ours.device).type
    assert theirs.learning_rates == pytest.approx(ours.learning_rates, rel=1e-12)
    assert theirs.losses == pytest.approx(ours.losses, rel=LOSS_RTOL)
    assert _max_weight_difference(ours.model, theirs.model) < WEIGHT_ATOL


def test_control_another_learning_rate_gives_another_curve(tiny_llama, parity_data, tunelab_curves, tmp_path):
    config = _config(tiny_llama, parity_data, tmp_path / "unused", 1)
    ours = tunelab_curves[1]
    theirs = _trainer_curve(config, tiny_llama, tmp_path / "trainer", ours.device, lr=2 * LR)

    assert theirs.losses[0] == pytest.approx(ours.losses[0], rel=LOSS_RTOL)  # same weights before any update
    for step, (their_loss, our_loss) in enumerate(zip(theirs.losses, ours.losses, strict=True)):
        if step > 0:  # every later step falls outside the parity tolerance (here by about 1000 times)
            assert their_loss != pytest.approx(our_loss, rel=LOSS_RTOL), f"step {step + 1}"
    assert _max_weight_difference(ours.model, theirs.model) > 10 * WEIGHT_ATOL


def test_control_a_mean_of_micro_batch_means_gives_another_curve(tiny_llama, parity_data, tunelab_curves, tmp_path):
    from transformers import Trainer

    class MeanOfMeansTrainer(Trainer):
        """Trainer before ``num_items_in_batch``: each micro-batch's mean loss, over the accumulation steps."""

        loss_is_scaled_for_ga = False  # Trainer then divides each micro-batch's loss by grad_accum

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

    config = _config(tiny_llama, parity_data, tmp_path / "unused", 2)
    ours = tunelab_curves[2]
    theirs = _trainer_curve(config, tiny_llama, tmp_path / "trainer", ours.device, MeanOfMeansTrainer)

    # every step falls outside the parity tolerance, the first one too (its reported loss is the mean of
    # two micro-batch means, 3.5 times the tolerance away: at random weights every token's loss is alike);
    # the weights, which the gradients' weighting moves, by some 400 times
    for step, (their_loss, our_loss) in enumerate(zip(theirs.losses, ours.losses, strict=True)):
        assert their_loss != pytest.approx(our_loss, rel=LOSS_RTOL), f"step {step + 1}"
    assert _max_weight_difference(ours.model, theirs.model) > 10 * WEIGHT_ATOL
