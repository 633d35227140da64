"""``tunelab serve`` over HTTP, with the official ``openai`` client against a server on 127.0.0.1.

One server holds the tiny Llama, two LoRA runs trained on it (one answers every question with
'cat cat', the other with 'dog dog') and a classification run. Answers are compared with
``tunelab generate`` and ``tunelab predict`` on the same runs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="tunelab serve needs starlette: pip install 'tunelab[serve]'")
pytest.importorskip("uvicorn", reason="tunelab serve needs uvicorn: pip install 'tunelab[serve]'")
openai = pytest.importorskip("openai", reason="the serve tests talk to the server through the openai package")

from conftest import make_labelled_records, training_config, write_jsonl  # noqa: E402
from tunelab.inference.generate import generate_text  # noqa: E402
from tunelab.inference.predict import predict_labels  # noqa: E402
from tunelab.serve.app import build_app  # noqa: E402
from tunelab.serve.models import ServedModel, load_served_models  # noqa: E402
from tunelab.training.recipe import train  # noqa: E402

QUESTION = [{"role": "user", "content": "question 7"}]
TEXTS = ["we love it and it was great", "it was awful and we hate this"]


def chat_run(base: Path, folder: Path, answer: str) -> Path:
    """A LoRA run on ``base`` taught to reply ``answer`` (then EOS) to any question."""
    rows = [
        {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": answer}]}
        for i in range(16)
    ]
    data = write_jsonl(folder / f"{answer.split()[0]}.jsonl", rows)
    options = {"method.name": "lora", "train.max_steps": 40, "train.lr": 1e-2, "train.batch_size": 8}
    return train(training_config(base, data, folder / answer.split()[0], **options), progress=False).run_dir


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve-runs")
    labelled = write_jsonl(folder / "labelled.jsonl", make_labelled_records(96))
    classifier_options = {
        "task": "classification",
        "method.name": "full",
        "train.max_steps": 20,
        "train.batch_size": 8,
        "train.lr": 3e-3,
    }
    classifier = train(
        training_config(tiny_llama, labelled, folder / "sentiment", **classifier_options), progress=False
    )
    return {
        "base": tiny_llama,
        "cat": chat_run(tiny_llama, folder, "cat cat"),
        "dog": chat_run(tiny_llama, folder, "dog dog"),
        "sentiment": classifier.run_dir,
    }


@pytest.fixture(scope="module")
def served(runs) -> dict[str, ServedModel]:
    return load_served_models([f"base={runs['base']}", str(runs["cat"]), str(runs["dog"]), str(runs["sentiment"])])


@contextmanager
def running_server(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


@pytest.fixture(scope="module")
def server(served):
    app = build_app(served, max_batch=8, max_body_bytes=100_000)
    with running_server(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="unused", max_retries=0, timeout=60)


def chat(client: openai.OpenAI, model: str, **options):
    options = {"messages": QUESTION, "max_tokens": 20, "temperature": 0, **options}
    return client.chat.completions.create(model=model, **options)


def test_models_lists_every_served_name(client):
    assert [model.id for model in client.models.list()] == ["base", "cat", "dog", "sentiment"]


def test_two_adapters_share_one_base_and_each_answers_as_tunelab_generate(client, served, runs):
    assert served["cat"].loaded is served["dog"].loaded is served["base"].loaded  # one base in memory
    for name in ("cat", "dog", "base"):
        answer = chat(client, name)
        expected = generate_text(str(runs[name]), messages=QUESTION, max_new_tokens=20)
        assert answer.choices[0].message.content == expected
        prompt_tokens = len(served[name].chat_prompt_ids(QUESTION))
        assert answer.usage.prompt_tokens == prompt_tokens
        assert answer.usage.total_tokens == prompt_tokens + answer.usage.completion_tokens
    assert chat(client, "cat").choices[0].message.content == "cat cat"
    assert chat(client, "dog").choices[0].message.content == "dog dog"
    assert chat(client, "cat").choices[0].finish_reason == "stop"  # its EOS, long before 20 tokens


def test_text_completion_takes_the_prompt_raw(client, runs):
    answer = client.completions.create(model="base", prompt="Once upon a time", max_tokens=8, temperature=0)
    assert answer.choices[0].text == generate_text(str(runs["base"]), prompt="Once upon a time", max_new_tokens=8)
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 8


def test_streamed_chat_adds_up_to_the_whole_answer_and_ends_with_done(client, server):
    chunks = list(chat(client, "dog", stream=True, stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "dog dog"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == chat(client, "dog").usage.completion_tokens

    with client.chat.completions.with_streaming_response.create(
        model="dog", messages=QUESTION, max_tokens=20, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_stop_string_ends_the_answer_before_it_streamed_or_not(client):
    whole = client.completions.create(model="base", prompt="The quick brown", max_tokens=24, temperature=0)
    text = whole.choices[0].text
    stop = text[6:9]
    expected = text[: text.find(stop)]
    cut = client.completions.create(model="base", prompt="The quick brown", max_tokens=24, temperature=0, stop=[stop])
    assert (cut.choices[0].text, cut.choices[0].finish_reason) == (expected, "stop")
    streamed = client.completions.create(
        model="base", prompt="The quick brown", max_tokens=24, temperature=0, stop=stop, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in streamed) == expected


def test_sampling_with_a_seed_gives_the_same_answer_again(client):
    options = {"max_tokens": 12, "temperature": 1.0, "top_p": 0.9, "seed": 3}
    first = client.completions.create(model="base", prompt="Numbers:", **options).choices[0].text
    assert client.completions.create(model="base", prompt="Numbers:", **options).choices[0].text == first


def test_classify_gives_what_tunelab_predict_gives(client, runs):
    answer = client.post("/classify", body={"model": "sentiment", "input": TEXTS}, cast_to=object)
    expected = predict_labels(runs["sentiment"], TEXTS)
    assert [item["label"] for item in answer["data"]] == [item.label for item in expected]
    for item, prediction in zip(answer["data"], expected, strict=True):
        assert item["probabilities"] == pytest.approx(prediction.probabilities)


def chat_body(**fields) -> dict:
    return {"model": "cat", "messages": QUESTION, **fields}


def text_body(**fields) -> dict:
    return {"model": "base", "prompt": "hi", **fields}


BAD_REQUESTS = [
    # (what is wrong, path, body, status, param)
    ("unknown model", "/chat/completions", chat_body(model="nope"), 404, "model"),
    ("missing messages", "/chat/completions", {"model": "cat"}, 400, "messages"),
    ("missing model", "/completions", {"prompt": "hi"}, 400, "model"),
    ("max_tokens as text", "/chat/completions", chat_body(max_tokens="5"), 400, "max_tokens"),
    ("temperature as text", "/completions", text_body(temperature="hot"), 400, "temperature"),
    (
        "content a number",
        "/chat/completions",
        chat_body(messages=[{"role": "user", "content": 5}]),
        400,
        "messages.0.content",
    ),
    ("empty messages", "/chat/completions", chat_body(messages=[]), 400, "messages"),
    (
        "unknown role",
        "/chat/completions",
        chat_body(messages=[{"role": "wizard", "content": "hi"}]),
        400,
        "messages.0.role",
    ),
    ("max_tokens zero", "/chat/completions", chat_body(max_tokens=0), 400, "max_tokens"),
    ("max_tokens negative", "/completions", text_body(max_tokens=-3), 400, "max_tokens"),
    ("max_tokens over the context", "/chat/completions", chat_body(max_tokens=100_000), 400, "max_tokens"),
    ("n above 1", "/chat/completions", chat_body(n=2), 400, "n"),
    ("tools", "/chat/completions", chat_body(tools=[{"type": "function"}]), 400, "tools"),
    ("logprobs", "/chat/completions", chat_body(logprobs=True), 400, "logprobs"),
    ("chat with a classifier", "/chat/completions", chat_body(model="sentiment"), 400, "model"),
    ("classify with a chat run", "/classify", {"model": "cat", "input": "hi"}, 400, "model"),
    ("empty classify input", "/classify", {"model": "sentiment", "input": []}, 400, "input"),
    ("body not an object", "/completions", ["model", "base"], 400, None),
]


@pytest.mark.parametrize(("case", "path", "body", "status", "param"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_an_openai_error_and_the_server_keeps_serving(client, case, path, body, status, param):
    with pytest.raises(openai.APIStatusError) as raised:
        client.post(path, body=body, cast_to=object)
    assert raised.value.status_code == status
    error = raised.value.body  # the client unwraps {"error": {...}}
    assert set(error) >= {"message", "type", "param"} and error["message"]
    assert error["param"] == param
    assert chat(client, "cat").choices[0].message.content == "cat cat"


def test_malformed_json_and_an_oversized_body_are_refused(client):
    headers = {"Content-Type": "application/json"}
    with pytest.raises(openai.BadRequestError, match="not valid JSON"):
        client.post("/chat/completions", content=b'{"model": "cat",', options={"headers": headers}, cast_to=object)
    huge = json.dumps({"model": "cat", "messages": [{"role": "user", "content": "x" * 200_000}]}).encode()
    with pytest.raises(openai.APIStatusError) as raised:
        client.post("/chat/completions", content=huge, options={"headers": headers}, cast_to=object)
    assert raised.value.status_code == 413
    assert chat(client, "cat").choices[0].message.content == "cat cat"


def test_api_key_is_required_when_set(served):
    with running_server(build_app(served, max_batch=2, api_key="sesame")) as url:
        wrong = openai.OpenAI(base_url=url + "/v1", api_key="guess", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as raised:
            chat(wrong, "cat")
        assert raised.value.status_code == 401 and raised.value.body["type"] == "invalid_request_error"
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = openai.OpenAI(base_url=url + "/v1", api_key="sesame", max_retries=0)
        assert chat(right, "cat").choices[0].message.content == "cat cat"


def test_a_client_that_leaves_mid_stream_frees_its_slot(client, server):
    app, _ = server
    scheduler = app.state.serve.scheduler
    long_answer = client.completions.create(model="base", prompt="Once", max_tokens=400, temperature=0)
    assert long_answer.choices[0].finish_reason == "length"  # uninterrupted, it would run all 400 tokens
    stream = client.completions.create(model="base", prompt="Once", max_tokens=400, temperature=0, stream=True)
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    stream.close()
    deadline = time.monotonic() + 30
    while not any(record.finish_reason == "cancelled" for record in scheduler.history):
        assert time.monotonic() < deadline, "the abandoned stream's job was never stopped"
        time.sleep(0.05)
    cancelled = [record for record in scheduler.history if record.finish_reason == "cancelled"][-1]
    assert cancelled.completion_tokens < 400
    assert chat(client, "dog").choices[0].message.content == "dog dog"


def test_200_concurrent_chats_across_two_adapters_match_one_at_a_time(client, server):
    """Bounded load: every answer under load equals the answer to the same request made alone."""
    app, url = server
    scheduler = app.state.serve.scheduler
    requests = [
        ("cat" if index % 2 else "dog", [{"role": "user", "content": "question " * (1 + index % 7) + str(index % 5)}])
        for index in range(200)
    ]
    distinct = {(name, messages[0]["content"]) for name, messages in requests}
    alone = {
        (name, content): chat(client, name, messages=[{"role": "user", "content": content}]).choices[0].message.content
        for name, content in sorted(distinct)
    }
    before = len(scheduler.history)

    async def all_at_once() -> list:
        concurrent = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        try:
            calls = [
                concurrent.chat.completions.create(model=name, messages=messages, max_tokens=20, temperature=0)
                for name, messages in requests
            ]
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await concurrent.close()

    answers = asyncio.run(all_at_once())
    errors = [answer for answer in answers if isinstance(answer, Exception)]
    assert errors == []
    for (name, messages), answer in zip(requests, answers, strict=True):
        assert answer.model == name
        assert answer.choices[0].message.content == alone[(name, messages[0]["content"])]
    for (name, _), answer in alone.items():  # each adapter's own answer, never the other's
        assert answer.split()[0] == name and ("cat" in answer) != ("dog" in answer)
    under_load = list(scheduler.history)[before:]
    assert max(record.batch_size for record in under_load) > 1  # requests really were batched
