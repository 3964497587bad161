"""The Kafka conventions every consumer and producer follows.

Consuming is **at least once** and goes through one path, ``inbox_kit.batch_consumer``: an
offset is committed only after its message was processed (or dead-lettered). A handler that
raises is retried a few times; a message that still fails, or that ``inbox_kit.inbound`` cannot
decode, is copied unchanged to ``<topic>.dlq`` with the error in headers (``x-dlq-reason`` a
stable code) and the partition moves on. Outages (database or broker unreachable) are not the
message's fault: they are never dead-lettered; the message is redelivered until it succeeds.

Publishing goes through one ``EventPublisher`` per process (one idempotent ``acks=all``
producer) that adds the CloudEvents Kafka-binding headers and the trace context
(``traceparent``, ``inbox_kit.tracing``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from inbox_contracts import CloudEvent, EventData, MalformedEvent, Topic
from inbox_contracts.topics import DLQ_SUFFIX, REPARTITION_SUFFIX
from opentelemetry.trace import Span
from prometheus_client import Counter
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure

from inbox_kit import tracing
from inbox_kit.partitioning import KeyHashPartitioner

log = logging.getLogger(__name__)

EventHandler = Callable[[CloudEvent[EventData]], Awaitable[None]]

CONSUMED = Counter(
    "inbox_kafka_messages_total", "Kafka messages consumed", ["topic", "group", "outcome"]
)

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"

#: Headers on a dead-lettered message (the original headers are kept too).
H_REASON = "x-dlq-reason"
H_ERROR = "x-dlq-error"
H_ERROR_TYPE = "x-dlq-error-type"
H_TOPIC = "x-dlq-source-topic"
H_PARTITION = "x-dlq-source-partition"
H_OFFSET = "x-dlq-source-offset"
H_GROUP = "x-dlq-consumer-group"
H_ATTEMPTS = "x-dlq-attempts"
H_FAILED_AT = "x-dlq-failed-at"

#: ``x-dlq-reason`` of a record the handler refused (an invalid value for this service).
REASON_REFUSED = "refused"
#: ``x-dlq-reason`` of a record whose handler kept failing (a bug or an unexpected value).
REASON_HANDLER_FAILED = "handler_failed"


class Outcome(StrEnum):
    PROCESSED = "processed"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_seconds: float = 0.1
    #: Errors that mean "try again later", never "this message is bad".
    transient: tuple[type[BaseException], ...] = field(
        default=(ConnectionFailure, KafkaConnectionError, KafkaTimeoutError, asyncio.TimeoutError)
    )

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, self.transient) or _database_locked(error)


def _database_locked(error: BaseException) -> bool:
    """FerretDB's SQLite backend reports write-lock contention as a plain error.

    That is load, not a bad message, so it must never be dead-lettered. In a bulk write it
    shows up per write error.
    """
    if isinstance(error, BulkWriteError):
        return any(
            "database is locked" in str(e.get("errmsg", ""))
            for e in error.details.get("writeErrors", [])
        )
    return isinstance(error, OperationFailure) and "database is locked" in str(error)


class Publishable(Protocol):
    """What ``EventPublisher.publish_many`` needs of an event: a ``CloudEvent``, or an event
    its producer encoded once itself (a hot path's fixed-shape event, no model built)."""

    @property
    def id(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def key(self) -> bytes:
        """The Kafka message key."""

    def to_json_bytes(self) -> bytes: ...


EventT = TypeVar("EventT", bound=Publishable)


class RawPublish(Protocol):
    async def __call__(
        self, topic: str, value: bytes, key: bytes | None, headers: dict[str, str]
    ) -> None: ...


class PartitionedPublish(Protocol):
    """Publish to an explicit partition (repartitioning, per-partition commands)."""

    async def __call__(
        self, topic: str, value: bytes, key: bytes | None, headers: dict[str, str], partition: int
    ) -> None: ...


def reason_of(error: BaseException, default: str) -> str:
    """The ``x-dlq-reason`` code of ``error`` (decoding errors carry their own)."""
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) else default


class DeadLetters:
    """Copies a failed record, unchanged, to its topic's dead-letter topic."""

    def __init__(self, publish: RawPublish, group_id: str) -> None:
        self._publish = publish
        self._group_id = group_id

    async def send(
        self,
        record: ConsumerRecord[Any, Any],
        error: BaseException,
        attempts: int,
        *,
        reason: str = REASON_HANDLER_FAILED,
    ) -> None:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        headers.update(
            {
                H_REASON: reason_of(error, reason),
                H_ERROR: str(error)[:2000],
                # every decoding failure keeps the documented type name
                H_ERROR_TYPE: "MalformedEvent"
                if isinstance(error, MalformedEvent)
                else type(error).__name__,
                H_TOPIC: record.topic,
                H_PARTITION: str(record.partition),
                H_OFFSET: str(record.offset),
                H_GROUP: self._group_id,
                H_ATTEMPTS: str(attempts),
                H_FAILED_AT: datetime.now(UTC).isoformat(),
            }
        )
        await self._publish(
            dead_letter_topic(record.topic), record.value or b"", record.key, headers
        )
        log.warning(
            "dead-lettered message",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": headers[H_REASON],
                "error": str(error)[:500],
            },
        )


def dead_letter_topic(topic: str) -> str:
    """``<topic>.dlq``; a repartition topic's records go to its source topic's dead letters."""
    return topic.removesuffix(REPARTITION_SUFFIX) + DLQ_SUFFIX


async def handle_with_retries(
    record: ConsumerRecord[Any, Any],
    event: CloudEvent[EventData],
    handler: EventHandler,
    *,
    dead_letters: DeadLetters,
    group_id: str,
    policy: RetryPolicy = RetryPolicy(),
) -> Outcome:
    """Handle one decoded record with bounded retries; dead-letter it if hopeless.

    Raises only for transient errors, so the caller does not commit and the record comes back.
    """
    for attempt in range(1, policy.max_attempts + 1):
        try:
            await handler(event)
        except Exception as exc:
            if policy.is_transient(exc):
                log.warning("transient failure, will redeliver", exc_info=True)
                await asyncio.sleep(policy.backoff_seconds * attempt)
                if attempt == policy.max_attempts:
                    raise
                continue
            log.warning(
                "handler failed",
                extra={"event_id": event.id, "type": event.type, "attempt": attempt},
                exc_info=True,
            )
            if attempt == policy.max_attempts:
                await dead_letters.send(record, exc, attempts=attempt)
                CONSUMED.labels(record.topic, group_id, Outcome.DEAD_LETTERED).inc()
                return Outcome.DEAD_LETTERED
            await asyncio.sleep(policy.backoff_seconds * attempt)
        else:
            CONSUMED.labels(record.topic, group_id, Outcome.PROCESSED).inc()
            return Outcome.PROCESSED
    raise AssertionError("unreachable")


def cloudevent_headers(event_type: str, event_id: str) -> dict[str, str]:
    """The binding headers every CloudEvent we publish carries (structured mode: the body is
    the full event; ``ce_type``/``ce_id`` let tools filter without parsing it)."""
    return {"content-type": CLOUDEVENTS_CONTENT_TYPE, "ce_type": event_type, "ce_id": event_id}


class EventPublisher:
    """The process's one Kafka producer (idempotent, ``acks=all``): the ``Publisher`` port's
    implementation every service uses. Events go out keyed by their subject, with the
    CloudEvents headers; ``publish_raw`` sends bytes as they are (dead letters, forwarding)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str,
        linger_ms: int = 2,
        max_batch_size: int = 256 * 1024,
    ) -> None:
        """``max_batch_size``: bytes per partition per produce request. aiokafka keeps one
        request in flight per broker, so a burst to one partition (e.g. a topic keyed by org)
        costs one round trip per batch: aiokafka's 16 KB default is ~25 events a round trip."""
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._max_batch_size = max_batch_size
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "start() first"
        return self._producer

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        # created here: aiokafka objects need the running event loop
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            max_batch_size=self._max_batch_size,
            partitioner=KeyHashPartitioner(),
        )
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def publish(
        self, topic: Topic | str, event: CloudEvent[Any], *, partition: int | None = None
    ) -> None:
        await self.publish_many(topic, [event], partition=partition)

    async def publish_many(
        self,
        topic: Topic | str,
        events: Sequence[EventT],
        *,
        partition: int | None = None,
        key_of: Callable[[EventT], bytes] | None = None,
        cause_of: Callable[[EventT], str | None] | None = None,
        partition_of: Callable[[EventT], int] | None = None,
    ) -> None:
        """Send all, then wait for every acknowledgement (one round trip for many).

        ``events``: ``CloudEvent``s, or events encoded already (``Publishable``). Keyed by
        ``event.key`` (a CloudEvent's subject) unless ``key_of`` says otherwise; on
        ``partition`` (or each event on ``partition_of(event)``) when given, else the
        producer's partitioner. Each record
        gets a ``send`` span and carries its context (``traceparent``); ``cause_of`` names the
        consumed event that caused an event, whose trace the span then continues
        (``inbox_kit.tracing``).
        """
        name = topic if isinstance(topic, str) else topic.name
        spans: list[Span] = []
        try:
            futures = []
            for event in events:
                cause = tracing.cause_context(cause_of(event)) if cause_of is not None else None
                on = partition_of(event) if partition_of is not None else partition
                span, trace_headers = tracing.start_send(
                    name, event_type=event.type, event_id=event.id, partition=on, cause=cause
                )
                spans.append(span)
                headers = cloudevent_headers(event.type, event.id)
                headers.update(trace_headers)
                futures.append(
                    await self.producer.send(
                        name,
                        event.to_json_bytes(),
                        key=key_of(event) if key_of is not None else event.key,
                        partition=on,
                        headers=_encoded(headers),
                    )
                )
            await asyncio.gather(*futures)
        except BaseException as error:
            for span in spans:
                tracing.end_span(span, error)
            raise
        for span in spans:
            tracing.end_span(span)

    async def publish_serialized(
        self, topic: str, payload: bytes, *, key: bytes | None, event_type: str, event_id: str
    ) -> None:
        """Publish an event already serialized (e.g. stored in an outbox)."""
        await self.publish_raw(
            topic,
            payload,
            key,
            cloudevent_headers(event_type, event_id),
            event_type=event_type,
            event_id=event_id,
        )

    async def publish_raw(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: dict[str, str],
        partition: int | None = None,
        *,
        event_type: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """Send bytes as they are; the trace headers are replaced by this send's."""
        span, trace_headers = tracing.start_send(
            topic,
            event_type=event_type or headers.get("ce_type"),
            event_id=event_id or headers.get("ce_id"),
            partition=partition,
        )
        sent = {k: v for k, v in headers.items() if k not in tracing.TRACE_HEADERS}
        sent.update(trace_headers)
        try:
            await self.producer.send_and_wait(
                topic, value, key=key, partition=partition, headers=_encoded(sent)
            )
        except BaseException as error:
            tracing.end_span(span, error)
            raise
        tracing.end_span(span)

    async def partitions(self, topic: str) -> int:
        return len(await self.producer.partitions_for(topic))


def _encoded(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in headers.items()]
