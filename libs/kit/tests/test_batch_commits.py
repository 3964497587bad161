"""When a BatchConsumer commits: after every batch (default), overlapped with the next batch,
or at most every few seconds; on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactProfileUpserted
from inbox_devstack.topics import create_topics_async
from inbox_kit.batch_consumer import Batch, BatchConsumer
from inbox_kit.kafka import DeadLetters
from inbox_testing import Infra, wait_until

pytestmark = pytest.mark.infra

RECORDS = 7


async def _topic_with_records(infra: Infra) -> str:
    topic = f"test-commits-{uuid.uuid4().hex[:8]}"
    await create_topics_async(infra.kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(RECORDS):
            data = ContactProfileUpserted(
                org_id="org", contact_id=f"c{i}", occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
            )
            await producer.send_and_wait(topic, CloudEvent.wrap(data, source="/t").to_json_bytes())
    finally:
        await producer.stop()
    return topic


@pytest.mark.parametrize(
    ("interval", "overlap"), [(0.0, False), (0.0, True), (0.5, False), (0.5, True)]
)
async def test_every_handled_offset_is_committed_in_every_commit_mode(
    infra: Infra, interval: float, overlap: bool
) -> None:
    topic = await _topic_with_records(infra)
    group = f"g-commits-{uuid.uuid4().hex[:8]}"
    handled: list[int] = []

    async def handler(batch: Batch) -> None:
        handled.extend(r.offset for r, _ in batch)

    async def no_dead_letters(*_: object) -> None:
        raise AssertionError("nothing should be dead-lettered")

    consumer = BatchConsumer(
        name="commits",
        bootstrap=infra.kafka_bootstrap,
        topics=[topic],
        group_id=group,
        handler=handler,
        dead_letters=DeadLetters(no_dead_letters, group),
        max_records=2,  # several batches: with an interval, the last ones wait for idle polls
        commit_interval_seconds=interval,
        overlap_commits=overlap,
    )
    probe = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group)
    await probe.start()
    tp = TopicPartition(topic, 0)
    committed: list[int | None] = []

    async def poll_committed() -> None:
        while True:
            committed.append(await probe.committed(tp))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(consumer.run())
    watcher = asyncio.create_task(poll_committed())
    try:
        await wait_until(lambda: committed and committed[-1] == RECORDS, timeout=60)
        assert handled == list(range(RECORDS))
        seen = [c for c in committed if c is not None]
        # never ahead of what was handled, never backwards (one commit in flight, in order)
        assert seen == sorted(seen) and seen[-1] == RECORDS
    finally:
        watcher.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await probe.stop()
