"""The OpenAI API's shapes as the server speaks them: requests (validated), responses, stream chunks, errors.

Requests are pydantic models in strict mode: a wrong-typed field (``"max_tokens": "5"``) is a 400,
never silently converted. Fields the OpenAI API has and this server does not implement (tools,
logprobs, ``n`` > 1, penalties, ...) are refused by name rather than ignored, so a client never
gets an answer computed without what it asked for. Unknown extra fields are ignored, as OpenAI's
own clients send some (``user``, ``metadata``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunelab.serve.batching import Finished

DEFAULT_MAX_TOKENS = 256  # where a request sets none (and the context allows it)
MAX_STOP_STRINGS = 4  # as OpenAI


class ApiError(Exception):
    """A request the server refuses: the HTTP status and OpenAI's error fields."""

    def __init__(
        self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error", code=None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def for_template(self) -> dict[str, str]:
        """The ``{role, content}`` a chat template takes (OpenAI's ``developer`` is the system turn)."""
        content = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class StreamOptions(_Request):
    include_usage: bool | None = None


class GenerationRequest(_Request):
    """What chat and text completions share."""

    model: str
    max_tokens: int | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise ApiError(400, f"stop: at most {MAX_STOP_STRINGS} stop strings", "stop")
        if any(not stop for stop in stops):
            raise ApiError(400, "stop: a stop string cannot be empty", "stop")
        return tuple(stops)

    def unsupported(self) -> dict[str, bool]:
        """Each OpenAI field this server does not implement -> whether the request asks for it."""
        return {
            "n": self.n not in (None, 1),
            "presence_penalty": bool(self.presence_penalty),
            "frequency_penalty": bool(self.frequency_penalty),
            "logit_bias": bool(self.logit_bias),
        }


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None

    def unsupported(self) -> dict[str, bool]:
        return super().unsupported() | {
            "tools": bool(self.tools) or self.tool_choice not in (None, "none"),
            "functions": bool(self.functions) or self.function_call not in (None, "none"),
            "logprobs": bool(self.logprobs) or self.top_logprobs is not None,
            "response_format": self.response_format not in (None, {"type": "text"}),
        }


class CompletionRequest(GenerationRequest):
    prompt: str | list[str]
    echo: bool | None = None
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(400, "prompt: give one prompt per request (a string, or a list of exactly one)", "prompt")
        return self.prompt[0]

    def unsupported(self) -> dict[str, bool]:
        return super().unsupported() | {
            "echo": bool(self.echo),
            "logprobs": self.logprobs is not None,
            "best_of": self.best_of not in (None, 1),
            "suffix": bool(self.suffix),
        }


class ClassifyRequest(_Request):
    model: str
    input: str | list[str]

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts or any(not text.strip() for text in texts):
            raise ApiError(400, "input: give one or more non-empty texts", "input")
        return texts


RequestT = TypeVar("RequestT", bound="_Request")
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _param(location: tuple[int | str, ...]) -> str | None:
    """``("messages", 0, "role")`` -> ``messages.0.role``; pydantic's union-member tags dropped."""
    kept = [str(part) for part in location if isinstance(part, int) or ("[" not in part and part not in _UNION_TAGS)]
    return ".".join(kept) or None


def parse_request(request_type: type[RequestT], body: Any) -> RequestT:
    """``body`` (parsed JSON) as ``request_type``, or a 400 naming the first field that is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        parsed = request_type.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        param = _param(first["loc"])
        message = first["msg"] if first["type"] != "missing" else "this field is required"
        raise ApiError(400, f"{param}: {message}" if param else message, param) from None
    asked = [name for name, used in getattr(parsed, "unsupported", dict)().items() if used]
    if asked:
        raise ApiError(400, f"{asked[0]}: not supported by tunelab serve", asked[0])
    return parsed


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(finished: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


class ChatShape:
    """Chat completion responses (``chat.completion``) and stream chunks (``chat.completion.chunk``)."""

    def __init__(self, model: str) -> None:
        self.model, self.id, self.created = model, new_id("chatcmpl"), int(time.time())

    def _envelope(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, **fields}

    def response(self, finished: Finished) -> dict[str, Any]:
        message = {"role": "assistant", "content": finished.text}
        choice = {"index": 0, "message": message, "finish_reason": finished.finish_reason, "logprobs": None}
        return self._envelope("chat.completion", choices=[choice], usage=usage(finished))

    def first_chunk(self) -> dict[str, Any] | None:
        choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        return self._envelope("chat.completion.chunk", choices=[choice])

    def chunk(self, text: str) -> dict[str, Any]:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        return self._envelope("chat.completion.chunk", choices=[choice])

    def last_chunk(self, finished: Finished) -> dict[str, Any]:
        choice = {"index": 0, "delta": {}, "finish_reason": finished.finish_reason}
        return self._envelope("chat.completion.chunk", choices=[choice])

    def usage_chunk(self, finished: Finished) -> dict[str, Any]:
        return self._envelope("chat.completion.chunk", choices=[], usage=usage(finished))


class TextShape(ChatShape):
    """Text completion responses and stream chunks (both ``text_completion``)."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.id = new_id("cmpl")

    def _choice(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}

    def response(self, finished: Finished) -> dict[str, Any]:
        choice = self._choice(finished.text, finished.finish_reason)
        return self._envelope("text_completion", choices=[choice], usage=usage(finished))

    def first_chunk(self) -> dict[str, Any] | None:
        return None

    def chunk(self, text: str) -> dict[str, Any]:
        return self._envelope("text_completion", choices=[self._choice(text, None)])

    def last_chunk(self, finished: Finished) -> dict[str, Any]:
        return self._envelope("text_completion", choices=[self._choice("", finished.finish_reason)])

    def usage_chunk(self, finished: Finished) -> dict[str, Any]:
        return self._envelope("text_completion", choices=[], usage=usage(finished))
