"""How a gRPC failure is told to an HTTP client: status code and JSON body.

Pure rules (no gRPC import): the adapter reads the status code name, message and
``google.rpc`` details off the failed call and hands them here. The body follows the shape of
Google's JSON error model (AIP-193): ``{"error": {"code": 400, "status": "INVALID_ARGUMENT",
"message": ..., "field": ..., "field_violations": [...], "reason": ...}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: gRPC status code name → HTTP status. The pairs follow google.rpc.Code's documented HTTP
#: mapping, except FAILED_PRECONDITION and ABORTED → 409: for a browser client both mean
#: "the state changed or is not right for this; reload and decide", which is 409 Conflict.
HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 409,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class Problem:
    """A failed call, as the console client sees it."""

    status: str  # gRPC status code name, e.g. "INVALID_ARGUMENT"
    message: str
    field_violations: tuple[FieldViolation, ...] = field(default_factory=tuple)
    reason: str = ""  # google.rpc.ErrorInfo reason, when the service sent one

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.status, 500)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_status,
            "status": self.status,
            "message": self.message,
        }
        if self.field_violations:
            error["field"] = self.field_violations[0].field
            error["field_violations"] = [
                {"field": v.field, "description": v.description} for v in self.field_violations
            ]
        if self.reason:
            error["reason"] = self.reason
        return {"error": error}


class ProblemError(Exception):
    """A request failed; ``problem`` is what the HTTP client is told. Raised by the edge's own
    checks and by the gRPC adapter alike, so the HTTP layer handles one kind of failure."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def invalid_argument(field_name: str, description: str) -> Problem:
    """A request the edge itself refuses before calling anything (bad JSON, unknown field)."""
    return Problem(
        "INVALID_ARGUMENT",
        f"{field_name}: {description}",
        (FieldViolation(field_name, description),),
    )
