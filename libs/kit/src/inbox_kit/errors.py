"""Errors a client can branch on, without any transport in them.

An error carries a plain ``code`` (the name of the gRPC status code it becomes, e.g.
``"NOT_FOUND"``) and a stable UPPER_SNAKE ``reason`` (``"SESSION_ENDED"``). Only the edge
(``inbox_kit.grpc_status``) knows gRPC: it turns ``code`` into the status code and ``reason``
into a ``google.rpc.ErrorInfo`` whose ``domain`` is the service's proto package
(``inbox.presence.v1``), as AIP-193 describes. ``InvalidArgument`` also names its field in a
``google.rpc.BadRequest``.

This module imports only the standard library (an import-linter contract holds it to that),
so it is the one module outside itself a service's domain may import: domains raise these
classes (or their own with the same two class attributes, see ``carries_code``), and the edge
maps them the same way.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Code(StrEnum):
    """The status codes our errors map to (the gRPC code names)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"


class DomainError(Exception):
    code: ClassVar[Code]
    #: The reason when the raise site names none.
    default_reason: ClassVar[str]

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason


class InvalidArgument(DomainError):
    code = Code.INVALID_ARGUMENT
    default_reason = "FIELD_INVALID"

    def __init__(self, field: str, message: str, *, reason: str = "") -> None:
        super().__init__(f"{field}: {message}", reason=reason)
        self.field = field
        self.description = message


class NotFound(DomainError):
    """Absent — or belonging to another org, which a caller cannot tell apart."""

    code = Code.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = Code.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class PermissionDenied(DomainError):
    code = Code.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    code = Code.UNAUTHENTICATED
    default_reason = "TOKEN_INVALID"


class FailedPrecondition(DomainError):
    """The system is not in a state for this call (e.g. heartbeat on an ended session)."""

    code = Code.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A concurrency conflict (e.g. a stale version); the client should reload and retry."""

    code = Code.ABORTED
    default_reason = "CONCURRENT_CHANGE"


class Unavailable(DomainError):
    """A dependency cannot be reached right now; retrying later may succeed."""

    code = Code.UNAVAILABLE
    default_reason = "DEPENDENCY_UNAVAILABLE"


def carries_code(exc: BaseException) -> bool:
    """A ``DomainError``, or a domain's own exception with a ``code`` naming a ``Code``."""
    return isinstance(exc, DomainError) or getattr(exc, "code", None) in Code.__members__
