"""A ``grpc.aio`` server with what every service needs.

- health checking (``grpc.health.v1``) and server reflection;
- a guard around every method of the registered services (not health and reflection) that,
  for every call: authenticates the bearer token, maps domain errors to status codes with
  ``google.rpc`` details, records Prometheus metrics, and makes the call's SERVER span (child
  of the caller's ``traceparent`` metadata, ``inbox_kit.tracing``);
- graceful shutdown: health flips to NOT_SERVING, in-flight calls get a grace period.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.trace import SpanContext
from prometheus_client import Counter, Histogram

from inbox_kit import tracing
from inbox_kit.auth import (
    Principal,
    TokenVerifier,
    reset_current_principal,
    set_current_principal,
)
from inbox_kit.errors import Code, Unauthenticated, carries_code
from inbox_kit.grpc_client import (
    MAX_MESSAGE_BYTES,
    reset_incoming_deadline,
    set_incoming_deadline,
)

log = logging.getLogger(__name__)

GRPC_CALLS = Counter("inbox_grpc_calls_total", "gRPC calls served", ["method", "code"])
#: Every call ends in one sample, failures included: a call the client gave up on (deadline or
#: cancel) is observed with code DEADLINE_EXCEEDED / CANCELLED when the server notices.
GRPC_LATENCY = Histogram(
    "inbox_grpc_call_seconds",
    "gRPC call latency (server side, by status code)",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


#: grpc.aio.server options of every service (``options`` passed to GrpcServer override them).
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Ping idle clients every 2 min, drop them after 20 s without an answer.
    ("grpc.keepalive_time_ms", 120_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # Accept client keepalive pings every 10 s or more, also without calls in flight.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Close connections after 5 min (30 s grace for calls in flight) so long-lived clients
    # re-resolve and spread over replicas added since.
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 30_000),
)


@dataclass(frozen=True)
class ServiceRegistration:
    """How to add one generated servicer to the server."""

    full_name: str  # e.g. "inbox.presence.v1.PresenceService"
    #: The generated ``add_*Servicer_to_server(servicer, server)``.
    add_to_server: Callable[[Any, Any], None]
    servicer: Any


def error_domain(method: str) -> str:
    """``/inbox.presence.v1.PresenceService/SignIn`` → ``inbox.presence.v1`` (AIP-193)."""
    service = method.lstrip("/").partition("/")[0]
    return service.rpartition(".")[0] or "inbox"


def _status_for(exc: BaseException, domain: str = "inbox") -> grpc.Status:
    """The status of a domain error (``inbox_kit.errors.carries_code``): its code, and an
    ``ErrorInfo`` with its reason and ``domain``; a ``BadRequest`` naming the field for
    ``INVALID_ARGUMENT``."""
    code = Code(getattr(exc, "code", Code.INVALID_ARGUMENT))
    reason = str(getattr(exc, "reason", "") or code.value)
    message = str(getattr(exc, "message", "") or exc)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
    details = [info]
    field = getattr(exc, "field", None)
    if isinstance(field, str):
        bad_request = any_pb2.Any()
        bad_request.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=field, description=str(getattr(exc, "description", message))
                    )
                ]
            )
        )
        details.append(bad_request)
    status = status_pb2.Status(code=getattr(code_pb2, code.value), message=message, details=details)
    return rpc_status.to_status(status)


def _internal_status(domain: str = "inbox") -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=domain))
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL, message="internal error; see server logs", details=[info]
        )
    )


def _read_metadata(
    metadata: Sequence[tuple[str, str | bytes]] | None,
) -> tuple[str | None, SpanContext | None]:
    """(bearer token, caller's span context) of a call, in one pass over its metadata: the
    first ``authorization`` entry (a token only with the ``Bearer`` scheme) and the last
    ``traceparent`` / ``tracestate``."""
    authorization: str | bytes | None = None
    traceparent: str | bytes | None = None
    tracestate: str | bytes | None = None
    for key, value in metadata or ():
        if key == "authorization":
            if authorization is None:
                authorization = value
        elif key == tracing.H_TRACEPARENT:
            traceparent = value
        elif key == tracing.H_TRACESTATE:
            tracestate = value
    token = None
    if authorization is not None:
        # never raises (it runs before the guard's error mapping): a garbled value is a
        # token that fails verification
        text = (
            authorization.decode(errors="replace")
            if isinstance(authorization, bytes)
            else authorization
        )
        scheme, _, rest = text.partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else None
    return token, tracing.caller_context(traceparent, tracestate)


def _guarded(handler: Any, method: str, verifier: TokenVerifier) -> Any:
    """``handler`` (grpc.aio behaviours are coroutines / async generators) with auth, error
    mapping and metrics around it. Built once per method, so a call pays for none of it."""
    calls_ok = GRPC_CALLS.labels(method, "OK")
    latency_ok = GRPC_LATENCY.labels(method, "OK")

    def record(code: str, started: float) -> str:
        GRPC_CALLS.labels(method, code).inc()
        GRPC_LATENCY.labels(method, code).observe(time.perf_counter() - started)
        return code

    def failure_code(exc: BaseException, context: Any) -> str:
        if isinstance(exc, asyncio.CancelledError):
            # grpc.aio cancels the handler when the client's deadline passes or it cancels.
            remaining = context.time_remaining()
            return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
        return str(getattr(exc, "code", "")) if carries_code(exc) else "INTERNAL"

    domain = error_domain(method)

    def enter(context: Any, token: str | None) -> tuple[contextvars.Token[Principal], Any]:
        if token is None:
            raise Unauthenticated(
                "missing bearer token in the authorization metadata", reason="TOKEN_MISSING"
            )
        principal = set_current_principal(verifier.verify(token))
        # calls made while serving this one inherit what is left of its deadline
        return principal, set_incoming_deadline(context.time_remaining())

    def leave(tokens: tuple[contextvars.Token[Principal], Any]) -> None:
        reset_current_principal(tokens[0])
        reset_incoming_deadline(tokens[1])

    async def fail(context: Any, exc: Exception) -> None:
        if carries_code(exc):
            await context.abort_with_status(_status_for(exc, domain))
        trace.get_current_span().record_exception(exc)
        log.exception("unhandled error in %s", method)
        await context.abort_with_status(_internal_status(domain))

    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            bearer, caller = _read_metadata(context.invocation_metadata())
            span, attached = tracing.start_server_span(method, caller)
            code = "OK"
            try:
                try:
                    tokens = enter(context, bearer)
                    try:
                        response = await inner(request, context)
                    finally:
                        leave(tokens)
                except asyncio.CancelledError as exc:
                    code = record(failure_code(exc, context), started)
                    raise
                except Exception as exc:
                    code = record(failure_code(exc, context), started)
                    await fail(context, exc)
            finally:
                tracing.end_server_span(span, attached, code)
            calls_ok.inc()
            latency_ok.observe(time.perf_counter() - started)
            return response

        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    inner_stream = handler.unary_stream or handler.stream_stream

    async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
        started = time.perf_counter()
        bearer, caller = _read_metadata(context.invocation_metadata())
        span, attached = tracing.start_server_span(method, caller)
        code = "OK"
        try:
            try:
                tokens = enter(context, bearer)
                try:
                    async for item in inner_stream(request, context):
                        yield item
                finally:
                    leave(tokens)
            except asyncio.CancelledError as exc:
                code = record(failure_code(exc, context), started)
                raise
            except Exception as exc:
                code = record(failure_code(exc, context), started)
                await fail(context, exc)
        finally:
            tracing.end_server_span(span, attached, code)
        calls_ok.inc()
        latency_ok.observe(time.perf_counter() - started)

    factory = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(
        streaming,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _GuardedGenericHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler whose method handlers are guarded (once per method)."""

    def __init__(self, inner: grpc.GenericRpcHandler[Any, Any], verifier: TokenVerifier) -> None:
        self._inner = inner
        self._verifier = verifier
        self._guarded: dict[str, Any] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        guarded = self._guarded.get(method)
        if guarded is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None
            guarded = self._guarded[method] = _guarded(handler, method, self._verifier)
        return guarded


class _GuardingRegistrar:
    """What the generated ``add_*Servicer_to_server`` functions register with: passes their
    method handlers on to the real server, guarded.

    Guarding at registration rather than in a ``grpc.aio`` interceptor matters on the hot
    path: an interceptor runs a coroutine and builds a new method handler on every call.
    """

    def __init__(self, server: grpc.aio.Server, verifier: TokenVerifier) -> None:
        self._server = server
        self._verifier = verifier

    def add_generic_rpc_handlers(
        self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers(
            [_GuardedGenericHandler(h, self._verifier) for h in handlers]
        )

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]
            service,
            {
                name: _guarded(handler, f"/{service}/{name}", self._verifier)
                for name, handler in handlers.items()
            },
        )


#: Health service name of liveness: SERVING from start to stop, whatever the dependencies do.
#: ``""`` and the service names report readiness (``inbox_kit.readiness``).
LIVENESS_SERVICE = "liveness"


class GrpcServer:
    """Owns a ``grpc.aio.Server`` with health, reflection and the guarded services."""

    def __init__(
        self,
        services: Iterable[ServiceRegistration],
        *,
        verifier: TokenVerifier,
        host: str = "127.0.0.1",
        port: int = 0,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._services = list(services)
        self._serving = False
        self._server = grpc.aio.server(options=[*SERVER_OPTIONS, *options])
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        registrar = _GuardingRegistrar(self._server, verifier)
        for svc in self._services:
            svc.add_to_server(svc.servicer, registrar)
        names = [s.full_name for s in self._services]
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC on {host}:{port}")
        self.address = f"{host}:{self.port}"

    async def start(self) -> None:
        await self._server.start()
        await self.set_serving(True)
        log.info("gRPC serving", extra={"address": self.address})

    async def set_serving(self, serving: bool) -> None:
        """Lifecycle: liveness and readiness together (start, graceful stop)."""
        self._serving = serving
        await self._health.set(LIVENESS_SERVICE, _state(serving))
        await self.set_ready(serving)

    async def set_ready(self, ready: bool) -> None:
        """Readiness (health ``""`` and every service name); never ready while stopping."""
        state = _state(ready and self._serving)
        await self._health.set("", state)
        for svc in self._services:
            await self._health.set(svc.full_name, state)

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        await self._server.stop(grace)


def _state(serving: bool) -> Any:
    return (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )


async def wait_for_shutdown_signal() -> None:
    """Return on the first SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
