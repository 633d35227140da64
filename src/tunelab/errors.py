"""The one exception type for bad user input.

A ``UserError`` carries a single line meant for the user (which file, which line or field, what is
wrong). The CLI prints it as ``error: ...`` and exits with code 2, without a traceback.
"""


class UserError(Exception):
    """Bad input from the user: a config, a data file, a model path, a command-line option."""


def first_line(error: BaseException) -> str:
    """The first line of a library's error message (its type name when the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
