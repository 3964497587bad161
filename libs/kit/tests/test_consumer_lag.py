"""Consumer lag per group and partition, on the real broker."""

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
from inbox_kit import batch_consumer
from inbox_kit.batch_consumer import Batch, BatchConsumer
from inbox_kit.kafka import DeadLetters
from inbox_testing import Infra, wait_until
from prometheus_client import REGISTRY

pytestmark = pytest.mark.infra


def _lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "inbox_kafka_consumer_lag_messages",
        {"group": group, "topic": topic, "partition": str(partition)},
    )


async def test_lag_is_reported_per_group_and_partition_and_drains(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every poll reports (the default throttle could skip the poll that fetched the batch)
    monkeypatch.setattr(batch_consumer, "LAG_REPORT_SECONDS", 0.0)
    topic, group = f"test-lag-{uuid.uuid4().hex[:8]}", f"g-lag-{uuid.uuid4().hex[:8]}"
    await create_topics_async(infra.kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            data = ContactProfileUpserted(
                org_id="org", contact_id=f"c{i}", occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
            )
            await producer.send_and_wait(topic, CloudEvent.wrap(data, source="/t").to_json_bytes())
    finally:
        await producer.stop()

    release = asyncio.Event()
    handled: list[int] = []

    async def handler(batch: Batch) -> None:
        handled.extend(r.offset for r, _ in batch)
        await release.wait()  # hold the first batch: the rest of the partition is lag

    async def no_dead_letters(*_: object) -> None:
        raise AssertionError("nothing should be dead-lettered")

    consumer = BatchConsumer(
        name="lag",
        bootstrap=infra.kafka_bootstrap,
        topics=[topic],
        group_id=group,
        handler=handler,
        dead_letters=DeadLetters(no_dead_letters, group),
        max_records=2,
    )
    assert consumer.backlog() == 0  # not started
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(lambda: _lag(group, topic, 0) == 3, timeout=60)
        assert handled == [0, 1]
        assert consumer.backlog() == 3  # what the next batch takes
        release.set()
        await wait_until(lambda: _lag(group, topic, 0) == 0, timeout=30)
        assert handled == [0, 1, 2, 3, 4]
        assert consumer.backlog() == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
