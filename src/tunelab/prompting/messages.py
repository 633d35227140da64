"""A data row as chat messages: the fields of each format checked and put in roles.

This is the prompting layer's first job (row -> messages), below the data pipeline that tokenizes
the messages and the evaluation that renders them as prompts: both read rows through these.
"""

from __future__ import annotations

from typing import Any

from tunelab.errors import UserError

ROLES = ("system", "user", "assistant")


def field_text(row: dict[str, Any], name: str, optional: bool = False) -> str:
    value = row.get(name)
    if value is None:
        if optional:
            return ""
        raise UserError(f"missing field '{name}'")
    if isinstance(value, bool | int | float):
        return str(value)  # a CSV column of numbers arrives as numbers: "2+2=" -> 4
    if not isinstance(value, str):
        raise UserError(f"field '{name}' must be a string, got {type(value).__name__}")
    return value


def row_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise UserError("field 'messages' must be a non-empty list of {role, content} objects")
    cleaned = []
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise UserError(f"messages[{number}].role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            raise UserError(f"messages[{number}].content must be a string")
        cleaned.append({"role": message["role"], "content": content})
    if not any(message["role"] == "assistant" for message in cleaned):
        raise UserError("field 'messages' has no assistant message to learn from")
    if not any(message["role"] == "user" for message in cleaned):
        raise UserError("field 'messages' has no user message (a conversation starts with the user's turn)")
    first = next(index for index, message in enumerate(cleaned) if message["role"] != "system")
    if cleaned[first]["role"] != "user":
        raise UserError(
            f"messages[{first}] is the assistant's, before any user turn (a conversation starts with the user's turn)"
        )
    return cleaned


def instruction_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    instruction = field_text(row, "instruction")
    extra_input = field_text(row, "input", optional=True)
    system = field_text(row, "system", optional=True)
    user = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    messages = [{"role": "system", "content": system}] if system.strip() else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": field_text(row, "output")}]
