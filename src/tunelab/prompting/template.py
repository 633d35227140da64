"""``prompt.template`` and ``prompt.system``: the user's wording of every example, for every strategy.

A template is a Python format string over the example's fields (``"Review: {text}"``,
``"{instruction}\\n\\n{input}"``); literal braces are doubled (``{{`` ``}}``). A placeholder that
is not a field of the data is an error naming it and the fields there are.
"""

from __future__ import annotations

import string
from typing import Any

from tunelab.config.schema import PromptConfig
from tunelab.errors import UserError


def template_fields(template: str) -> list[str]:
    """The field names a template uses, in order."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise UserError(f"prompt.template: {error} (write literal braces as {{{{ and }}}})") from None
    names = []
    for _, name, _, _ in parsed:
        if name is not None:
            if not name or not name.isidentifier():
                raise UserError(f"prompt.template: placeholder {{{name}}} must name a field, e.g. {{text}}")
            names.append(name)
    return names


def fill_template(template: str, row: dict[str, Any]) -> str:
    """The template with the row's fields in place (non-text values as JSON-ish text)."""
    missing = [name for name in template_fields(template) if name not in row]
    if missing:
        fields = ", ".join(sorted(row))
        raise UserError(f"prompt.template: {{{missing[0]}}} is not a field of the data (fields: {fields})")
    values = {name: "" if row[name] is None else str(row[name]) for name in template_fields(template)}
    return template.format_map(values)


def has_prompt(config: PromptConfig | None) -> bool:
    return config is not None and (config.system is not None or config.template is not None)
