"""Poison records for consumer tests: what a careless or hostile producer puts on a topic.

``poison_cases(event)`` derives, from one valid event of the topic under test, the records that
every consumer must dead-letter (with the ``x-dlq-reason`` expected) without blocking the
partition; ``binary_mode`` and ``with_unknown_fields`` derive records it must *apply*.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from inbox_contracts import CloudEvent, utc_now

from inbox_testing.kafka_probe import TopicProbe

#: The largest poison value: near the broker's default 1 MB limit, still room for DLQ headers.
OVERSIZED_BYTES = 900 * 1024


@dataclass(frozen=True)
class Poison:
    name: str
    value: bytes
    reason: str
    headers: Sequence[tuple[str, bytes]] = field(default=())


def _retimed(event: CloudEvent[Any], when: datetime) -> dict[str, Any]:
    body = event.to_jsonable()
    stamp = when.isoformat().replace("+00:00", "Z")
    body["id"] = str(uuid.uuid4())
    body["time"] = stamp
    body["data"]["occurred_at"] = stamp
    return body


def poison_cases(event: CloudEvent[Any]) -> list[Poison]:
    """Records derived from ``event`` (keep its key) that must be dead-lettered."""
    wrong_types = event.to_jsonable()
    wrong_types["id"] = str(uuid.uuid4())
    wrong_types["data"]["org_id"] = ["not", "a", "string"]
    unknown_type = event.to_jsonable()
    unknown_type["id"] = str(uuid.uuid4())
    unknown_type["type"] = "inbox.nothing.like_this.v1"
    future = _retimed(event, utc_now() + timedelta(days=365 * 900))
    return [
        Poison("not JSON", b"{this is not json", "not_json"),
        Poison("wrong types", json.dumps(wrong_types).encode(), "invalid_event"),
        Poison("unknown type", json.dumps(unknown_type).encode(), "unknown_type"),
        Poison("future-stamped", json.dumps(future).encode(), "event_time_in_future"),
        Poison("900 KB", b"[" + b"9," * (OVERSIZED_BYTES // 2) + b"]x", "not_json"),
    ]


def binary_mode(event: CloudEvent[Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """``event`` as a binary-mode CloudEvent (the SDKs' Kafka default): attributes in ``ce_*``
    headers, the value is ``data`` alone."""
    body = event.to_jsonable()
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", body["id"].encode()),
        ("ce_source", body["source"].encode()),
        ("ce_type", body["type"].encode()),
        ("ce_time", body["time"].encode()),
        ("ce_subject", body["subject"].encode()),
        ("content-type", b"application/json"),
    ]
    return json.dumps(body["data"]).encode(), headers


def with_unknown_fields(event: CloudEvent[Any]) -> bytes:
    """``event`` with fields a later additive version might add (in ``data`` and the envelope)."""
    body = event.to_jsonable()
    body["data"]["added_in_a_later_version"] = {"nested": [1, 2, 3]}
    body["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    return json.dumps(body).encode()


async def send_poison(
    producer: AIOKafkaProducer, topic: str, key: bytes, cases: Sequence[Poison]
) -> None:
    for case in cases:
        await producer.send_and_wait(topic, case.value, key=key, headers=list(case.headers))


async def send_binary(
    producer: AIOKafkaProducer, topic: str, key: bytes, event: CloudEvent[Any]
) -> None:
    """Send ``event`` as a binary-mode CloudEvent on ``key``."""
    value, headers = binary_mode(event)
    await producer.send_and_wait(topic, value, key=key, headers=headers)


async def expect_parked(
    dlq: TopicProbe, key: bytes, *, group: str | None = None, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Wait for the dead letters of all of ``poison_cases`` sent on ``key`` and check their
    reasons. ``group`` keeps only those of that consumer group: every consumer of the topic in
    the test session (other services' processes too) dead-letters the same poison."""

    def ours(record: ConsumerRecord[bytes, bytes]) -> bool:
        if record.key != key:
            return False
        return group is None or dict(record.headers).get("x-dlq-consumer-group") == group.encode()

    dead = await dlq.wait_for(ours, count=len(EXPECTED_REASONS), timeout=timeout)
    assert reasons_of(dead) == EXPECTED_REASONS, dlq
    return dead


def reasons_of(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[str]:
    """The sorted ``x-dlq-reason`` headers of dead letters."""
    return sorted(dict(r.headers)["x-dlq-reason"].decode() for r in records)


#: What ``reasons_of`` returns for the dead letters of all of ``poison_cases``.
EXPECTED_REASONS = sorted(
    ["not_json", "invalid_event", "unknown_type", "event_time_in_future", "not_json"]
)
