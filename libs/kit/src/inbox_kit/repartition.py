"""Correctness independent of the producer's partitioner (the Kafka Streams repartition
pattern).

A single-writer consumer relies on every event of one aggregate arriving on one partition.
Our producers hash the key with murmur2 (Java clients and aiokafka do), but librdkafka clients
(kcat, confluent-kafka, most Go/Node clients) default to CRC32 — and an outside producer may
key a record by something other than its subject. So placement is decided by the **subject**
(the aggregate id), never by the Kafka key or the producer: a record on partition ``p`` whose
``murmur2(subject) % partitions != p`` is forwarded, unchanged and with the subject as key, to
``<topic>.repartition`` (same partition count) on partition ``murmur2(subject) % partitions``,
and its offset committed; the same consumer group reads the repartition topic, whose partition
``p`` is assigned together with ``p`` of the source topics (range assignment). Records from one
producer stay in order (they are forwarded in order).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord
from inbox_contracts import TOPICS, CloudEvent, EventData
from prometheus_client import Counter

from inbox_kit.kafka import PartitionedPublish
from inbox_kit.partitioning import partition_for

log = logging.getLogger(__name__)

#: Header on a forwarded record: ``<topic>/<partition>/<offset>`` it was found at.
H_REPARTITIONED_FROM = "x-repartitioned-from"

REPARTITIONED = Counter(
    "inbox_kafka_repartitioned_total",
    "Records found on a partition their subject does not hash to, forwarded to the topic's "
    "repartition topic",
    ["topic"],
)

_REPARTITION_OF = {t.name: t.repartition for t in TOPICS if t.repartitioned}

Pair = tuple[ConsumerRecord[Any, Any], CloudEvent[EventData]]


class RepartitionTopicMismatch(RuntimeError):
    """The repartition topic is missing or has another partition count than its source."""


class Repartitioner:
    def __init__(
        self, publish: PartitionedPublish, partition_count: Callable[[str], int | None]
    ) -> None:
        self._publish = publish
        self._partition_count = partition_count

    @staticmethod
    def internal_topics(topics: Sequence[str]) -> list[str]:
        """The repartition topics to consume along with ``topics``."""
        return [_REPARTITION_OF[t] for t in topics if t in _REPARTITION_OF]

    async def forward_misplaced(self, batch: Sequence[Pair]) -> list[Pair]:
        """Forward the misplaced records (waits for the acks); return the others."""
        kept: list[Pair] = []
        forwards = []
        for record, event in batch:
            target = self._target(record, event)
            if target is None:
                kept.append((record, event))
                continue
            headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
            headers[H_REPARTITIONED_FROM] = f"{record.topic}/{record.partition}/{record.offset}"
            forwards.append(
                self._publish(
                    _REPARTITION_OF[record.topic], record.value or b"", event.key, headers, target
                )
            )
            REPARTITIONED.labels(record.topic).inc()
        if forwards:
            await asyncio.gather(*forwards)
            log.info("forwarded misplaced records", extra={"count": len(forwards)})
        return kept

    def _target(self, record: ConsumerRecord[Any, Any], event: CloudEvent[EventData]) -> int | None:
        if record.topic not in _REPARTITION_OF:
            return None  # a repartition topic itself, or a topic placed by us
        partitions = self._partition_count(record.topic)
        if partitions is None:
            return None
        target = partition_for(event.subject, partitions)
        if target == record.partition:
            return None
        internal = _REPARTITION_OF[record.topic]
        if self._partition_count(internal) != partitions:
            # a configuration error, not a bad record: stop loudly instead of mis-routing
            raise RepartitionTopicMismatch(
                f"{internal} must exist with the partition count of {record.topic} "
                f"({partitions}); it has {self._partition_count(internal)}"
            )
        return target
