"""What tracing costs on the kit's traced paths (``make bench NAME=tracing``).

One process, the same code, five tracer set-ups taken in turns (rounds interleave them, each
round starting with another one; the median of the rounds is reported), the first being the
baseline:

- ``off``: the API's no-op tracer (``OTEL_SDK_DISABLED=true``); contexts still propagate;
- ``default``: what a service runs with no ``OTEL_*`` variable set (no exporter): spans with
  ids only (logs, propagation), nothing recorded — *sampling off*;
- ``sdk_always_off``: the SDK with ``OTEL_TRACES_SAMPLER=always_off`` (and an exporter);
- ``always_on``: the SDK recording every span (``OTEL_TRACES_SAMPLER=always_on``), no
  exporter: every span made, then dropped — *sampling on*;
- ``exporting``: ``always_on`` with a batch span processor feeding an exporter that discards
  (an OTLP set-up minus the network).

Paths: ``consume`` (``BatchConsumer.process`` of a 500-record batch whose records each carry
another trace's ``traceparent``: decode, span with 128 links, a no-op handler), ``publish``
(``EventPublisher.publish_many`` of 500 events to a producer stand-in that acknowledges at
once: serialization, headers, a span per event), ``grpc`` (a unary call through the kit's
server guard and client channel on loopback, sequential) and ``kafka`` (2,000 events
published with the real ``EventPublisher`` and consumed by a ``BatchConsumer`` on the real
broker, end to end). Each is reported per operation in this process's CPU time (``cpu``:
what tracing adds to the service's own work, and steady on a shared machine, as it does not
count other processes) and in wall time (``wall``, noisy here). Writes
``bench/results/tracing.json``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import grpc
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactProfileUpserted
from inbox_kit import tracing
from inbox_kit.auth import TokenVerifier, mint_token
from inbox_kit.batch_consumer import Batch, BatchConsumer, Record
from inbox_kit.grpc_client import insecure_channel
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_kit.kafka import DeadLetters, EventPublisher
from inbox_testing import consumer_record, wait_until
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from bench.common import SECRET, Metric, write_results

TOPIC = "inbox.contacts.v1"
SERVICE = "inbox.bench.v1.TracedService"
BATCH = 500
KAFKA_EVENTS = 2_000
ROUNDS = int(os.environ.get("BENCH_TRACING_ROUNDS", "5"))


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _tracers() -> dict[str, trace.Tracer]:
    exporting = TracerProvider(sampler=ALWAYS_ON)
    exporting.add_span_processor(BatchSpanProcessor(_Discard()))
    return {
        "off": trace.NoOpTracer(),
        "default": tracing.IdsOnlyTracerProvider().get_tracer("inbox_kit"),
        "sdk_always_off": TracerProvider(sampler=ALWAYS_OFF).get_tracer("inbox_kit"),
        "always_on": TracerProvider(sampler=ALWAYS_ON).get_tracer("inbox_kit"),
        "exporting": exporting.get_tracer("inbox_kit"),
    }


Cost = tuple[float, float]  # (wall seconds, this process's CPU seconds) per operation


def _now() -> Cost:
    return time.perf_counter(), time.process_time()


def _per_op(started: Cost, ops: int) -> Cost:
    wall, cpu = _now()
    return (wall - started[0]) / ops, (cpu - started[1]) / ops


def _event(i: int) -> CloudEvent[ContactProfileUpserted]:
    data = ContactProfileUpserted(
        org_id="bench", contact_id=f"c{i}", occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return CloudEvent.wrap(data, source="/bench")


def _records() -> list[Record]:
    out = []
    for i in range(BATCH):
        parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
        out.append(
            consumer_record(
                TOPIC,
                _event(i).to_json_bytes(),
                offset=i,
                headers=[("traceparent", parent.encode())],
            )
        )
    return out


async def _nothing(topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
    return None


async def consume_seconds(records: list[Record]) -> Cost:
    async def handler(batch: Batch) -> None:
        return None

    loop = BatchConsumer(
        name="bench",
        bootstrap="unused",
        topics=[TOPIC],
        group_id="bench",
        handler=handler,
        dead_letters=DeadLetters(_nothing, "bench"),
    )
    started = _now()
    for _ in range(4):
        await loop.process(records)
    return _per_op(started, 4 * len(records))


class _AckingProducer:
    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def publish_seconds(events: list[CloudEvent[Any]]) -> Cost:
    publisher = EventPublisher("unused", client_id="bench")
    publisher._producer = cast(Any, _AckingProducer())
    started = _now()
    for _ in range(4):
        await publisher.publish_many(TOPIC, events)
    return _per_op(started, 4 * len(events))


async def _echo(request: bytes, context: Any) -> bytes:
    return request


def _register(servicer: Any, server: Any) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        _echo, request_deserializer=lambda b: b, response_serializer=lambda b: b
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler})]
    )


async def grpc_seconds(call: Callable[[], Awaitable[Any]], calls: int = 1_000) -> Cost:
    started = _now()
    for _ in range(calls):
        await call()
    return _per_op(started, calls)


async def kafka_seconds(bootstrap: str, events: list[CloudEvent[Any]]) -> Cost:
    """Publish ``events`` to a new topic and consume them all: seconds per event."""
    topic = f"bench-tracing-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    seen = 0

    async def handler(batch: Batch) -> None:
        nonlocal seen
        seen += len(batch)

    publisher = EventPublisher(bootstrap, client_id="bench-tracing")
    await publisher.start()
    loop = BatchConsumer(
        name="bench",
        bootstrap=bootstrap,
        topics=[topic],
        group_id=f"bench-{topic}",
        handler=handler,
        dead_letters=DeadLetters(publisher.publish_raw, "bench"),
        poll_timeout_ms=20,
    )
    task = asyncio.create_task(loop.run())
    try:
        await loop.ready(timeout=60)
        started = _now()
        for i in range(0, len(events), 100):
            await publisher.publish_many(topic, events[i : i + 100])

        async def all_seen() -> bool:
            return seen >= len(events)

        await wait_until(all_seen, timeout=120, interval=0.005)
        return _per_op(started, len(events))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.stop()


async def run(bootstrap: str) -> list[Metric]:
    tracers = _tracers()
    records = _records()
    events: list[CloudEvent[Any]] = [_event(i) for i in range(BATCH)]
    kafka_events: list[CloudEvent[Any]] = [_event(i) for i in range(KAFKA_EVENTS)]
    server = GrpcServer(
        [ServiceRegistration(SERVICE, _register, None)], verifier=TokenVerifier(SECRET)
    )
    await server.start()
    metadata = (("authorization", f"Bearer {mint_token(SECRET, org_id='o', agent_id='a')}"),)
    samples: dict[tuple[str, str], list[Cost]] = {}
    try:
        async with insecure_channel(server.address, service=SERVICE) as channel:
            echo = channel.unary_unary(
                f"/{SERVICE}/Echo",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )

            async def one_call() -> None:
                await echo(b"x" * 64, metadata=metadata, timeout=5)

            await grpc_seconds(one_call, 200)  # warm-up
            names = list(tracers)
            for round_ in range(ROUNDS):
                # each round starts with another set-up, so none always follows the same one
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    tracing.TRACER = tracers[name]
                    measures: dict[str, Callable[[], Awaitable[Cost]]] = {
                        "consume": lambda: consume_seconds(records),
                        "publish": lambda: publish_seconds(events),
                        "grpc": lambda: grpc_seconds(one_call),
                        "kafka": lambda: kafka_seconds(bootstrap, kafka_events),
                    }
                    for path, measure in measures.items():
                        gc.collect()
                        await asyncio.sleep(0.3)  # let the previous step's background tasks end
                        samples.setdefault((path, name), []).append(await measure())
    finally:
        await server.stop(0)
    metrics: list[Metric] = []
    for path in ("consume", "publish", "grpc", "kafka"):
        for clock, index in (("cpu", 1), ("wall", 0)):
            baseline = statistics.median(c[index] for c in samples[(path, "off")]) * 1e6
            for name in tracers:
                value = statistics.median(c[index] for c in samples[(path, name)]) * 1e6
                ratio = value / baseline
                target = "<= 1.05 (sampling off)" if name == "default" else None
                metrics.append(
                    Metric(
                        metric=f"{path}_{name}_{clock}_us_per_op",
                        value=round(value, 2),
                        unit="us/op",
                        baseline_value=round(baseline, 2),
                        ratio=round(ratio, 3),
                        target=target,
                        met=(ratio <= 1.05) if target else None,
                    )
                )
                print(
                    f"{path:8} {clock:4} {name:10} {value:9.1f} us/op "
                    f"(off {baseline:8.1f})  x{ratio:.3f}"
                )
    return metrics


def main() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    write_results("tracing", asyncio.run(run(bootstrap)))


if __name__ == "__main__":
    main()
