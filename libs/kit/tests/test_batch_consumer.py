"""The kit's batch consumer without a broker: ``process`` on hand-made records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka import TopicPartition
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactProfileUpserted
from inbox_kit.batch_consumer import Batch, BatchConsumer, Record
from inbox_kit.kafka import H_ERROR, DeadLetters, RetryPolicy
from inbox_testing import consumer_record
from pymongo.errors import AutoReconnect


def record(offset: int, value: bytes) -> Record:
    return consumer_record("inbox.contacts.v1", value, offset=offset)


def event(contact_id: str) -> bytes:
    data = ContactProfileUpserted(
        org_id="org", contact_id=contact_id, occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return CloudEvent.wrap(data, source="/tests").to_json_bytes()


async def test_outages_retry_the_batch_and_refusals_and_malformed_go_out_in_order() -> None:
    sent: list[tuple[str, bytes, dict[str, str]]] = []
    calls: list[list[str]] = []

    async def publish(topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        sent.append((topic, value, headers))

    async def handler(batch: Batch) -> list[tuple[Record, Exception]]:
        ids = [e.data.contact_id for _, e in batch]  # type: ignore[attr-defined]
        calls.append(ids)
        if len(calls) == 1:
            raise AutoReconnect("database down")
        return [(r, ValueError("refused")) for r, e in batch if e.data.contact_id == "bad"]  # type: ignore[attr-defined]

    loop = BatchConsumer(
        name="t",
        bootstrap="unused",
        topics=["inbox.contacts.v1"],
        group_id="g",
        handler=handler,
        dead_letters=DeadLetters(publish, "g"),
        policy=RetryPolicy(backoff_seconds=0.01),
    )
    records = [
        record(0, event("a")),
        record(1, event("bad")),
        record(2, b"{"),
        record(3, event("b")),
    ]
    await loop.process(records)
    # The outage retried the whole batch once; nothing was replayed record by record.
    assert calls == [["a", "bad", "b"], ["a", "bad", "b"]]
    assert [(t, v) for t, v, _ in sent] == [
        ("inbox.contacts.v1.dlq", records[1].value),
        ("inbox.contacts.v1.dlq", records[2].value),
    ]
    assert sent[0][2][H_ERROR] == "refused"


async def test_the_revoke_callback_survives_a_cancelled_or_stuck_commit() -> None:
    # the revoke callback (commit_pending) runs in aiokafka's coordination task: a
    # CancelledError there ends that task, and consumer.stop() then skipped closing the
    # fetcher; a commit that waits for the rebalance must not hold the rebalance for good
    async def no_dead_letters(*_: object) -> None:
        raise AssertionError("nothing should be dead-lettered")

    async def handler(batch: Batch) -> None:
        raise AssertionError("nothing is consumed")

    loop = BatchConsumer(
        name="stopping",
        bootstrap="127.0.0.1:1",
        topics=["unused"],
        group_id="unused",
        handler=handler,
        dead_letters=DeadLetters(no_dead_letters, "unused"),
        overlap_commits=True,
    )
    commit = asyncio.create_task(asyncio.Event().wait())  # a commit the broker never answers
    loop._commit_in_flight = commit
    await asyncio.sleep(0)
    commit.cancel()  # as the stop does after its bounded wait
    await loop.commit_pending({TopicPartition("unused", 0)})  # returns, raises nothing
    assert commit.cancelled()

    stuck = asyncio.create_task(asyncio.Event().wait())
    loop._commit_in_flight = stuck
    started = asyncio.get_running_loop().time()
    await loop.commit_pending({TopicPartition("unused", 0)})  # gives up on it after 5 s
    await asyncio.wait({stuck})  # its cancellation is delivered at its next step
    assert stuck.cancelled()
    assert asyncio.get_running_loop().time() - started < 10
