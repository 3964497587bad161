"""How our services call each other over gRPC (and how we advise clients to call us).

- **Load balancing**: `round_robin` over every address the target resolves to. With a
  headless Kubernetes Service (`dns:///contacts-headless:7063`) that is every ready replica,
  so calls spread over replicas and new replicas get traffic; with a ClusterIP address it is
  the one virtual IP (connections, not calls, are balanced).
- **Retries**, for idempotent methods only (reads): up to 3 attempts on `UNAVAILABLE` (the
  replica went away or is not ready), backoff 50 ms → 500 ms, with gRPC's retry throttling so
  retries cannot multiply an outage.
- **Deadlines propagate**: a call made while serving another gets the smaller of its own
  timeout and what is left of the incoming call's deadline (minus a margin to answer), so work
  nobody waits for any more is not started downstream.
- **Keepalive and message size**: the client pings an idle connection every 30 s (servers
  accept pings every 10 s or more: ``inbox_kit.grpc_server.SERVER_OPTIONS``); messages are
  capped at 4 MiB both ways.
- **Tracing**: every unary call is a CLIENT span whose context goes out in the ``traceparent``
  metadata (``inbox_kit.tracing``), so the server's span continues the caller's trace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar, Token
from typing import Any

import grpc

from inbox_kit import tracing

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Time kept back from a propagated deadline for our own reply.
DEADLINE_MARGIN_SECONDS = 0.02

RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

CLIENT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.enable_retries", 1),
)

_INCOMING_DEADLINE: ContextVar[float | None] = ContextVar("incoming_deadline", default=None)


def service_config(service: str, idempotent_methods: Iterable[str] = ()) -> str:
    """The JSON service config: round_robin, and retries for ``idempotent_methods``."""
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
    }
    methods = [{"service": service, "method": m} for m in idempotent_methods]
    if methods:
        config["methodConfig"] = [{"name": methods, "retryPolicy": RETRY_POLICY}]
    return json.dumps(config)


def insecure_channel(
    target: str,
    *,
    service: str,
    idempotent_methods: Iterable[str] = (),
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel to ``target`` (``host:port`` or ``dns:///name:port``) with our conventions."""
    all_options = [
        *CLIENT_OPTIONS,
        ("grpc.service_config", service_config(service, idempotent_methods)),
        *options,
    ]
    return grpc.aio.insecure_channel(
        target,
        options=all_options,
        interceptors=[tracing.ClientTracing()],  # type: ignore[list-item]
    )


def set_incoming_deadline(time_remaining: float | None) -> Token[float | None]:
    """Called by the server guard with the incoming call's ``context.time_remaining()``."""
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    return _INCOMING_DEADLINE.set(deadline)


def reset_incoming_deadline(token: Token[float | None]) -> None:
    _INCOMING_DEADLINE.reset(token)


def outgoing_timeout(default_seconds: float) -> float:
    """Timeout of a call made now: ``default_seconds``, or less if the call being served has
    less time left (never below 1 ms: an expired budget fails fast as DEADLINE_EXCEEDED)."""
    deadline = _INCOMING_DEADLINE.get()
    if deadline is None:
        return default_seconds
    left = deadline - time.monotonic() - DEADLINE_MARGIN_SECONDS
    return max(0.001, min(default_seconds, left))
