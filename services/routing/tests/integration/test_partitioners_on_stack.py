"""Correctness independent of the producer's partitioner (issue 12, inbox_kit.repartition).

Two routing instances share the conversations. Messages come from a librdkafka producer
(confluent-kafka: CRC32 ``consistent_random``), a few keyed by something else than the subject;
conversation and presence events from aiokafka (murmur2). Without repartitioning, a
conversation's messages and conversation events would reach two different writers; with it,
state and decision ids equal the reference."""

from __future__ import annotations

import asyncio
import json

import pytest
from confluent_kafka import Producer
from inbox_contracts import CloudEvent, EventData, utc_now
from inbox_contracts.topics import MESSAGES, ROUTING
from inbox_kit.repartition import partition_for
from inbox_testing import TopicProbe, wait_until
from routing_testing import expected_outcome

from .conftest import topic_of
from .test_delivery_on_stack import AHEAD, converged, scenario

pytestmark = pytest.mark.infra

PARTITIONS = 6  # the devstack's partition count


def produce_with_librdkafka(
    bootstrap: str, records: list[tuple[str, bytes, bytes]]
) -> list[tuple[bytes, int]]:
    """Produce with librdkafka's default partitioner; return (key, partition) of each."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    placed: list[tuple[bytes, int]] = []

    def delivered(error: object, message: object) -> None:
        assert error is None, error
        placed.append((message.key(), message.partition()))  # type: ignore[attr-defined]

    for topic, value, key in records:
        producer.produce(topic, value, key=key, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return placed


async def test_two_instances_fed_by_crc32_and_murmur2_producers_match_the_reference(
    stack,
    client,
    routing,
    unique,  # type: ignore[no-untyped-def]
) -> None:
    org = unique("org")
    await client.enable(org)
    agents = [unique("agent") for _ in range(3)]
    convs = [f"conv-{i}" for i in range(24)]
    events = scenario(org, convs, agents, utc_now() + AHEAD, seed=12)
    expected, decision_ids = expected_outcome(events, setting_on_since=events[0].data.occurred_at)
    rekeyed = set(convs[:4])  # their messages carry a Kafka key that is not the subject

    def kafka_key(e: CloudEvent[EventData]) -> bytes:
        return f"not-the-subject-{e.subject}".encode() if e.subject in rekeyed else e.key

    messages = [e for e in events if topic_of(e) == MESSAGES.name]
    others = [e for e in events if topic_of(e) != MESSAGES.name]
    second = await stack.start_routing()
    try:
        async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
            placed = await asyncio.to_thread(
                produce_with_librdkafka,
                stack.infra.kafka_bootstrap,
                [(MESSAGES.name, e.to_json_bytes(), kafka_key(e)) for e in messages],
            )
            await stack.publish(*others)  # aiokafka: murmur2 of the subject
            # the test is only meaningful if librdkafka put some conversations elsewhere
            subjects = {kafka_key(e): e.subject for e in messages}
            misplaced = {
                subjects[k] for k, p in placed if p != partition_for(subjects[k], PARTITIONS)
            }
            assert len(misplaced) >= 3, misplaced
            await stack.consumed(routing, second)
            await wait_until(lambda: converged(client, org, expected), timeout=60)
            owned = [routing.owner.owned, second.owner.owned]
            assert all(owned) and not (owned[0] & owned[1])
            mine = lambda r: json.loads(r.value)["data"]["org_id"] == org  # noqa: E731
            if decision_ids:
                await probe.wait_for(mine, count=len(decision_ids), timeout=30)
            await probe.drain(0.5)
            got_ids = [json.loads(r.value)["id"] for r in probe.records if mine(r)]
        # at least once: a rebalance may publish a decision again, always with the same id
        assert set(got_ids) == decision_ids
    finally:
        await second.runtime.stop()
