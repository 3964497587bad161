"""Kafka consumers of the routing service: batch loops over aiokafka.

- the **owner** loop (group ``routing``): messages, conversations and routing commands, with
  the range assignor so that partition *p* of all three topics (same key, same partition
  count) belongs to one instance: the single writer of those conversations;
- the **presence** loop (group ``routing-presence``): records agent timelines, asks for sweeps.

Each loop polls a batch, decodes it (malformed records go to ``<topic>.dlq``), hands the valid
events to the service layer in one call, and commits the batch's offsets afterwards (at least
once). If the batch handler fails for a non-transient reason, the batch is replayed record by
record through ``inbox_kit.kafka.process_record`` so only the poison record is dead-lettered.
A transient failure (database or broker down) seeks back and retries the same batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError
from inbox_contracts import CloudEvent, EventData, MalformedEvent, decode
from inbox_kit.kafka import CONSUMED, DeadLetters, Outcome, RetryPolicy, process_record
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

BATCHES = Histogram(
    "routing_batch_seconds",
    "Time to handle one consumed batch",
    ["loop"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RECORDS = Counter("routing_records_total", "Records handled", ["loop"])

DEFAULT_POLICY = RetryPolicy()
Record: TypeAlias = ConsumerRecord[bytes, bytes]
BatchHandler = Callable[[Sequence[tuple[Record, CloudEvent[EventData]]]], Awaitable[None]]
PartitionsCallback = Callable[[set[int]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: BatchConsumer) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # wait for the batch in flight (it commits at its end), then let go
        async with self._loop.lock:
            parts = {tp.partition for tp in revoked}
            self._loop.to_take_over -= parts
            if self._loop.on_revoked is not None and revoked:
                await self._loop.on_revoked(parts)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Only noted here: the take-over (loading state) runs in the poll loop before the next
        # batch. aiokafka stops heartbeating while this callback runs, so a take-over longer
        # than the session timeout here would get the member evicted (and the take-over
        # repeated after the rebalance).
        self._loop.to_take_over |= {tp.partition for tp in assigned}


class BatchConsumer:
    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        dead_letters: DeadLetters,
        on_assigned: PartitionsCallback | None = None,
        on_revoked: PartitionsCallback | None = None,
        max_records: int = 1000,
        poll_timeout_ms: int = 100,
        policy: RetryPolicy = DEFAULT_POLICY,
        initial_offset: str = "earliest",
        lock: asyncio.Lock | None = None,
    ) -> None:
        self._initial_offset = initial_offset
        self.name = name
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._group_id = group_id
        self._handler = handler
        self._dead_letters = dead_letters
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._policy = policy
        #: Held while a batch is handled and during rebalance callbacks.
        self.lock = lock or asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        #: Set once the first assignment was taken over (state loaded).
        self.assigned_once = asyncio.Event()
        #: Partitions assigned but whose state is not loaded yet (see ``_take_over``).
        self.to_take_over: set[int] = set()

    async def _take_over(self) -> None:
        """Load the state of newly assigned partitions (call with ``lock`` held)."""
        consumer = self.consumer
        if consumer is None or not consumer.assignment():
            return
        parts = set(self.to_take_over)
        self.to_take_over.clear()
        if parts and self.on_assigned is not None:
            await self.on_assigned(parts)
        self.assigned_once.set()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=f"routing-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset=self._initial_offset,
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self._max_records,
            fetch_max_wait_ms=50,
            session_timeout_ms=30000,
            heartbeat_interval_ms=1000,
        )
        self.consumer = consumer
        consumer.subscribe(self._topics, listener=_Listener(self))
        await consumer.start()
        try:
            while True:
                if self.to_take_over or (consumer.assignment() and not self.assigned_once.is_set()):
                    async with self.lock:
                        await self._take_over()
                batches = await consumer.getmany(
                    timeout_ms=self._poll_timeout_ms, max_records=self._max_records
                )
                if not batches:
                    continue
                async with self.lock:
                    # a rebalance may have assigned partitions (load them first) or taken
                    # partitions away while we polled
                    await self._take_over()
                    live = {tp: recs for tp, recs in batches.items() if tp in consumer.assignment()}
                    if live:
                        await self._handle(consumer, live)
        finally:
            await consumer.stop()

    async def ready(self, timeout: float = 30.0) -> set[TopicPartition]:
        """Wait for an assignment and resolve its positions (for tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while True:
            consumer = self.consumer
            assignment = consumer.assignment() if consumer is not None else set()
            if assignment:
                try:
                    for tp in assignment:
                        await consumer.position(tp)  # type: ignore[union-attr]
                    remaining = max(0.1, deadline - time.monotonic())
                    await asyncio.wait_for(self.assigned_once.wait(), remaining)
                    return set(assignment)
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} consumer got no partitions in {timeout}s")
            await asyncio.sleep(0.05)

    async def _handle(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Record]]
    ) -> None:
        started = time.perf_counter()
        records = [r for recs in batches.values() for r in recs]
        valid: list[tuple[Record, CloudEvent[EventData]]] = []
        for record in records:
            try:
                valid.append((record, decode(record.value or b"")))
            except MalformedEvent as exc:
                await self._dead_letters.send(record, exc, attempts=1)
                CONSUMED.labels(record.topic, self._group_id, Outcome.DEAD_LETTERED).inc()
        attempt = 0
        while True:
            attempt += 1
            try:
                if valid:
                    await self._handler(valid)
                break
            except Exception as exc:
                if self._policy.is_transient(exc):
                    log.warning("transient failure; retrying the batch", exc_info=True)
                    await asyncio.sleep(min(5.0, self._policy.backoff_seconds * attempt))
                    continue
                log.warning("batch failed; replaying it record by record", exc_info=True)
                await self._one_by_one(valid)
                break
        try:
            await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batches.items()})
        except CommitFailedError:
            # we lost the partitions meanwhile; the new owner redelivers (handling is idempotent)
            log.warning("commit failed after a rebalance; the batch will be redelivered")
        RECORDS.labels(self.name).inc(len(records))
        BATCHES.labels(self.name).observe(time.perf_counter() - started)

    async def _one_by_one(self, valid: list[tuple[Record, CloudEvent[EventData]]]) -> None:
        for record, event in valid:

            async def single(
                _: CloudEvent[EventData], rec: Record = record, ev: CloudEvent[EventData] = event
            ) -> None:
                await self._handler([(rec, ev)])

            while True:
                try:
                    await process_record(
                        record,
                        single,
                        dead_letters=self._dead_letters,
                        group_id=self._group_id,
                        policy=self._policy,
                    )
                    break
                except Exception as exc:
                    if not self._policy.is_transient(exc):
                        raise
                    await asyncio.sleep(1.0)
