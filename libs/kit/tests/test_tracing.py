"""Tracing in the kit: OTEL_* configuration, W3C context on gRPC metadata and Kafka headers,
the spans of the gRPC guard, the client channel, the publisher and the batch consumer."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactProfileUpserted
from inbox_kit import tracing
from inbox_kit.auth import TokenVerifier, mint_token
from inbox_kit.batch_consumer import Batch, BatchConsumer
from inbox_kit.grpc_client import insecure_channel
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_kit.kafka import DeadLetters, EventPublisher
from inbox_kit.logging import _ServiceFilter
from inbox_testing import Infra, consumer_record
from inbox_testing.spans import RecordedSpans
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode

SECRET = "kit-tracing-secret-0123456789abcdef"
SERVICE = "inbox.test.v1.TracedService"
TOPIC = "inbox.contacts.v1"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER = "00-11111111111111111111111111111111-2222222222222222-01"


def _event(contact_id: str = "c1") -> CloudEvent[ContactProfileUpserted]:
    data = ContactProfileUpserted(
        org_id="org", contact_id=contact_id, occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return CloudEvent.wrap(data, source="/tests")


def _hex(span: Any) -> str:
    return format(span.context.trace_id, "032x")


# -- configuration ------------------------------------------------------------------------


def _processors(provider: Any) -> tuple[Any, ...]:
    return tuple(provider._active_span_processor._span_processors)


def test_unset_otel_variables_export_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    provider = tracing.provider_from_env("replies")
    # nothing would be exported, so nothing is recorded; spans still have ids for the logs
    assert isinstance(provider, tracing.IdsOnlyTracerProvider)
    tracer = provider.get_tracer("t")
    root = tracer.start_span("x")
    assert not root.is_recording() and root.get_span_context().is_valid
    assert not root.get_span_context().trace_flags.sampled
    caller = tracing.parse_traceparent(PARENT)
    assert caller is not None
    child = tracer.start_span("y", context=trace.set_span_in_context(NonRecordingSpan(caller)))
    ctx = child.get_span_context()
    # the caller's trace and sampled flag go on, under a span id of our own
    assert (ctx.trace_id, ctx.trace_flags) == (caller.trace_id, caller.trace_flags)
    assert ctx.span_id != caller.span_id
    # a sampler asked for means the SDK, even without an exporter
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    recording = tracing.provider_from_env("replies")
    assert isinstance(recording, TracerProvider)
    assert _processors(recording) == ()
    assert recording.resource.attributes["service.name"] == "replies"
    assert recording.get_tracer("t").start_span("x").is_recording()


def test_otel_variables_choose_exporter_service_name_and_sampler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:12599")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "replies-eu")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    provider = tracing.provider_from_env("replies")
    assert isinstance(provider, TracerProvider)
    try:
        [processor] = _processors(provider)
        assert isinstance(processor, BatchSpanProcessor)
        exporter = processor._batch_processor._exporter
        assert type(exporter).__module__.endswith("proto.http.trace_exporter")
        assert exporter._endpoint == "http://127.0.0.1:12599/v1/traces"
        assert provider.resource.attributes["service.name"] == "replies-eu"
        assert not provider.get_tracer("t").start_span("x").is_recording()
    finally:
        provider.shutdown()  # nothing was recorded: nothing is sent
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.provider_from_env("replies") is None


# -- Kafka context --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "traceparent",
    [
        PARENT,
        OTHER,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",  # a later version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
        "garbage",
        "",
    ],
)
def test_traceparent_parsing_agrees_with_the_reference_propagator(traceparent: str) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent, "tracestate": "vendor=1"}
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier))
    expected_context = expected.get_span_context()
    got = tracing.parse_traceparent(traceparent, "vendor=1")
    if not expected_context.is_valid:
        assert got is None
    else:
        assert got == expected_context
        assert got.trace_state == expected_context.trace_state


def test_record_context_from_header_then_binary_then_structured_extension() -> None:
    def trace_of(ctx: Any) -> str | None:
        return None if ctx is None else format(ctx.trace_id, "032x")

    header = [("traceparent", PARENT.encode()), ("ce_traceparent", OTHER.encode())]
    assert trace_of(tracing.record_context(header)) == PARENT.split("-")[1]
    binary = [("ce_traceparent", OTHER.encode())]
    assert trace_of(tracing.record_context(binary)) == OTHER.split("-")[1]
    structured = tracing.record_context([], {"traceparent": PARENT})
    assert trace_of(structured) == PARENT.split("-")[1]
    stated = tracing.record_context([("tracestate", b"vendor=1"), ("traceparent", PARENT.encode())])
    assert stated is not None and stated.trace_state.get("vendor") == "1"
    assert tracing.record_context([("traceparent", b"garbage")]) is None
    assert tracing.record_context(None, None) is None


async def test_batch_span_continues_one_trace_and_links_every_record(
    spans: RecordedSpans,
) -> None:
    async def publish(topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        pass

    async def handler(batch: Batch) -> None:
        logging.getLogger("test").info("handled")

    loop = BatchConsumer(
        name="t",
        bootstrap="unused",
        topics=[TOPIC],
        group_id="g",
        handler=handler,
        dead_letters=DeadLetters(publish, "g"),
    )
    one, two = _event("a"), _event("b")
    await loop.process(
        [consumer_record(TOPIC, one.to_json_bytes(), headers=[("traceparent", PARENT.encode())])]
    )
    [single] = spans.named(f"process {TOPIC}")
    assert single.kind == SpanKind.CONSUMER
    assert single.parent is not None and _hex(single) == PARENT.split("-")[1]
    assert [format(link.context.span_id, "016x") for link in single.links] == ["b7ad6b7169203331"]
    assert single.attributes is not None
    assert single.attributes["messaging.message.id"] == one.id
    assert tracing.cause_context(one.id) is not None

    spans.finished.clear()
    await loop.process(
        [
            consumer_record(TOPIC, one.to_json_bytes(), headers=[("traceparent", PARENT.encode())]),
            consumer_record(
                TOPIC, two.to_json_bytes(), offset=1, headers=[("ce_traceparent", OTHER.encode())]
            ),
        ]
    )
    [mixed] = spans.named(f"process {TOPIC}")
    assert mixed.parent is None  # two traces: a new one, linked to both
    assert {format(link.context.trace_id, "032x") for link in mixed.links} == {
        PARENT.split("-")[1],
        OTHER.split("-")[1],
    }
    assert mixed.attributes is not None and mixed.attributes["messaging.batch.message_count"] == 2

    # structured mode: the envelope's ``traceparent`` attribute (no header)
    spans.finished.clear()
    body = json.loads(_event("c").to_json_bytes()) | {"traceparent": OTHER}
    await loop.process([consumer_record(TOPIC, json.dumps(body).encode())])
    [structured] = spans.named(f"process {TOPIC}")
    assert _hex(structured) == OTHER.split("-")[1]


def test_log_records_carry_the_current_trace_and_span_id(spans: RecordedSpans) -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
    _ServiceFilter("svc").filter(record)
    assert not hasattr(record, "trace_id")  # outside any trace: no ids
    with spans.tracer.start_as_current_span("work") as span:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
        _ServiceFilter("svc").filter(record)
    ctx = span.get_span_context()
    assert record.trace_id == format(ctx.trace_id, "032x")  # type: ignore[attr-defined]
    assert record.span_id == format(ctx.span_id, "016x")  # type: ignore[attr-defined]


@pytest.mark.infra
async def test_published_records_carry_their_send_span_and_causes_continue_a_trace(
    infra: Infra, spans: RecordedSpans
) -> None:
    topic = f"test-tracing-{uuid.uuid4().hex[:8]}"
    publisher = EventPublisher(infra.kafka_bootstrap, client_id="tracing-test")
    await publisher.start()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    try:
        cause, effect, plain = _event("cause"), _event("effect"), _event("plain")
        tracing.remember_cause(
            cause.id, tracing.record_context([("traceparent", PARENT.encode())]) or _fail()
        )
        with spans.tracer.start_as_current_span("request") as request:
            await publisher.publish_many(
                topic,
                [effect, plain],
                cause_of=lambda e: cause.id if e.id == effect.id else None,
            )
            await publisher.publish_raw(topic, b"{}", None, {"traceparent": OTHER})
        await consumer.start()
        records = []
        async for rec in consumer:
            records.append(rec)
            if len(records) == 3:
                break
    finally:
        await consumer.stop()
        await publisher.stop()
    sends = {
        s.attributes["messaging.message.id"]: s
        for s in spans.named(f"send {topic}")
        if s.attributes and "messaging.message.id" in s.attributes
    }
    headers = [dict(r.headers) for r in records]
    by_id = {json.loads(r.value).get("id"): h for r, h in zip(records, headers, strict=True)}
    # the effect continues its cause's trace, linked to the request it was published in
    assert _hex(sends[effect.id]) == PARENT.split("-")[1]
    assert [lk.context.span_id for lk in sends[effect.id].links] == [
        request.get_span_context().span_id
    ]
    # the other one is a child of the request
    assert sends[plain.id].parent is not None
    assert sends[plain.id].parent.span_id == request.get_span_context().span_id
    for event_id, span in sends.items():
        ctx = span.context
        assert by_id[event_id]["traceparent"].decode() == (
            f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
        )
        assert span.kind == SpanKind.PRODUCER
    # a raw re-publish gets its own send span's context instead of the header it was given
    [raw_record] = [r for r in records if r.value == b"{}"]  # records span several partitions
    raw = dict(raw_record.headers)["traceparent"].decode()
    assert raw != OTHER and raw.split("-")[1] == format(request.get_span_context().trace_id, "032x")


def _fail() -> Any:
    raise AssertionError("no context")


# -- gRPC ---------------------------------------------------------------------------------


async def _read(request: bytes, context: Any) -> bytes:
    logging.getLogger("test").info("serving")
    return request


def _register(servicer: Any, server: Any) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        _read, request_deserializer=lambda b: b, response_serializer=lambda b: b
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Read": handler})]
    )


async def test_client_and_server_spans_continue_the_callers_trace(spans: RecordedSpans) -> None:
    server = GrpcServer(
        [ServiceRegistration(SERVICE, _register, None)], verifier=TokenVerifier(SECRET)
    )
    await server.start()
    token = mint_token(SECRET, org_id="o", agent_id="a")
    try:
        async with insecure_channel(server.address, service=SERVICE) as channel:
            read = channel.unary_unary(
                f"/{SERVICE}/Read",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            with spans.tracer.start_as_current_span("caller") as caller:
                assert (
                    await read(b"x", metadata=(("authorization", f"Bearer {token}"),), timeout=5)
                    == b"x"
                )
                with pytest.raises(grpc.aio.AioRpcError):
                    await read(b"x", timeout=5)  # no token: UNAUTHENTICATED
    finally:
        await server.stop(0)
    name = f"{SERVICE}/Read"
    clients = [s for s in spans.named(name) if s.kind == SpanKind.CLIENT]
    servers = [s for s in spans.named(name) if s.kind == SpanKind.SERVER]
    assert len(clients) == 2 and len(servers) == 2
    caller_id = caller.get_span_context().span_id
    for client, srv in zip(clients, servers, strict=True):
        assert client.parent is not None and client.parent.span_id == caller_id
        assert srv.parent is not None and srv.parent.span_id == client.context.span_id
        assert srv.attributes is not None and srv.attributes["rpc.service"] == SERVICE
    codes = [s.attributes["rpc.grpc.status_code"] for s in servers if s.attributes]
    assert codes == [0, grpc.StatusCode.UNAUTHENTICATED.value[0]]
    # a refused call is the client's error, not the server's (OpenTelemetry RPC conventions)
    assert servers[1].status.status_code == StatusCode.UNSET
    assert clients[1].status.status_code == StatusCode.ERROR
