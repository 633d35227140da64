"""Batched generation: rows of one batch answer as they would alone, each with its own limits and stop."""

from __future__ import annotations

import pytest

from tunelab.inference.generate import generate_text
from tunelab.serve.batching import (
    BatchScheduler,
    Failed,
    Finished,
    GenerationJob,
    Sampling,
    TextDelta,
    held_back,
    run_batch,
)
from tunelab.serve.models import ServedModel, load_served_models

PROMPTS = ["Once upon a time", "The quick brown fox jumps over the lazy dog while", "Numbers: 0 1 2", "a"]


@pytest.fixture(scope="module")
def base(tiny_llama) -> ServedModel:
    return load_served_models([f"base={tiny_llama}"])["base"]


def job(served: ServedModel, prompt: str, max_tokens: int = 12, **options) -> tuple[GenerationJob, list]:
    events: list = []
    return GenerationJob("base", served.text_prompt_ids(prompt), max_tokens, events.append, **options), events


def answer(events: list) -> Finished:
    finished = [event for event in events if isinstance(event, Finished)]
    assert len(finished) == 1
    return finished[0]


def test_held_back_keeps_what_a_stop_string_may_still_complete():
    assert held_back("hello wor", ("world",)) == 3
    assert held_back("hello", ("world",)) == 0
    assert held_back("abc", ("cx", "bcd")) == 2
    assert held_back("caf\ufffd", ()) == 1  # a character whose bytes are not all decoded yet
    assert held_back("a d\ufffd", (" d\u00e4",)) == 3  # both: the stop may be completing


def test_a_left_padded_batch_answers_each_prompt_as_tunelab_generate_does(base, tiny_llama):
    jobs = [job(base, prompt) for prompt in PROMPTS]
    run_batch(base, [pending for pending, _ in jobs])
    for prompt, (_, events) in zip(PROMPTS, jobs, strict=True):
        expected = generate_text(str(tiny_llama), prompt=prompt, max_new_tokens=12, chat=False)
        assert answer(events).text == expected
        streamed = "".join(event.text for event in events if isinstance(event, TextDelta))
        assert streamed == expected


def test_each_row_keeps_its_own_max_tokens_and_stop_string(base):
    alone, alone_events = job(base, PROMPTS[0], max_tokens=12)
    run_batch(base, [alone])
    whole = answer(alone_events).text
    stop = whole[4:7]
    short, short_events = job(base, PROMPTS[0], max_tokens=3)
    stopped, stopped_events = job(base, PROMPTS[0], max_tokens=12, stop=(stop,))
    longer, longer_events = job(base, PROMPTS[1], max_tokens=12)
    run_batch(base, [short, stopped, longer])
    assert (answer(short_events).finish_reason, answer(short_events).completion_tokens) == ("length", 3)
    assert answer(stopped_events).text == whole[: whole.find(stop)]
    assert answer(stopped_events).finish_reason == "stop"
    assert "".join(e.text for e in stopped_events if isinstance(e, TextDelta)) == whole[: whole.find(stop)]
    assert answer(longer_events).completion_tokens == 12


def test_a_cancelled_row_stops_and_the_others_finish(base):
    leaving, leaving_events = job(base, PROMPTS[0], max_tokens=30)
    staying, staying_events = job(base, PROMPTS[0], max_tokens=30)

    def leave_after_first_token(event) -> None:
        leaving_events.append(event)
        leaving.cancel()

    leaving.deliver = leave_after_first_token
    rows = run_batch(base, [leaving, staying])
    assert rows[0].finish_reason == "cancelled" and len(rows[0].tokens) == 1
    assert isinstance(leaving_events[-1], Failed)
    assert answer(staying_events).completion_tokens == 30


def test_a_seeded_sample_does_not_depend_on_its_batch(base):
    sampling = Sampling(temperature=1.0, top_p=0.95, seed=11)
    alone, alone_events = job(base, PROMPTS[2], sampling=sampling)
    run_batch(base, [alone])
    together, together_events = job(base, PROMPTS[2], sampling=sampling)
    run_batch(base, [job(base, PROMPTS[1])[0], together, job(base, PROMPTS[3])[0]])
    assert answer(together_events).text == answer(alone_events).text
    other, other_events = job(base, PROMPTS[2], sampling=Sampling(temperature=1.0, seed=12), max_tokens=30)
    run_batch(base, [other])
    assert answer(other_events).text != answer(alone_events).text  # the seed matters


def test_scheduler_batches_one_name_at_a_time_oldest_first_and_drops_cancelled_jobs(base):
    scheduler = BatchScheduler({"a": base, "b": base}, max_batch=2)
    jobs = {name: GenerationJob(name[0], [1], 4, lambda event: None) for name in ("a1", "b1", "a2", "a3", "b2", "b3")}
    dropped: list = []
    jobs["b3"].deliver = dropped.append
    for pending in jobs.values():
        scheduler.submit(pending)
    jobs["b3"].cancel()
    assert scheduler._next_batch() == [jobs["a1"], jobs["a2"]]
    assert scheduler._next_batch() == [jobs["b1"], jobs["b2"]]
    assert scheduler._next_batch() == [jobs["a3"]]
    assert scheduler.waiting == 0 and isinstance(dropped[0], Failed)
