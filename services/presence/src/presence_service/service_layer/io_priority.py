"""Which I/O the current task does: request-path (the default) or background.

Background loops (sweeper, relay, retention) mark their task; the database adapter's write
gate lets request-path writes overtake theirs. The mark is a context variable, so it follows
the task (and the tasks it creates) and never leaks into request handlers.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "presence_background_io", default=False
)


def mark_background() -> None:
    """Mark the current task (and tasks it creates) as background I/O."""
    _BACKGROUND.set(True)


@contextlib.contextmanager
def background_io() -> Iterator[None]:
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


def is_background() -> bool:
    return _BACKGROUND.get()
