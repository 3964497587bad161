"""What the edge needs from the outside: the gRPC services, called with the user's token."""

from __future__ import annotations

from typing import Protocol

from google.protobuf.message import Message


class Backends(Protocol):
    """The four services. ``call`` raises ``domain.problems.ProblemError`` when a call fails."""

    def open(self) -> None: ...

    async def close(self) -> None: ...

    async def call(
        self, service: str, rpc: str, request: Message, token: str | None
    ) -> Message: ...

    async def health(self) -> dict[str, str]:
        """gRPC health per service: SERVING, NOT_SERVING, ... or UNREACHABLE."""
        ...
