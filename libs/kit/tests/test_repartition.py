"""Forwarding of misplaced records (inbox_kit.repartition), without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from inbox_contracts import CloudEvent, EventData
from inbox_contracts.events import InboundMessageReceived
from inbox_contracts.topics import MESSAGES, PRESENCE
from inbox_kit.repartition import (
    H_REPARTITIONED_FROM,
    Repartitioner,
    RepartitionTopicMismatch,
    partition_for,
)
from inbox_testing import consumer_record


def message(conversation: str) -> CloudEvent[EventData]:
    data = InboundMessageReceived(
        org_id="org",
        conversation_id=conversation,
        message_id="m",
        channel_id="ch",
        contact_id="c",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    return CloudEvent.wrap(data, source="/tests")  # type: ignore[return-value]


def test_partition_for_matches_kafkas_murmur2_partitioner() -> None:
    # test vectors of Kafka's UtilsTest.testMurmur2 (the Java client's default partitioner)
    java = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536}
    for key, hashed in java.items():
        for partitions in (1, 6, 7, 100):
            assert partition_for(key, partitions) == (hashed & 0x7FFFFFFF) % partitions


async def test_misplaced_records_are_forwarded_keyed_by_subject_and_the_rest_kept() -> None:
    sent: list[tuple[str, bytes, bytes | None, dict[str, str], int]] = []

    async def publish(
        topic: str, value: bytes, key: bytes | None, headers: dict[str, str], partition: int
    ) -> None:
        sent.append((topic, value, key, headers, partition))

    repartitioner = Repartitioner(publish, lambda topic: 6)
    home, away = message("conv-a"), message("conv-b")
    right = partition_for("conv-a", 6)
    wrong = (partition_for("conv-b", 6) + 1) % 6
    batch = [
        (consumer_record(MESSAGES.name, home.to_json_bytes(), partition=right), home),
        # a key that is not the subject, on a partition that is not the subject's
        (
            consumer_record(
                MESSAGES.name, away.to_json_bytes(), partition=wrong, offset=7, key=b"x"
            ),
            away,
        ),
        # presence is placed by us: never forwarded
        (consumer_record(PRESENCE.name, away.to_json_bytes(), partition=wrong), away),
    ]
    kept = await repartitioner.forward_misplaced(batch)
    assert [e for _, e in kept] == [home, away]
    [(topic, value, key, headers, partition)] = sent
    assert (topic, value, key) == (MESSAGES.repartition, away.to_json_bytes(), b"conv-b")
    assert partition == partition_for("conv-b", 6)
    assert headers[H_REPARTITIONED_FROM] == f"{MESSAGES.name}/{wrong}/7"
    assert Repartitioner.internal_topics([MESSAGES.name, PRESENCE.name]) == [MESSAGES.repartition]


async def test_a_repartition_topic_with_another_partition_count_stops_the_consumer() -> None:
    async def publish(
        topic: str, value: bytes, key: bytes | None, headers: dict[str, str], partition: int
    ) -> None:
        raise AssertionError("must not forward")

    counts = {MESSAGES.name: 6, MESSAGES.repartition: 1}
    repartitioner = Repartitioner(publish, counts.get)
    away = message("conv-b")
    wrong = (partition_for("conv-b", 6) + 1) % 6
    record = consumer_record(MESSAGES.name, away.to_json_bytes(), partition=wrong)
    with pytest.raises(RepartitionTopicMismatch, match="partition count"):
        await repartitioner.forward_misplaced([(record, away)])
