"""The Kafka conventions every consumer and producer follows.

Consuming is **at least once**: an offset is committed only after its message was processed
(or dead-lettered). A handler that raises is retried a few times; a message that still fails,
or that is not a valid CloudEvent, is copied unchanged to ``<topic>.dlq`` with the error in
headers and the partition moves on. Outages (database or broker unreachable) are not the
message's fault: they are never dead-lettered; the message is redelivered until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from inbox_contracts import CloudEvent, EventData, MalformedEvent, Topic, decode
from inbox_contracts.topics import DLQ_SUFFIX
from prometheus_client import Counter
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure

log = logging.getLogger(__name__)

EventHandler = Callable[[CloudEvent[EventData]], Awaitable[None]]

CONSUMED = Counter(
    "inbox_kafka_messages_total", "Kafka messages consumed", ["topic", "group", "outcome"]
)

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"

#: Headers on a dead-lettered message (the original headers are kept too).
H_ERROR = "x-dlq-error"
H_ERROR_TYPE = "x-dlq-error-type"
H_TOPIC = "x-dlq-source-topic"
H_PARTITION = "x-dlq-source-partition"
H_OFFSET = "x-dlq-source-offset"
H_GROUP = "x-dlq-consumer-group"
H_ATTEMPTS = "x-dlq-attempts"
H_FAILED_AT = "x-dlq-failed-at"


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


class RawPublish(Protocol):
    async def __call__(
        self, topic: str, value: bytes, key: bytes | None, headers: dict[str, str]
    ) -> None: ...


class DeadLetters:
    """Copies a failed record, unchanged, to its topic's dead-letter topic."""

    def __init__(self, publish: RawPublish, group_id: str) -> None:
        self._publish = publish
        self._group_id = group_id

    async def send(
        self, record: ConsumerRecord[Any, Any], error: BaseException, attempts: int
    ) -> None:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        headers.update(
            {
                H_ERROR: str(error)[:2000],
                H_ERROR_TYPE: type(error).__name__,
                H_TOPIC: record.topic,
                H_PARTITION: str(record.partition),
                H_OFFSET: str(record.offset),
                H_GROUP: self._group_id,
                H_ATTEMPTS: str(attempts),
                H_FAILED_AT: datetime.now(UTC).isoformat(),
            }
        )
        await self._publish(record.topic + DLQ_SUFFIX, record.value or b"", record.key, headers)
        log.warning(
            "dead-lettered message",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error": str(error)[:500],
            },
        )


async def process_record(
    record: ConsumerRecord[Any, Any],
    handler: EventHandler,
    *,
    dead_letters: DeadLetters,
    group_id: str,
    policy: RetryPolicy = RetryPolicy(),
) -> Outcome:
    """Decode, handle with bounded retries, dead-letter if hopeless.

    Raises only for transient errors, so the caller does not commit and the record comes back.
    """
    try:
        event = decode(record.value or b"")
    except MalformedEvent as exc:
        await dead_letters.send(record, exc, attempts=1)
        CONSUMED.labels(record.topic, group_id, Outcome.DEAD_LETTERED).inc()
        return Outcome.DEAD_LETTERED

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


def make_broker(bootstrap_servers: str, *, client_id: str) -> KafkaBroker:
    """A FastStream broker whose producer waits for all replicas and is idempotent."""
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        logger=logging.getLogger(f"{client_id}.faststream"),
    )


def broker_raw_publish(broker: KafkaBroker) -> RawPublish:
    async def publish(topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        await broker.publish(value, topic=topic, key=key, headers=headers)

    return publish


def producer_raw_publish(producer: AIOKafkaProducer) -> RawPublish:
    """``RawPublish`` through a plain aiokafka producer (waits for the broker's ack)."""

    async def publish(topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        await producer.send_and_wait(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )

    return publish


def cloudevent_headers(event: CloudEvent[Any]) -> dict[str, str]:
    """The binding headers every CloudEvent we publish carries (the body is the full event)."""
    return {"content-type": CLOUDEVENTS_CONTENT_TYPE, "ce_type": event.type, "ce_id": event.id}


async def publish_event(broker: KafkaBroker, topic: Topic, event: CloudEvent[Any]) -> None:
    """Publish a CloudEvent on ``topic``, keyed by its subject (the aggregate id)."""
    await broker.publish(
        event.to_json_bytes(), topic=topic.name, key=event.key, headers=cloudevent_headers(event)
    )


def subscribe(
    broker: KafkaBroker,
    topics: Sequence[Topic],
    *,
    group_id: str,
    handler: EventHandler,
    policy: RetryPolicy = RetryPolicy(),
    **subscriber_options: Any,
) -> None:
    """Register an at-least-once FastStream subscriber for ``topics``.

    The offset is committed after ``handler`` returns (or the message was dead-lettered); on a
    transient error the consumer seeks back so the message is redelivered.
    """
    dead_letters = DeadLetters(broker_raw_publish(broker), group_id)

    @broker.subscriber(  # type: ignore[untyped-decorator,unused-ignore]
        *(t.name for t in topics),
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        **subscriber_options,
    )
    async def consume(message: KafkaMessage) -> None:
        record = message.raw_message
        assert isinstance(record, ConsumerRecord)
        started = time.perf_counter()
        await process_record(
            record, handler, dead_letters=dead_letters, group_id=group_id, policy=policy
        )
        log.debug("consumed", extra={"seconds": time.perf_counter() - started})
