"""OpenTelemetry tracing for every service: gRPC and Kafka spans, W3C Trace Context propagation.

- **Configuration** by the standard ``OTEL_*`` variables only (``configure_tracing``, called
  once per process by ``inbox_kit.process.run_service``). One deliberate difference from the
  SDK's defaults: ``OTEL_TRACES_EXPORTER`` unset means ``none`` (the SDK's default is
  ``otlp`` to ``localhost:4317``), so a service sends nothing anywhere unless told to; and
  without an exporter (and no ``OTEL_TRACES_SAMPLER``) nothing is recorded, as nothing would
  see it: spans only get ids (trace and span ids in the logs, context propagated downstream
  with the caller's sampled flag), which costs little (``bench/tracing.py``).
- **Propagation** is W3C Trace Context (``traceparent`` / ``tracestate``), on gRPC metadata and
  on Kafka record headers. A consumed record's context is read from, in this order: the
  ``traceparent`` header, the CloudEvents distributed-tracing extension in binary mode
  (``ce_traceparent`` header), the extension in structured mode (a ``traceparent`` attribute of
  the JSON envelope).
- **Spans**: ``<package>.<Service>/<Method>`` (SERVER, every guarded call; CLIENT, calls through
  ``inbox_kit.grpc_client``); ``send <topic>`` (PRODUCER, one per published record, ended on
  the broker's acknowledgement); ``process <topics>`` (CONSUMER, one per consumed batch, linked
  to the producer context of each of its records). docs/tracing.md lists names and attributes.

A batch span rather than a span per record: a batch is handled in one call (one fold, one
bulk write), so per-record spans would all have the same start and end and say nothing more
than the links do, at a span's cost per record. OpenTelemetry's messaging conventions
require links for batches and allow a parent when there is one message: the batch span is
the child of its records' producer context when all of them belong to one trace (a single
record, the common case at low load), otherwise a new trace linked to each of them.

So that an event published *because of* a consumed one continues the consumed one's trace
even when it is published later or from a mixed batch (routing's decisions wait until event
time is final), the consumer remembers the producer context of the last ``CAUSES_KEPT``
consumed event ids; ``EventPublisher.publish_many(..., cause_of=...)`` parents the new
record's ``send`` span to it.
"""

from __future__ import annotations

import logging
import os
import random
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace import StatusCode as SpanStatus

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("inbox_kit")

H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"
#: Binary-mode CloudEvents headers of the distributed-tracing extension.
H_CE_TRACEPARENT = "ce_traceparent"
H_CE_TRACESTATE = "ce_tracestate"
#: Headers a re-published record (dead letter, forwarded) gets anew from its own send span; the
#: ``ce_*`` ones are attributes of the event and stay as they are.
TRACE_HEADERS = frozenset({H_TRACEPARENT, H_TRACESTATE})

_RECORD_HEADERS = frozenset({H_TRACEPARENT, H_TRACESTATE, H_CE_TRACEPARENT, H_CE_TRACESTATE})

#: (topic, partition, offset, event id, producer's span context) of a consumed record.
TracedRecord = tuple[str, int, int, str | None, SpanContext | None]

#: How many consumed event ids keep their producer context for ``cause_of``.
CAUSES_KEPT = 10_000

#: gRPC codes whose SERVER span is an error (OpenTelemetry RPC conventions); a client span is
#: an error for every code but OK.
_SERVER_ERROR_CODES = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


# -- configuration --------------------------------------------------------------------------


def configure_tracing(service_name: str) -> trace.TracerProvider | None:
    """Install, once per process, the tracer provider ``provider_from_env`` describes."""
    provider = provider_from_env(service_name)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider


def provider_from_env(service_name: str) -> trace.TracerProvider | None:
    """The tracer provider the ``OTEL_*`` variables describe.

    ``OTEL_SDK_DISABLED=true``: None, no SDK at all (the API's no-op tracer; incoming contexts
    are passed on unchanged). No exporter and no sampler asked for (the default): an
    ``IdsOnlyTracerProvider`` (nothing would see recorded spans). Otherwise the SDK:
    ``OTEL_SERVICE_NAME`` overrides ``service_name``; the sampler from
    ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (default ``parentbased_always_on``),
    the exporters from ``OTEL_TRACES_EXPORTER`` (``none`` when unset; ``otlp`` with
    ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` ``grpc`` (default) or ``http/protobuf`` and the
    exporter's own ``OTEL_EXPORTER_OTLP_*`` variables; ``console``), each behind a batch span
    processor (``OTEL_BSP_*``).
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = _exporters_from_env()
    if not exporters and not os.environ.get("OTEL_TRACES_SAMPLER"):
        return IdsOnlyTracerProvider()
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class _IdsOnlyTracer(trace.NoOpTracer):
    """Spans that only have ids: a new span id, the parent's trace id and flags (a new trace
    id, not sampled, without a parent). What the logs and the propagated context need, at a
    fraction of the SDK's cost for an unsampled span."""

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        span_id = random.getrandbits(64) or 1
        if parent.is_valid:
            return NonRecordingSpan(
                SpanContext(
                    parent.trace_id,
                    span_id,
                    is_remote=False,
                    trace_flags=parent.trace_flags,
                    trace_state=parent.trace_state,
                )
            )
        return NonRecordingSpan(SpanContext(random.getrandbits(128) or 1, span_id, is_remote=False))


class IdsOnlyTracerProvider(trace.TracerProvider):
    """The default when nothing is exported: nothing is recorded, but every span has ids."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _IdsOnlyTracer()


def _exporters_from_env() -> list[SpanExporter]:
    names = [
        n.strip().lower()
        for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")
        if n.strip()
    ]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        exporter = _exporter(name)
        if exporter is None:
            log.warning("unknown OTEL_TRACES_EXPORTER value ignored", extra={"exporter": name})
        else:
            exporters.append(exporter)
    return exporters


def _exporter(name: str) -> SpanExporter | None:
    if name == "otlp":
        protocol = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        ).strip()
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpExporter,
            )

            return HttpExporter()
        log.warning("unsupported OTLP protocol ignored", extra={"protocol": protocol})
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    return None


# -- ids for the logs -----------------------------------------------------------------------


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in W3C hex of the current span, or None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# -- Kafka ----------------------------------------------------------------------------------


#: The empty context (immutable, so shared): the parent of what starts a new trace.
_NO_PARENT = Context()


def _context_of(span_context: SpanContext | None) -> Context:
    """A context whose parent is ``span_context`` (the empty one, a new trace, if None)."""
    if span_context is None:
        return _NO_PARENT
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def record_context(
    headers: Sequence[tuple[str, bytes]] | None, extensions: Mapping[str, Any] | None = None
) -> SpanContext | None:
    """The producer's span context of a consumed record (see the module doc for the order)."""
    found: dict[str, bytes] = {}
    for key, value in headers or ():
        name = key.lower()
        if name in _RECORD_HEADERS:
            found[name] = value
    for parent, state in ((H_TRACEPARENT, H_TRACESTATE), (H_CE_TRACEPARENT, H_CE_TRACESTATE)):
        if parent in found:
            span_context = parse_traceparent(
                found[parent].decode(errors="replace"), found.get(state)
            )
            if span_context is not None:
                return span_context
    if extensions:
        traceparent = extensions.get(H_TRACEPARENT)
        if isinstance(traceparent, str):
            tracestate = extensions.get(H_TRACESTATE)
            return parse_traceparent(
                traceparent, tracestate if isinstance(tracestate, str) else None
            )
    return None


def parse_traceparent(
    traceparent: str, tracestate: str | bytes | None = None
) -> SpanContext | None:
    """A W3C ``traceparent`` (version 00; later versions by their first four fields), or None
    if it is malformed. Hand-written: it runs for every consumed record and every call."""
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_hex, span_hex, flags_hex = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    if len(trace_hex) != 32 or len(span_hex) != 16 or len(flags_hex) != 2:
        return None
    try:
        trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    except ValueError:
        return None
    if not trace_id or not span_id or trace_hex != trace_hex.lower():
        return None
    state = None
    if tracestate:
        text = tracestate.decode(errors="replace") if isinstance(tracestate, bytes) else tracestate
        state = TraceState.from_header([text])
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags), trace_state=state
    )


_causes: OrderedDict[str, SpanContext] = OrderedDict()


def remember_cause(event_id: str, span_context: SpanContext) -> None:
    _causes[event_id] = span_context
    _causes.move_to_end(event_id)
    if len(_causes) > CAUSES_KEPT:
        _causes.popitem(last=False)


def cause_context(event_id: str | None) -> SpanContext | None:
    """The producer context of a recently consumed event (for ``cause_of``), if known."""
    return _causes.get(event_id) if event_id else None


def start_send(
    topic: str,
    *,
    event_type: str | None = None,
    event_id: str | None = None,
    partition: int | None = None,
    cause: SpanContext | None = None,
) -> tuple[Span, dict[str, str]]:
    """Start the PRODUCER span of one record; returns it and the headers that carry it.

    With ``cause`` the span continues that trace (linked to the current span), else it is a
    child of the current span. End it with ``end_span`` once the broker acknowledged.
    """
    parent: Context | None = None
    links: list[Link] = []
    if cause is not None:
        parent = _context_of(cause)
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            links.append(Link(current))
    span = TRACER.start_span(f"send {topic}", context=parent, kind=SpanKind.PRODUCER, links=links)
    if span.is_recording():  # the attributes cost more than the unsampled span itself
        span.set_attributes(
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": topic,
            }
        )
        if event_id is not None:
            span.set_attribute("messaging.message.id", event_id)
            span.set_attribute("cloudevents.event_id", event_id)
        if event_type is not None:
            span.set_attribute("cloudevents.event_type", event_type)
        if partition is not None:
            span.set_attribute("messaging.destination.partition.id", str(partition))
    return span, trace_headers(span.get_span_context())


def trace_headers(span_context: SpanContext) -> dict[str, str]:
    """The W3C headers of ``span_context`` (what OpenTelemetry's W3C propagator writes, without
    building a context for it: this runs once per published record)."""
    if not span_context.is_valid:
        return {}
    headers = {
        H_TRACEPARENT: f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{span_context.trace_flags:02x}"
    }
    if span_context.trace_state:
        headers[H_TRACESTATE] = span_context.trace_state.to_header()
    return headers


def end_span(span: Span, error: BaseException | None = None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(SpanStatus.ERROR, type(error).__name__))
    span.end()


@contextmanager
def consuming(
    *,
    topics: Iterable[str],
    group_id: str,
    records: Sequence[TracedRecord],
) -> Iterator[Span]:
    """The CONSUMER span of one batch, current while it is handled.

    ``records``: (topic, partition, offset, event id, producer context) per record. Linked to
    every producer context; the child of it when they all belong to one trace.
    """
    contexts = [r[4] for r in records if r[4] is not None]
    same_trace = bool(contexts) and all(c.trace_id == contexts[0].trace_id for c in contexts)
    parent = _context_of(contexts[0] if same_trace else None)
    for _, _, _, event_id, span_context in records:
        if event_id is not None and span_context is not None:
            remember_cause(event_id, span_context)
    names = sorted(set(topics))
    with TRACER.start_as_current_span(
        "process " + ",".join(names), context=parent, kind=SpanKind.CONSUMER
    ) as span:
        if span.is_recording():  # links and attributes cost more than an unsampled span
            _describe_batch(span, names, group_id, records)
        yield span


def _describe_batch(
    span: Span, names: Sequence[str], group_id: str, records: Sequence[TracedRecord]
) -> None:
    seen: set[int] = set()
    for topic, partition, offset, event_id, span_context in records:
        if span_context is None or span_context.span_id in seen:
            continue
        seen.add(span_context.span_id)
        link_attributes: dict[str, Any] = {
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
        }
        if event_id is not None:
            link_attributes["messaging.message.id"] = event_id
        span.add_link(span_context, link_attributes)
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": group_id,
        "messaging.batch.message_count": len(records),
    }
    if len(names) == 1:
        attributes["messaging.destination.name"] = names[0]
    if len(records) == 1:
        _, partition, offset, event_id, _ = records[0]
        attributes["messaging.destination.partition.id"] = str(partition)
        attributes["messaging.kafka.offset"] = offset
        if event_id is not None:
            attributes["messaging.message.id"] = event_id
    span.set_attributes(attributes)


# -- gRPC -----------------------------------------------------------------------------------


def caller_context(
    traceparent: str | bytes | None, tracestate: str | bytes | None
) -> SpanContext | None:
    """The caller's span context from its ``traceparent`` / ``tracestate`` metadata values."""
    if traceparent is None:
        return None
    text = traceparent.decode(errors="replace") if isinstance(traceparent, bytes) else traceparent
    return parse_traceparent(text, tracestate)


def _rpc_attributes(method: str) -> dict[str, Any]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def start_server_span(method: str, caller: SpanContext | None) -> tuple[Span, object]:
    """The SERVER span of an incoming call (child of the caller's context, ``caller_context``
    of its ``traceparent`` / ``tracestate`` metadata), made current; end it with
    ``end_server_span``."""
    span = TRACER.start_span(method.lstrip("/"), context=_context_of(caller), kind=SpanKind.SERVER)
    if span.is_recording():
        span.set_attributes(_rpc_attributes(method))
    token = otel_context.attach(trace.set_span_in_context(span))
    return span, token


def end_server_span(span: Span, token: object, code: str) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]
    _set_grpc_status(span, code, error=code in _SERVER_ERROR_CODES)
    span.end()


def _set_grpc_status(span: Span, code: str, *, error: bool) -> None:
    if not span.is_recording():
        return
    status = grpc.StatusCode.__members__.get(code, grpc.StatusCode.UNKNOWN)
    span.set_attribute("rpc.grpc.status_code", status.value[0])
    if error:
        span.set_status(Status(SpanStatus.ERROR, code))


class ClientTracing(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """CLIENT span per unary call, its context sent in the ``traceparent`` metadata."""

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        with TRACER.start_as_current_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if span.is_recording():
                span.set_attributes(_rpc_attributes(method))
            carrier = trace_headers(span.get_span_context())
            metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()), *carrier.items())
            details = grpc.aio.ClientCallDetails(
                client_call_details.method,
                client_call_details.timeout,
                metadata,
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            )
            call = await continuation(details, request)
            try:
                await call
            except grpc.aio.AioRpcError as exc:
                _set_grpc_status(span, exc.code().name, error=True)
                raise
            _set_grpc_status(span, "OK", error=False)
            return call
