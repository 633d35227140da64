"""Generate text from a model or a run folder (base plus artifact), greedy or sampled.

A run trained on chat or instruction data formats a ``--prompt`` as a user turn through the same
chat template it trained with; other runs take the prompt as raw text. Generation stops at EOS
(the tokenizer's and the model's generation config's) or after ``max_new_tokens``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.data.chat_template import ensure_chat_template, render
from tunelab.data.tokenize import encode_prompt
from tunelab.errors import UserError
from tunelab.run_files import run_task, training_record


def read_messages(path: Path | str) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} line {error.lineno}: invalid JSON ({error.msg})") from None
    messages = loaded.get("messages") if isinstance(loaded, dict) else loaded
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise UserError(f'{path}: expected a list of {{role, content}} messages (or {{"messages": [...]}})')
    return messages


def trained_on_chat(model_reference: str) -> bool:
    """Whether a run (or a model merged from one) trained on chat or instructions, through its template."""
    return training_record(model_reference).get("data_format") in ("chat", "instruction")


def resolve_task(model_reference: str, task: str | None) -> int | None:
    """The task id a multi-task prompt run uses for ``task`` (a name or number from its data)."""
    tasks = training_record(model_reference).get("task_ids")
    if not tasks:
        if task is not None:
            raise UserError("--task applies only to a multi-task prompt tuning run")
        return None
    if task is None or str(task) not in tasks:
        raise UserError(f"this run was trained on tasks {', '.join(tasks)}; choose one with --task")
    return tasks[str(task)]


def best_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def stop_token_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return sorted(ids)


def padding_token_id(tokenizer, stops: list[int]) -> int:
    """The id that pads a batch: the tokenizer's pad token, else the first stop id (never attended to)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)


# generate() settings for greedy decoding: None clears any sampling default in the model's generation config
GREEDY: dict[str, object] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def generate_text(
    model_reference: str,
    prompt: str | None = None,
    messages: list[dict[str, str]] | None = None,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat: bool | None = None,
    task: str | None = None,
) -> str:
    """The model's continuation of ``prompt`` (or its reply to ``messages``), without the prompt."""
    import torch

    from tunelab.methods.loading import load_causal_lm
    from tunelab.models.loading import load_tokenizer

    if (prompt is None) == (messages is None):
        raise UserError("give exactly one of --prompt or --messages")
    if max_new_tokens <= 0:
        raise UserError("--max-new-tokens must be positive")
    if run_task(model_reference) == "classification":
        raise UserError(
            f"{model_reference} is a classification run: it predicts labels, not text; "
            f'use tunelab predict {model_reference} --text "..."'
        )
    tokenizer = load_tokenizer(model_reference)
    model = load_causal_lm(model_reference).to(best_device())
    model.eval()
    use_chat = messages is not None or (chat if chat is not None else trained_on_chat(model_reference))
    if use_chat:
        ensure_chat_template(tokenizer)
        conversation = messages if messages is not None else [{"role": "user", "content": prompt}]
        text = render(tokenizer, conversation, add_generation_prompt=True)
    else:
        text = prompt
    input_ids = torch.tensor([encode_prompt(tokenizer, text)], device=model.device)
    stops = stop_token_ids(tokenizer, model)
    pad_id = padding_token_id(tokenizer, stops)
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else dict(GREEDY)
    task_id = resolve_task(model_reference, task)
    if task_id is not None:  # multi-task prompt tuning: which task's prompt to use
        sampling["task_ids"] = torch.tensor([task_id], device=model.device)
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            eos_token_id=stops or None,
            pad_token_id=pad_id,
            use_cache=True,
            **sampling,
        )
    return tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)
