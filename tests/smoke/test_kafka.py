"""Smoke tests on the real broker: the Kafka conventions of the kit hold end to end."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from inbox_contracts import CloudEvent, EventData
from inbox_contracts.events import InboundMessageReceived
from inbox_contracts.topics import MESSAGES, Topic
from inbox_devstack import create_topics
from inbox_kit import kafka as kit_kafka
from inbox_kit.batch_consumer import BatchConsumer, per_event
from inbox_testing import Infra, TopicProbe, wait_until

pytestmark = pytest.mark.infra


@pytest.fixture
def private_topic(infra: Infra, unique: Callable[[str], str]) -> Topic:
    """A fresh copy of the messages topic (and its DLQ), so the test reads only its own data."""
    topic = Topic(
        name=unique("smoke.messages"),
        key=MESSAGES.key,
        producers=MESSAGES.producers,
        consumers=MESSAGES.consumers,
        event_types=MESSAGES.event_types,
        description="smoke test copy",
    )
    create_topics(infra.kafka_bootstrap, [topic.name, topic.dead_letter], partitions=2)
    return topic


def _inbound(org: str, conversation: str) -> CloudEvent[InboundMessageReceived]:
    data = InboundMessageReceived(
        org_id=org,
        conversation_id=conversation,
        message_id=str(uuid.uuid4()),
        channel_id="ch",
        contact_id="c",
        occurred_at=datetime.now(UTC),
    )
    return CloudEvent.wrap(data, source="/test")


async def test_produce_consume_commit_then_resume_after_the_commit(
    infra: Infra, unique: Callable[[str], str]
) -> None:
    topic, group = MESSAGES.name, unique("smoke-group")
    key = unique("conv").encode()
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        meta = [await producer.send_and_wait(topic, f"m{i}".encode(), key=key) for i in range(2)]
    finally:
        await producer.stop()
    tp = TopicPartition(topic, meta[0].partition)

    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, meta[0].offset)
        first = await asyncio.wait_for(consumer.getone(), 10)
        assert first.value == b"m0"
        await consumer.commit({tp: first.offset + 1})
    finally:
        await consumer.stop()

    # A new consumer of the same group resumes right after the committed message.
    again = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await again.start()
    try:
        again.assign([tp])
        assert await again.committed(tp) == meta[0].offset + 1
        nxt = await asyncio.wait_for(again.getone(), 10)
        assert (nxt.value, nxt.offset) == (b"m1", meta[1].offset)
    finally:
        await again.stop()


async def _consuming(
    infra: Infra,
    topic: Topic,
    group: str,
    handler: kit_kafka.EventHandler,
    publisher: kit_kafka.EventPublisher,
    policy: kit_kafka.RetryPolicy | None = None,
) -> tuple[BatchConsumer, asyncio.Task[None]]:
    consumer = BatchConsumer(
        name="smoke",
        bootstrap=infra.kafka_bootstrap,
        topics=[topic.name],
        group_id=group,
        handler=per_event(handler),
        dead_letters=kit_kafka.DeadLetters(publisher.publish_raw, group),
        policy=policy,
    )
    task = asyncio.create_task(consumer.run())
    await consumer.ready()
    return consumer, task


async def test_the_kit_consumer_handles_valid_events_and_dead_letters_malformed(
    infra: Infra, unique: Callable[[str], str], private_topic: Topic
) -> None:
    org = unique("org")
    handled: list[CloudEvent[EventData]] = []

    async def handler(event: CloudEvent[EventData]) -> None:
        if event.data.org_id == org:
            handled.append(event)

    publisher = kit_kafka.EventPublisher(infra.kafka_bootstrap, client_id="smoke")
    await publisher.start()
    # Everything goes to one partition (same key), so order on it is: good, bad, good.
    conversation = unique("conv")
    before, after = _inbound(org, conversation), _inbound(org, conversation)

    async with TopicProbe(infra.kafka_bootstrap, private_topic.dead_letter) as dlq:
        _, task = await _consuming(infra, private_topic, unique("smoke-fs"), handler, publisher)
        try:
            await publisher.publish(private_topic, before)
            await publisher.publish_raw(
                private_topic.name, b'{"oops": true', conversation.encode(), {}
            )
            await publisher.publish(private_topic, after)
            await wait_until(lambda: len(handled) == 2, timeout=30)
            dead = await dlq.wait_for(lambda r: r.key == conversation.encode(), count=1, timeout=15)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await publisher.stop()

    assert [e.id for e in handled] == [before.id, after.id]
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert dead[0].value == b'{"oops": true'
    assert headers[kit_kafka.H_TOPIC] == private_topic.name
    assert headers[kit_kafka.H_REASON] == "not_json"
    assert "not JSON" in headers[kit_kafka.H_ERROR]


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(
    infra: Infra, unique: Callable[[str], str], private_topic: Topic
) -> None:
    org = unique("org")
    attempts: list[str] = []

    async def failing(event: CloudEvent[EventData]) -> None:
        if event.data.org_id == org:
            attempts.append(event.id)
            raise ValueError("poison")

    publisher = kit_kafka.EventPublisher(infra.kafka_bootstrap, client_id="smoke")
    await publisher.start()
    event = _inbound(org, unique("conv"))
    policy = kit_kafka.RetryPolicy(max_attempts=3, backoff_seconds=0.01)
    async with TopicProbe(infra.kafka_bootstrap, private_topic.dead_letter) as dlq:
        _, task = await _consuming(
            infra, private_topic, unique("smoke-retry"), failing, publisher, policy
        )
        try:
            await publisher.publish(private_topic, event)
            dead = await dlq.wait_for(lambda r: r.key == event.key, timeout=30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await publisher.stop()
    # one attempt as part of its batch, then three on its own
    assert attempts == [event.id] * 4
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers[kit_kafka.H_ATTEMPTS] == "3"
    assert headers[kit_kafka.H_REASON] == kit_kafka.REASON_HANDLER_FAILED
    assert json.loads(dead[0].value)["id"] == event.id
