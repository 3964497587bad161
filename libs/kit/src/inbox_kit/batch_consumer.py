"""The one consumer path of every consumer group: a batch consumer over aiokafka.

Polls a batch, decodes it (``inbox_kit.inbound``: structured or binary CloudEvents, unknown
fields ignored, only the topic's types, no event time from the future), forwards misplaced
records to their repartition topic (``inbox_kit.repartition``), hands the valid events to the
handler in one call, dead-letters what cannot be processed, then commits the batch's offsets
(at least once). In detail:

- the handler may *refuse* records (e.g. an invalid value): they are dead-lettered at once,
  without retries — a validation error does not go away;
- a transient failure (database or broker down, lock contention) retries the whole batch
  until it succeeds: never dead-lettered;
- any other failure replays the batch record by record, with bounded retries, so only the
  poison record is dead-lettered;
- dead letters go out in record order, undecodable records included.

A handler of one event at a time is wrapped with ``per_event``.

Partition callbacks (``on_assigned`` / ``on_revoked``) run under ``lock``, never inside
aiokafka's rebalance callback for long: a slow take-over there would stop heartbeats and get
the member evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as TopicCounter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError
from inbox_contracts import CloudEvent, EventData
from prometheus_client import Counter, Gauge, Histogram

from inbox_kit import tracing
from inbox_kit.batch_sizing import AdaptiveBatchSize
from inbox_kit.inbound import InboundDecoder, Undecodable
from inbox_kit.kafka import (
    CONSUMED,
    REASON_REFUSED,
    DeadLetters,
    EventHandler,
    Outcome,
    PartitionedPublish,
    RetryPolicy,
    handle_with_retries,
)
from inbox_kit.repartition import Repartitioner

log = logging.getLogger(__name__)

BATCH_SECONDS = Histogram(
    "inbox_kafka_batch_seconds",
    "Time to handle one consumed batch",
    ["loop"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_RECORDS = Counter("inbox_kafka_batch_records_total", "Records handled", ["loop"])
CONSUMER_LAG = Gauge(
    "inbox_kafka_consumer_lag_messages",
    "Records on an assigned partition after this consumer's position (high watermark minus "
    "position), per group and partition; refreshed after a poll, at most every "
    "LAG_REPORT_SECONDS",
    ["group", "topic", "partition"],
)
#: How often a consumer refreshes its lag gauges (they are read locally, no broker round trip).
LAG_REPORT_SECONDS = 1.0
#: Bound on each step of committing newly assigned partitions' start positions.
PIN_TIMEOUT = 10.0

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Batch = Sequence[tuple[Record, CloudEvent[EventData]]]
#: Handles a batch; returns the records it refuses, with the reason (or None: none refused).
BatchHandler = Callable[[Batch], Awaitable[Sequence[tuple[Record, Exception]] | None]]
PartitionsCallback = Callable[[set[int]], Awaitable[None]]


def _traced(
    records: Sequence[Record], valid: Sequence[tuple[Record, CloudEvent[EventData]]]
) -> list[tracing.TracedRecord]:
    """What the batch span needs of each record: where it is, its event id, its producer's
    context (headers first, then the decoded event's tracing extension)."""
    events = {id(record): event for record, event in valid}
    traced: list[tracing.TracedRecord] = []
    for record in records:
        event = events.get(id(record))
        traced.append(
            (
                record.topic,
                record.partition,
                record.offset,
                event.id if event is not None else None,
                tracing.record_context(
                    record.headers, event.model_extra if event is not None else None
                ),
            )
        )
    return traced


def per_event(handler: EventHandler) -> BatchHandler:
    """A batch handler that hands the events to ``handler`` one at a time, in order."""

    async def handle(batch: Batch) -> None:
        for _, event in batch:
            await handler(event)

    return handle


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: BatchConsumer) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # wait for the batch in flight (it commits at its end), then let go
        self._loop.forget_lag(revoked)
        async with self._loop.lock:
            await self._loop.commit_pending(revoked)
            parts = {tp.partition for tp in revoked}
            self._loop.to_take_over -= parts
            if self._loop.on_revoked is not None and revoked:
                await self._loop.on_revoked(parts)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Only noted here: the take-over runs in the poll loop before the next batch.
        self._loop.to_take_over |= {tp.partition for tp in assigned}


def _position_now(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's position on ``tp`` if it is known right now, else None.

    ``AIOKafkaConsumer.position()`` waits for an unknown position (up to the request timeout,
    40 s), which the poll loop must never do; aiokafka has no public non-blocking accessor, so
    this reads the subscription state ``position()`` itself reads.
    """
    subscription = consumer._subscription.subscription
    if subscription is None or not consumer._subscription.is_assigned(tp):
        return None
    state = subscription.assignment.state_value(tp)
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


def _lag(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """Records after the position, as of the latest fetch response (read locally; None:
    nothing fetched yet, or the position is being reset or sought)."""
    highwater = consumer.highwater(tp)
    if highwater is None:
        return None
    position = _position_now(consumer, tp)
    if position is None:
        return None
    return max(0, int(highwater) - position)


def _backlog(consumer: AIOKafkaConsumer) -> int:
    """``_lag`` summed over every assigned partition (unknown ones count 0)."""
    return sum(_lag(consumer, tp) or 0 for tp in consumer.assignment())


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
        policy: RetryPolicy | None = None,
        initial_offset: str = "earliest",
        lock: asyncio.Lock | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        decoder: InboundDecoder | None = None,
        repartition: PartitionedPublish | None = None,
        commit_interval_seconds: float = 0.0,
        overlap_commits: bool = False,
        priority_topics: Sequence[str] = (),
        sizing: AdaptiveBatchSize | None = None,
    ) -> None:
        """``repartition`` (a publish to an explicit partition) turns on re-routing of records
        on a partition their subject does not hash to, for the registry topics marked
        ``repartitioned``; their repartition topics are then consumed too.

        ``commit_interval_seconds`` > 0: commit the handled offsets at most that often (and
        when partitions are revoked) instead of after every batch, for a handler that never
        resumes from committed offsets (its state, with its own position, is stored
        elsewhere); the committed offsets then only serve monitoring (broker-side lag), at
        most that many seconds behind.

        ``overlap_commits``: a batch's commit is sent when it is handled, and awaited only
        before the next commit (or a revoke, or the stop), so the broker's round trip overlaps
        the next batch instead of delaying it. Still at least once: offsets are committed after
        their batch was handled, in order (one commit in flight); a crash in between
        redelivers at most the batches since the last commit acknowledged.

        ``priority_topics``: what is fetched already of these topics goes into the next batch
        first, ahead of the other topics' records (which fill the rest of the batch), so a
        few records on them (answers, control records) do not wait behind a backlog of the
        others. Order within a partition is kept; across topics there is none anyway.

        ``sizing``: the records per batch follow ``AdaptiveBatchSize`` (small while the loop
        keeps up, up to ``max_records`` while a backlog grows) instead of always up to
        ``max_records``."""
        self.name = name
        self._bootstrap = bootstrap
        self._decoder = decoder or InboundDecoder()
        self._repartitioner = (
            Repartitioner(repartition, self._partition_count) if repartition is not None else None
        )
        self._topics = list(topics)
        if self._repartitioner is not None:
            self._topics += self._repartitioner.internal_topics(topics)
        self._group_id = group_id
        self._handler = handler
        self._dead_letters = dead_letters
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._policy = policy or RetryPolicy()
        self._initial_offset = initial_offset
        self._consumer_options = dict(consumer_options or {})
        #: Held while a batch is handled and during rebalance callbacks.
        self.lock = lock or asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        #: Set once the first assignment was taken over (state loaded).
        self.assigned_once = asyncio.Event()
        #: Partitions assigned but not taken over yet (see ``_take_over``).
        self.to_take_over: set[int] = set()
        self._lag_reported_at = 0.0
        self._commit_interval = commit_interval_seconds
        #: Handled, not committed yet (``commit_interval_seconds``), and when we last did.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        self._overlap_commits = overlap_commits
        self._commit_in_flight: asyncio.Task[None] | None = None
        self._priority_topics = frozenset(priority_topics)
        self.sizing = sizing

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=f"{self._group_id}-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset=self._initial_offset,
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self._max_records,
            **self._consumer_options,
        )
        self.consumer = consumer
        consumer.subscribe(self._topics, listener=_Listener(self))
        await consumer.start()
        try:
            while True:
                if self.to_take_over or (consumer.assignment() and not self.assigned_once.is_set()):
                    async with self.lock:
                        await self._take_over()
                batches = await self._poll(consumer)
                self._report_lag(consumer)
                if not batches:
                    if self._uncommitted:
                        async with self.lock:
                            await self._commit(consumer, {})
                    continue
                async with self.lock:
                    # a rebalance may have assigned partitions (take them over first) or taken
                    # partitions away while we polled
                    await self._take_over()
                    live = {tp: recs for tp, recs in batches.items() if tp in consumer.assignment()}
                    if live:
                        await self._handle(consumer, live)
        finally:
            try:
                # bounded: a broker that is gone must not hold up the stop
                await self._commit_acknowledged(timeout=5)
            finally:
                # even if that wait is interrupted: a consumer not stopped stays in its group
                await consumer.stop()

    async def _poll(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Record]]:
        cap = self.sizing.cap if self.sizing is not None else self._max_records
        batches: dict[TopicPartition, list[Record]] = {}
        if self._priority_topics:
            first = [tp for tp in consumer.assignment() if tp.topic in self._priority_topics]
            if first:
                batches = await consumer.getmany(*first, timeout_ms=0, max_records=cap)
        taken = sum(len(recs) for recs in batches.values())
        if taken < cap:
            rest = await consumer.getmany(
                timeout_ms=0 if taken else self._poll_timeout_ms, max_records=cap - taken
            )
            for tp, recs in rest.items():
                batches[tp] = batches[tp] + recs if tp in batches else recs
            taken += sum(len(recs) for recs in rest.values())
        if self.sizing is not None and batches:
            self.sizing.polled(time.monotonic(), taken, _backlog(consumer))
        return batches

    def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._lag_reported_at < LAG_REPORT_SECONDS:
            return
        for tp in consumer.assignment():
            lag = _lag(consumer, tp)
            if lag is None:
                continue  # nothing fetched from it yet, or being reset: at the next poll
            CONSUMER_LAG.labels(self._group_id, tp.topic, str(tp.partition)).set(lag)
            self._lag_reported_at = now

    def backlog(self) -> int:
        """Records on the assigned partitions not handed to the handler yet, as of the latest
        fetch responses (0 before the consumer started); read locally, no request."""
        return _backlog(self.consumer) if self.consumer is not None else 0

    def forget_lag(self, partitions: set[TopicPartition]) -> None:
        """Drop the gauges of partitions this consumer no longer owns (another member reports)."""
        for tp in partitions:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self._group_id, tp.topic, str(tp.partition))

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

    async def _take_over(self) -> None:
        """Hand newly assigned partitions to ``on_assigned`` (call with ``lock`` held)."""
        consumer = self.consumer
        if consumer is None or not consumer.assignment():
            return
        parts = set(self.to_take_over)
        self.to_take_over.clear()
        if parts and self.on_assigned is not None:
            await self.on_assigned(parts)
        if parts:
            await self._pin_start_positions(
                consumer, [tp for tp in consumer.assignment() if tp.partition in parts]
            )
        self.assigned_once.set()

    async def _pin_start_positions(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        """Commit where a partition without a committed offset starts (its reset policy,
        resolved now, or where ``on_assigned`` sought), so that a member taking it over later
        starts there too. Otherwise that member resolves the policy again: with "latest" it
        would skip what arrived in between (a rebalance before anything was consumed), with
        "earliest" redo what retention still holds. Best effort, bounded: the first commit
        of a handled batch does the same."""
        try:
            committed = await asyncio.wait_for(
                asyncio.gather(*(consumer.committed(tp) for tp in partitions)), PIN_TIMEOUT
            )
            fresh = [tp for tp, offset in zip(partitions, committed, strict=True) if offset is None]
            if fresh:
                positions = await asyncio.wait_for(
                    asyncio.gather(*(consumer.position(tp) for tp in fresh)), PIN_TIMEOUT
                )
                offsets = dict(zip(fresh, positions, strict=True))
                await asyncio.wait_for(consumer.commit(offsets), PIN_TIMEOUT)
        except (KafkaError, TimeoutError):
            log.warning("could not commit the start positions of newly assigned partitions")

    async def _handle(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Record]]
    ) -> None:
        started = time.perf_counter()
        records = [r for recs in batches.values() for r in recs]
        await self.process(records)
        if self.sizing is not None:
            self.sizing.handled(len(records), time.perf_counter() - started)
        await self._commit(consumer, {tp: recs[-1].offset + 1 for tp, recs in batches.items()})
        BATCH_RECORDS.labels(self.name).inc(len(records))
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        self._uncommitted.update(offsets)
        now = time.monotonic()
        if not self._uncommitted or now - self._committed_at < self._commit_interval:
            return
        due, self._uncommitted = self._uncommitted, {}
        self._committed_at = now
        await self._commit_acknowledged()  # in order: one commit in flight
        if self._overlap_commits:
            self._commit_in_flight = asyncio.create_task(self._send_commit(consumer, due))
        else:
            await self._send_commit(consumer, due)

    async def _send_commit(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        try:
            await consumer.commit(offsets)
        except CommitFailedError:
            # we lost the partitions meanwhile; the new owner redelivers (handling is idempotent)
            log.warning("commit failed after a rebalance; the batch will be redelivered")

    async def _commit_acknowledged(self, timeout: float | None = None) -> None:
        """Wait for the commit in flight (``overlap_commits``), at most ``timeout`` (then it
        is abandoned); its failure is the batches' redelivery, not this caller's error."""
        task, self._commit_in_flight = self._commit_in_flight, None
        if task is None:
            return
        # not ``await task``: a commit cancelled meanwhile must not raise CancelledError in the
        # rebalance callback (it would end aiokafka's coordination task, and its stop would
        # then skip closing the fetcher), and our own cancellation must not cancel the commit
        await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            task.cancel()  # abandoned: its batches are redelivered
            log.warning("offset commit timed out; the batches since the last are redelivered")
        elif task.cancelled() or task.exception() is not None:
            log.warning("offset commit failed; the batches since the last are redelivered")

    async def commit_pending(self, partitions: set[TopicPartition]) -> None:
        """Commit what was handled on ``partitions`` and not committed yet (revoke). Bounded:
        the rebalance (or the group's leave) waits for it, and a commit may wait for them."""
        await self._commit_acknowledged(timeout=5)
        due = {tp: o for tp, o in self._uncommitted.items() if tp in partitions}
        for tp in due:
            del self._uncommitted[tp]
        if due and self.consumer is not None:
            # a generation already gone: the next owner starts where the last commit was
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self.consumer.commit(due), timeout=5)

    def _partition_count(self, topic: str) -> int | None:
        parts = self.consumer.partitions_for_topic(topic) if self.consumer is not None else None
        return len(parts) if parts else None

    async def process(self, records: Sequence[Record]) -> None:
        """Handle ``records`` until each is processed, forwarded or dead-lettered (transient
        failures are retried until they pass). Idempotent if the handler is."""
        valid: list[tuple[Record, CloudEvent[EventData]]] = []
        failed: list[tuple[Record, Exception, str]] = []
        for record in records:
            try:
                valid.append((record, self._decoder.decode(record)))
            except Undecodable as exc:
                failed.append((record, exc, exc.reason))
        with tracing.consuming(
            topics=(r.topic for r in records),
            group_id=self._group_id,
            records=_traced(records, valid),
        ):
            await self._process(records, valid, failed)

    async def _process(
        self,
        records: Sequence[Record],
        valid: list[tuple[Record, CloudEvent[EventData]]],
        failed: list[tuple[Record, Exception, str]],
    ) -> None:
        if self._repartitioner is not None and valid:
            valid = await self._retrying(self._repartitioner.forward_misplaced, valid)
        attempt = 0
        while True:
            attempt += 1
            try:
                refused = await self._handler(valid) if valid else None
                break
            except Exception as exc:
                if self._policy.is_transient(exc):
                    log.warning("transient failure; retrying the batch", exc_info=True)
                    await asyncio.sleep(min(5.0, self._policy.backoff_seconds * attempt))
                    continue
                log.warning("batch failed; replaying it record by record", exc_info=True)
                await self._one_by_one(records, valid, failed)
                return
        failed += [(record, error, REASON_REFUSED) for record, error in refused or ()]
        await self._dead_letter_in_order(records, failed)
        dead = {id(record) for record, _, _ in failed}
        handled = {id(record) for record, _ in valid}
        processed = TopicCounter(r.topic for r in records if id(r) in handled and id(r) not in dead)
        for topic, count in processed.items():
            CONSUMED.labels(topic, self._group_id, Outcome.PROCESSED).inc(count)

    async def _retrying(
        self,
        step: Callable[[Batch], Awaitable[list[tuple[Record, CloudEvent[EventData]]]]],
        batch: Batch,
    ) -> list[tuple[Record, CloudEvent[EventData]]]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await step(batch)
            except Exception as exc:
                if not self._policy.is_transient(exc):
                    raise
                log.warning("transient failure while forwarding; retrying", exc_info=True)
                await asyncio.sleep(min(5.0, self._policy.backoff_seconds * attempt))

    async def _dead_letter_in_order(
        self, records: Sequence[Record], failed: Sequence[tuple[Record, Exception, str]]
    ) -> None:
        position = {id(record): i for i, record in enumerate(records)}
        for record, error, reason in sorted(failed, key=lambda f: position[id(f[0])]):
            await self._dead_letter(record, error, reason)

    async def _dead_letter(self, record: Record, error: BaseException, reason: str) -> None:
        await self._dead_letters.send(record, error, attempts=1, reason=reason)
        CONSUMED.labels(record.topic, self._group_id, Outcome.DEAD_LETTERED).inc()

    async def _one_by_one(
        self,
        records: Sequence[Record],
        valid: Sequence[tuple[Record, CloudEvent[EventData]]],
        undecodable: Sequence[tuple[Record, Exception, str]],
    ) -> None:
        events = {id(record): event for record, event in valid}
        errors = {id(record): (error, reason) for record, error, reason in undecodable}
        for record in records:
            if id(record) in errors:
                await self._dead_letter(record, *errors[id(record)])
                continue
            if id(record) not in events:
                continue  # forwarded to its repartition topic
            event = events[id(record)]

            async def single(event: CloudEvent[EventData], rec: Record = record) -> None:
                for refused, error in await self._handler([(rec, event)]) or ():
                    await self._dead_letter(refused, error, REASON_REFUSED)

            while True:
                try:
                    await handle_with_retries(
                        record,
                        event,
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
