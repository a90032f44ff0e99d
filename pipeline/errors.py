"""A failed command ends with its reason, not with MONAI's config-evaluation traceback.

An error raised inside a bundle expression reaches the screen wrapped by MONAI (``RuntimeError: Failed to evaluate
ConfigExpression: ...``), the clear message 40 to 90 lines above. :func:`install_excepthook` (the first step of every
bundle's ``initialize``) replaces Python's last-resort handler for the command: it prints the innermost cause, the
one that says what is wrong and names the file or option, as the last lines; ``PIPELINE_TRACEBACK=1`` prints the
full traceback above it as well.
"""

from __future__ import annotations

import os
import sys
import traceback

ENV = "PIPELINE_TRACEBACK"


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of ``exc``'s chain (``raise ... from`` first, then the one being handled)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None:
            break
        exc = nxt
    return exc


NO_READER = "LoadImage cannot find a suitable reader for file: "


def unreadable_image(cause: BaseException) -> str | None:
    """``<path> is not a readable image (<first reader's reason>)`` for MONAI's ``LoadImage`` failure, whose text holds
    the traceback of every reader it tried; ``None`` for any other exception."""
    text = str(cause)
    if not text.startswith(NO_READER):
        return None
    path = text[len(NO_READER):].split("\n", 1)[0].rstrip(".")
    reasons = [ln for ln in text.splitlines()[1:] if ln.strip() and not ln.startswith((" ", "Traceback"))]
    return f"{path} is not a readable image" + (f" ({reasons[0]})" if reasons else "")


def message(exc: BaseException) -> str:
    """``error: <what went wrong>`` for the innermost cause; the exception's type is named unless it is one of the
    project's own messages (a dataset or option error, or a ``SystemExit`` with text)."""
    from .data.errors import DatasetError

    cause = root_cause(exc)
    unreadable = unreadable_image(cause)
    if unreadable:
        return f"error: {unreadable}"
    text = str(cause).strip() or type(cause).__name__
    if text.startswith("error: "):
        text = text[len("error: "):]
    named = isinstance(cause, (DatasetError, SystemExit)) or isinstance(cause, (FileNotFoundError, ValueError)) and (
        "--" in text)
    return f"error: {text if named else f'{type(cause).__name__}: {text}'}"


def _hook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        return sys.__excepthook__(exc_type, exc, tb)
    full = os.environ.get(ENV, "").lower() in ("1", "true", "yes")
    if full:
        traceback.print_exception(exc_type, exc, tb)
    hint = "" if full else f"\n(the full traceback: set {ENV}=1)"
    print(f"\n{message(exc)}{hint}", file=sys.stderr)


def install_excepthook() -> None:
    """Use :func:`_hook` for this process's uncaught exceptions, unless another tool has set its own."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _hook
