"""Domain errors, and how they reach gRPC clients.

Services raise these from their domain and service layers; ``ErrorMappingInterceptor`` turns
them into gRPC status codes with rich details (``google.rpc.Status``), so that a client sees
``INVALID_ARGUMENT`` with the offending field in a ``BadRequest`` detail.
"""

from __future__ import annotations

import grpc


class DomainError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(DomainError):
    """The system is not in a state for this call (e.g. heartbeat on an ended session)."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class Aborted(DomainError):
    """A concurrency conflict (e.g. a stale version); the client should reload and retry."""

    code = grpc.StatusCode.ABORTED
