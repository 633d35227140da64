"""Concurrent generation requests, run together: which requests share a batch, and one batch's decoding.

transformers' ``generate`` does the decoding of a left-padded batch with the KV cache (and
PEFT's prompt-learning models hook into it). What it does not do, and this module does, is serve
independent requests in one call: each row keeps its own ``max_tokens``, stop strings, sampling
settings and seed, streams its own text as it grows, and stops on its own, also when its client
goes away. That goes through ``generate``'s two hooks: a logits processor that samples each row
as its request asked (``RowSampler``) and a stopping criterion that does each row's bookkeeping
(``BatchProgress``). Greedy rows are left to ``generate``'s own argmax, so a greedy answer is the
one ``tunelab generate`` gives.

One worker thread runs every batch: generation never blocks the event loop, and only one batch
at a time touches a model and its active adapter. A batch holds requests for one served name
only (the oldest waiting request's, then others for the same name in arrival order, up to
``max_batch``), so two adapters on one base never share a batch. Requests that arrive while a
batch runs wait for the next one; a request whose client has gone is dropped before it runs, and
a running row stops at its next token (its batch then ends as soon as the other rows do).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from tunelab.inference.generate import GREEDY
from tunelab.serve.models import ServedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """How a request picks each token: temperature 0 is greedy; ``seed`` None draws one."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    text: str  # the whole answer, cut before a stop string where one ended it
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    message: str


GenerationEvent = TextDelta | Finished | Failed


@dataclass(eq=False)
class GenerationJob:
    """One request's generation. ``deliver`` is called from the worker thread with each event."""

    model_name: str
    prompt_ids: list[int]
    max_tokens: int
    deliver: Callable[[GenerationEvent], None]
    sampling: Sampling = Sampling()
    stop: tuple[str, ...] = ()
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """The client has gone: drop the job if it waits, stop its row if it runs."""
        self.cancelled.set()


@dataclass(frozen=True)
class JobRecord:
    """What became of a job (kept for /health and the tests): how it ended, in a batch of how many."""

    model_name: str
    finish_reason: str  # stop | length | cancelled | failed
    completion_tokens: int
    batch_size: int


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of ``text`` must not be streamed yet: the start of a stop
    string that the next token may complete, or a character whose bytes are not all decoded."""
    undecoded = len(text) - len(text.rstrip("\ufffd"))  # bytes of a character still to come
    text = text[: len(text) - undecoded]
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return undecoded + longest


class RowProgress:
    """One request's row of a running batch: its tokens so far, what it has streamed, whether it ended."""

    def __init__(self, job: GenerationJob, tokenizer: object, stop_ids: set[int]) -> None:
        self.job, self.tokenizer, self.stop_ids = job, tokenizer, stop_ids
        self.tokens: list[int] = []
        self.streamed = 0  # characters of the answer already delivered
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def add(self, token: int) -> None:
        if self.job.cancelled.is_set():
            self.finish_reason = "cancelled"
            self.job.deliver(Failed("the client disconnected"))  # ends whatever still waits on the job
            return
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        cuts = [text.find(stop) for stop in self.job.stop if stop in text]
        if token in self.stop_ids:
            self.finish(text, "stop")
        elif cuts:
            self.finish(text[: min(cuts)], "stop")
        elif len(self.tokens) >= self.job.max_tokens:
            self.finish(text, "length")
        else:
            ready = len(text) - held_back(text, self.job.stop)
            if ready > self.streamed:
                self.job.deliver(TextDelta(text[self.streamed : ready]))
                self.streamed = ready

    def finish(self, text: str, reason: str) -> None:
        self.finish_reason = reason
        if len(text) > self.streamed:
            self.job.deliver(TextDelta(text[self.streamed :]))
        self.job.deliver(Finished(text, reason, len(self.job.prompt_ids), len(self.tokens)))


class BatchProgress(StoppingCriteria):
    """``generate``'s stopping criterion: hands each row its newest token and says which rows ended.

    ``generate`` calls it once per decoding step with every row's sequence so far."""

    def __init__(self, rows: list[RowProgress]) -> None:
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: object = None, **kwargs: object) -> torch.BoolTensor:
        for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
            if not row.done:
                row.add(token)
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


class RowSampler(LogitsProcessor):
    """``generate``'s logits processor: samples each sampled row with its own temperature, top-p
    and random generator, and leaves it only that token for ``generate``'s argmax to pick."""

    def __init__(self, samplings: list[Sampling], device: torch.device) -> None:
        self.rows = [
            (index, sampling, torch.Generator(device=device).manual_seed(_seed(sampling)))
            for index, sampling in enumerate(samplings)
            if sampling.temperature > 0
        ]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for index, sampling, generator in self.rows:
            probabilities = torch.softmax(scores[index].float() / sampling.temperature, dim=-1)
            if sampling.top_p < 1.0:
                ordered, order = torch.sort(probabilities, descending=True)
                outside = torch.cumsum(ordered, dim=-1) - ordered >= sampling.top_p  # the smallest set reaching top_p
                probabilities[order[outside]] = 0.0
            token = torch.multinomial(probabilities, 1, generator=generator)
            scores[index] = float("-inf")
            scores[index, token] = 0.0
        return scores


def _seed(sampling: Sampling) -> int:
    return sampling.seed if sampling.seed is not None else secrets.randbits(63)


def run_batch(served: ServedModel, jobs: list[GenerationJob]) -> list[RowProgress]:
    """Generate every job's answer in one left-padded batch; events go out through each job's ``deliver``."""
    assert served.loaded is not None
    device = served.loaded.device
    width = max(len(job.prompt_ids) for job in jobs)
    input_ids = torch.tensor(
        [[served.pad_id] * (width - len(job.prompt_ids)) + job.prompt_ids for job in jobs], device=device
    )
    attention_mask = torch.tensor(
        [[0] * (width - len(job.prompt_ids)) + [1] * len(job.prompt_ids) for job in jobs], device=device
    )
    rows = [RowProgress(job, served.tokenizer, set(served.stop_ids)) for job in jobs]
    progress = BatchProgress(rows)
    sampler = RowSampler([job.sampling for job in jobs], device)
    with torch.no_grad(), served.activated():
        served.loaded.module.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max(job.max_tokens for job in jobs),
            eos_token_id=served.stop_ids or None,
            pad_token_id=served.pad_id,
            use_cache=True,
            logits_processor=LogitsProcessorList([sampler] if sampler.rows else []),
            stopping_criteria=StoppingCriteriaList([progress]),
            **GREEDY,
        )
    for row in rows:  # generate ended every row through the criterion; this is only a safeguard
        if not row.done:
            row.finish(served.tokenizer.decode(row.tokens, skip_special_tokens=True), "length")
    return rows


class BatchScheduler:
    """Queues generation jobs and runs them, batch by batch, on one worker thread."""

    def __init__(self, models: Mapping[str, ServedModel], max_batch: int, history: int = 1000) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.models = models
        self.max_batch = max_batch
        self.history: deque[JobRecord] = deque(maxlen=history)
        self._waiting: deque[GenerationJob] = deque()
        self._running = 0
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._running

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="tunelab-serve-batches", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join()

    def submit(self, job: GenerationJob) -> None:
        with self._condition:
            self._waiting.append(job)
            self._condition.notify()

    def _next_batch(self) -> list[GenerationJob] | None:
        """The oldest live job and the next ones for the same name, up to ``max_batch``; None to stop."""
        with self._condition:
            while True:
                for job in [job for job in self._waiting if job.cancelled.is_set()]:
                    self._waiting.remove(job)
                    job.deliver(Failed("the client disconnected"))
                    self.history.append(JobRecord(job.model_name, "cancelled", 0, 0))
                if self._stopping:
                    for job in self._waiting:
                        job.deliver(Failed("the server is shutting down"))
                    self._waiting.clear()
                    return None
                if self._waiting:
                    break
                self._condition.wait()
            name = self._waiting[0].model_name
            batch = [job for job in self._waiting if job.model_name == name][: self.max_batch]
            for job in batch:
                self._waiting.remove(job)
            self._running = len(batch)
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                rows = run_batch(self.models[batch[0].model_name], batch)
                records = [(row.finish_reason or "length", len(row.tokens)) for row in rows]
            except Exception as error:  # one failed batch must not take the server down
                logger.exception("generation failed for %s", batch[0].model_name)
                for job in batch:
                    job.deliver(Failed(f"generation failed: {type(error).__name__}: {error}"))
                records = [("failed", 0)] * len(batch)
            for job, (reason, tokens) in zip(batch, records, strict=True):
                self.history.append(JobRecord(job.model_name, reason, tokens, len(batch)))
            self._running = 0
