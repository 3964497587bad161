"""Exceptions raised by the devstack."""

from __future__ import annotations


class DevstackError(RuntimeError):
    """A devstack operation failed; the message says what and where to look."""


class MissingToolError(DevstackError):
    """A command-line tool needed to provision or start a component is not on PATH."""

    def __init__(self, tool: str, purpose: str) -> None:
        self.tool = tool
        self.purpose = purpose
        super().__init__(
            f"required tool {tool!r} was not found on PATH (needed to {purpose}); "
            f"install it or put it on PATH and retry"
        )
