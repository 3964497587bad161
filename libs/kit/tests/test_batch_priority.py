"""BatchConsumer(priority_topics=...): records of a priority topic do not wait behind a
backlog of another topic already fetched; on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactProfileUpserted
from inbox_devstack.topics import create_topics_async
from inbox_kit.batch_consumer import Batch, BatchConsumer
from inbox_kit.batch_sizing import AdaptiveBatchSize
from inbox_kit.kafka import DeadLetters
from inbox_testing import Infra, wait_until

pytestmark = pytest.mark.infra

BACKLOG, URGENT, CAP = 300, 3, 50


def _event(i: int) -> bytes:
    data = ContactProfileUpserted(
        org_id="org", contact_id=f"c{i}", occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return CloudEvent.wrap(data, source="/t").to_json_bytes()


@pytest.mark.parametrize("sized", [False, True])
async def test_priority_records_go_ahead_of_a_fetched_backlog(infra: Infra, sized: bool) -> None:
    tag = uuid.uuid4().hex[:8]
    backlog, urgent = f"test-backlog-{tag}", f"test-urgent-{tag}"
    await create_topics_async(infra.kafka_bootstrap, [backlog, urgent], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sends = [await producer.send(backlog, _event(i)) for i in range(BACKLOG)]
        sends += [await producer.send(urgent, _event(i)) for i in range(URGENT)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    batches: list[list[str]] = []

    async def handler(batch: Batch) -> None:
        batches.append([r.topic for r, _ in batch])

    async def no_dead_letters(*_: object) -> None:
        raise AssertionError("nothing should be dead-lettered")

    group = f"g-priority-{tag}"
    consumer = BatchConsumer(
        name="priority",
        bootstrap=infra.kafka_bootstrap,
        topics=[backlog, urgent],
        group_id=group,
        handler=handler,
        dead_letters=DeadLetters(no_dead_letters, group),
        max_records=CAP,
        priority_topics=[urgent],
        # a sizer that starts small: the priority records still come first
        sizing=AdaptiveBatchSize(target_seconds=0.05, low=10, high=CAP) if sized else None,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(lambda: sum(map(len, batches)) == BACKLOG + URGENT, timeout=60)
        with_urgent = [i for i, b in enumerate(batches) if urgent in b]
        # fetched with the backlog or by the next fetch (the backlog's partition is not
        # fetched again while it has records buffered): never after the backlog drained
        assert with_urgent and with_urgent[-1] <= 1, batches
        for i in with_urgent:
            topics = batches[i]
            first_backlog = topics.index(backlog) if backlog in topics else len(topics)
            assert all(t == urgent for t in topics[:first_backlog]), topics
            assert urgent not in topics[first_backlog:], topics
        assert all(len(b) <= CAP for b in batches)  # a sizer never exceeds its high bound
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
