"""gRPC channels to the four services, and calls made with the browser user's own token.

The edge authorises nothing itself: it forwards ``authorization: Bearer <token>`` unchanged,
so a call from the console is judged by exactly the rules a gRPC client meets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inbox.contacts.v1 import contacts_pb2_grpc
from inbox.presence.v1 import presence_pb2_grpc
from inbox.replies.v1 import replies_pb2_grpc
from inbox.routing.v1 import routing_pb2_grpc

from console_service.domain.problems import FieldViolation, Problem, ProblemError

STUBS: dict[str, Any] = {
    "presence": presence_pb2_grpc.PresenceServiceStub,
    "routing": routing_pb2_grpc.RoutingServiceStub,
    "contacts": contacts_pb2_grpc.ContactsServiceStub,
    "replies": replies_pb2_grpc.RepliesServiceStub,
}
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def problem_from_rpc_error(error: grpc.RpcError) -> Problem:
    """Status code, message, BadRequest field violations and ErrorInfo reason of a failed call."""
    call: Any = error
    code = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
    message = (call.details() if hasattr(call, "details") else "") or code.name
    trailing = call.trailing_metadata() if hasattr(call, "trailing_metadata") else None
    violations: list[FieldViolation] = []
    reason = ""
    for key, value in trailing or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
    if code is grpc.StatusCode.UNAVAILABLE:
        message = f"the service is unavailable: {message}"
    return Problem(code.name, message, tuple(violations), reason)


@dataclass(frozen=True)
class Backend:
    name: str
    channel: grpc.aio.Channel
    stub: Any


class GrpcBackends:
    """One channel per service (HTTP/2 multiplexes every browser's calls over it); the
    ``service_layer.ports.Backends`` the edge runs with."""

    def __init__(self, addresses: Mapping[str, str], *, timeout: float) -> None:
        self._addresses = dict(addresses)
        self._timeout = timeout
        self._backends: dict[str, Backend] = {}

    def open(self) -> None:
        for name, address in self._addresses.items():
            channel = grpc.aio.insecure_channel(address)
            self._backends[name] = Backend(name, channel, STUBS[name](channel))

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.channel.close(None)
        self._backends.clear()

    async def call(self, service: str, rpc: str, request: Message, token: str | None) -> Message:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        method = getattr(self._backends[service].stub, rpc)
        try:
            response: Message = await method(request, metadata=metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise ProblemError(problem_from_rpc_error(exc)) from exc
        return response

    async def health(self) -> dict[str, str]:
        """gRPC health of every service: SERVING, NOT_SERVING, ... or UNREACHABLE."""
        result: dict[str, str] = {}
        for name, backend in self._backends.items():
            try:
                reply = await health_pb2_grpc.HealthStub(backend.channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
                result[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError:
                result[name] = "UNREACHABLE"
        return result
