"""A partition assigned without a committed offset starts where its reset policy says once:
the position is committed at the take-over, so the next member to own it starts there,
not at "latest" again (which would skip what arrived in between); on the real broker."""

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
from inbox_kit.kafka import DeadLetters
from inbox_testing import Infra, wait_until

pytestmark = pytest.mark.infra


def _event(contact: str) -> bytes:
    data = ContactProfileUpserted(
        org_id="org", contact_id=contact, occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return CloudEvent.wrap(data, source="/t").to_json_bytes()


async def test_a_later_member_starts_where_the_first_one_was_assigned(infra: Infra) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"test-start-{tag}", f"g-start-{tag}"
    await create_topics_async(infra.kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    seen: list[str] = []

    async def handler(batch: Batch) -> None:
        seen.extend(getattr(e.data, "contact_id", "") for _, e in batch)

    async def no_dead_letters(
        topic: str, value: bytes, key: bytes | None, headers: dict[str, str]
    ) -> None:
        raise AssertionError("nothing should be dead-lettered")

    def member(name: str) -> BatchConsumer:
        return BatchConsumer(
            name=name,
            bootstrap=infra.kafka_bootstrap,
            topics=[topic],
            group_id=group,
            handler=handler,
            dead_letters=DeadLetters(no_dead_letters, group),
            initial_offset="latest",
        )

    async def stopped(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        await (await producer.send(topic, _event("before")))  # before the group: skipped
        first = member("first")
        task = asyncio.create_task(first.run())
        try:
            await first.ready()  # assigned, nothing consumed: only its start is committed
        finally:
            await stopped(task)
        await (await producer.send(topic, _event("between")))  # while no member runs
        second = member("second")
        task = asyncio.create_task(second.run())
        try:
            await wait_until(lambda: seen, timeout=30)
        finally:
            await stopped(task)
        assert seen == ["between"]
    finally:
        await producer.stop()
