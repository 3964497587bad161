"""Rules this domain refuses, as plain data: ``code`` names the status class (the edge,
``inbox_kit.grpc_server``, maps it to gRPC), ``reason`` is the stable UPPER_SNAKE value of the
``google.rpc.ErrorInfo`` clients branch on. Standard library only."""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    code: ClassVar[str]
    default_reason: ClassVar[str]

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason


class InvalidArgument(DomainError):
    """A request field breaks a rule; ``field`` names it."""

    code = "INVALID_ARGUMENT"
    default_reason = "FIELD_INVALID"

    def __init__(self, field: str, message: str, *, reason: str = "") -> None:
        super().__init__(f"{field}: {message}", reason=reason)
        self.field = field
        self.description = message


class NotFound(DomainError):
    code = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"
