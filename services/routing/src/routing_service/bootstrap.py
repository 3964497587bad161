"""Wire the routing service: Mongo store, Kafka publisher and consumers, gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aiokafka import TopicPartition
from inbox.routing.v1 import routing_pb2_grpc
from inbox_contracts import utc_now
from inbox_contracts.topics import (
    CONVERSATIONS,
    MESSAGES,
    PRESENCE,
    ROUTING_COMMANDS,
    ROUTING_DISPATCH,
    ROUTING_PROPOSALS,
)
from inbox_kit.auth import verifier_from_settings
from inbox_kit.batch_consumer import Batch, BatchConsumer, BatchHandler, PartitionsCallback, Record
from inbox_kit.batch_sizing import AdaptiveBatchSize
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_kit.inbound import InboundDecoder
from inbox_kit.kafka import DeadLetters
from inbox_kit.mongo import connect
from inbox_kit.readiness import standard_checks
from inbox_kit.runtime import ServiceRuntime
from inbox_kit.service import Service

from routing_service.adapters.dispatch_store import MongoDispatchStore
from routing_service.adapters.kafka import CompletenessProbe, KafkaPublisher
from routing_service.adapters.mongo import MongoRoutingStore
from routing_service.domain.audit import AuditRetention
from routing_service.domain.progress import MarkTracker
from routing_service.entrypoints.grpc_api import RoutingServicer
from routing_service.service_layer.auto_assign import AutoAssigner, DispatchPublisher
from routing_service.service_layer.dispatcher import (
    Dispatcher,
    DispatchRecord,
    ProposalPublisher,
)
from routing_service.service_layer.owner import (
    Compacting,
    CompleteAsOf,
    ConversationOwner,
    Delivery,
    EventTime,
    release_when_final,
)
from routing_service.service_layer.ports import (
    CommandPublisher,
    DecisionPublisher,
    OwnerStore,
    PresenceStore,
    ReadStore,
    ViewStore,
)
from routing_service.service_layer.presence import (
    PresenceForwarder,
    PresenceRecord,
    PresenceRecorder,
)
from routing_service.service_layer.views import ViewWriter
from routing_service.settings import RoutingSettings

log = logging.getLogger(__name__)
SERVICE_NAME = "inbox.routing.v1.RoutingService"


class RoutingStore(OwnerStore, ViewStore, PresenceStore, ReadStore, Protocol):
    """Everything routing keeps in its database: MongoDB, or ``InMemoryStore`` in unit tests."""

    async def ensure_indexes(self) -> None: ...
    async def prune(self, now: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` documents whose retention ended; returns how many went."""

    async def prune_audit(self, now: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` archived audit segments expired at ``now``."""


class RoutingPublisher(
    DecisionPublisher,
    CommandPublisher,
    DispatchPublisher,
    ProposalPublisher,
    PresenceForwarder,
    Protocol,
):
    """Routing's one producer: ``KafkaPublisher``, or ``InMemoryPublisher`` in unit tests."""

    async def publish_raw(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: dict[str, str],
        partition: int | None = None,
    ) -> None:
        """Send bytes as they are (dead letters, repartitioning)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def partition_count(self, topic: str) -> int: ...


#: How long an idle fetch waits at the broker (every consumer but the owner's).
FETCH_MAX_WAIT_MS = 25
#: The owner's: an input is known complete as of the previous fetch response
#: (``CompletenessProbe``), so an idle partition's progress trails the wall clock by one to
#: two of these, and an R1 is final about L + 1-2 x this after its sign-out. 10 ms: the
#: sign-out -> R1 wait 30 ms shorter than at 25 ms (sweeps bench, 2026-12-03), for ~100 empty
#: fetches a second while idle (an idle instance's CPU 157 -> ~185 ms/s; with data the
#: fetches return at once anyway).
OWNER_FETCH_MAX_WAIT_MS = 10


def consumer_options(settings: RoutingSettings, fetch_max_wait_ms: int) -> dict[str, int]:
    """Routing answers within ms, so its fetches do not wait long for more data. The session
    timeout bounds how long a killed instance's partitions stay unowned (README, "Recovery");
    the take-over runs in the poll loop, which yields, so heartbeats go on during it."""
    return {
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
    }


def owner_sizing(settings: RoutingSettings) -> AdaptiveBatchSize | None:
    """The owner's batch size: small while it keeps up, up to the maximum while its backlog
    grows (None: always up to the maximum)."""
    if settings.owner_batch_target_ms == 0:
        return None
    return AdaptiveBatchSize(
        target_seconds=settings.owner_batch_target_ms / 1000,
        low=min(settings.owner_batch_min_records, settings.batch_max_records),
        high=settings.batch_max_records,
    )


async def every(
    seconds: float, lock: asyncio.Lock | None, action: Callable[[], Awaitable[object]]
) -> None:
    """Run ``action`` under ``lock`` (None: the action takes what it needs) every
    ``seconds``; a failure is logged and retried."""
    while True:
        await asyncio.sleep(seconds)
        async with lock or contextlib.nullcontext():
            try:
                await action()
            except Exception:
                log.warning("periodic %s failed; retrying", action, exc_info=True)


@dataclass
class Pipeline:
    """The consumers and what they feed, built together (and again after a crash of the set,
    so no state of a failed generation carries over)."""

    owner: ConversationOwner
    views: ViewWriter
    dispatcher: Dispatcher
    recorder: PresenceRecorder
    owner_loop: BatchConsumer
    presence_loop: BatchConsumer
    dispatch_loop: BatchConsumer
    owner_lock: asyncio.Lock
    presence_lock: asyncio.Lock
    #: ``RoutingSettings.roles``: which consumers this process runs.
    roles: tuple[str, ...] = ("owner", "dispatcher")

    @property
    def loops(self) -> list[BatchConsumer]:
        """The consumers this process runs (its roles')."""
        out = []
        if "owner" in self.roles:
            out += [self.owner_loop, self.presence_loop]
        if "dispatcher" in self.roles:
            out.append(self.dispatch_loop)
        return out


def pipeline(
    settings: RoutingSettings,
    store: RoutingStore,
    dispatch_store: MongoDispatchStore,
    publisher: RoutingPublisher,
    complete_as_of: CompleteAsOf | None = None,
) -> Pipeline:
    """``complete_as_of`` replaces the consumers' completeness probes (unit tests)."""
    owner_lock, presence_lock = asyncio.Lock(), asyncio.Lock()
    views = ViewWriter(store)
    raw_publish = publisher.publish_raw
    decoder = InboundDecoder(max_future_skew=settings.max_future_skew())

    async def handle_owned(batch: Batch) -> list[tuple[Record, Exception]]:
        records = {id(e): r for r, e in batch}
        outcome = await owner.handle([Delivery(r.topic, r.partition, e) for r, e in batch])
        return [(records[id(d.event)], exc) for d, exc in outcome.refused]

    async def handle_presence(batch: Batch) -> list[tuple[Record, Exception]]:
        records = {id(e): r for r, e in batch}
        refused = await recorder.handle([PresenceRecord(r.partition, e) for r, e in batch])
        return [(records[id(pr.event)], exc) for pr, exc in refused]

    async def assigned(parts: set[int]) -> None:
        await owner.assign(parts)

    async def revoked(parts: set[int]) -> None:
        await owner.revoke(parts)

    async def presence_assigned(parts: set[int]) -> None:
        recorder.assigned(parts)

    async def presence_revoked(parts: set[int]) -> None:
        recorder.revoked(parts)

    dispatcher = Dispatcher(
        dispatch_store, publisher, snapshot_seconds=settings.dispatch_snapshot_seconds
    )

    async def handle_dispatch(batch: Batch) -> None:
        await dispatcher.handle([DispatchRecord(r.partition, r.offset, e) for r, e in batch])

    async def seek(partition: int, offset: int | None) -> int:
        consumer = dispatch_loop.consumer
        assert consumer is not None
        tp = TopicPartition(ROUTING_DISPATCH.name, partition)
        if offset is not None:
            consumer.seek(tp, offset)
        elif settings.initial_offset == "earliest":
            await consumer.seek_to_beginning(tp)
        else:
            await consumer.seek_to_end(tp)
        return int(await consumer.position(tp))

    async def dispatch_assigned(parts: set[int]) -> None:
        await dispatcher.assign(parts, seek)

    async def dispatch_revoked(parts: set[int]) -> None:
        await dispatcher.revoke(parts)

    def group_consumer(
        name: str,
        topics: list[str],
        group: str,
        handler: BatchHandler,
        on_assigned: PartitionsCallback,
        on_revoked: PartitionsCallback,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
        **extra: Any,
    ) -> BatchConsumer:
        """One of routing's consumer groups: its dead letters, batch size and fetch options."""
        return BatchConsumer(
            name=name,
            bootstrap=settings.kafka_bootstrap_servers,
            topics=topics,
            group_id=group,
            handler=handler,
            dead_letters=DeadLetters(raw_publish, group),
            on_assigned=on_assigned,
            on_revoked=on_revoked,
            max_records=settings.batch_max_records,
            consumer_options=consumer_options(settings, fetch_max_wait_ms),
            # the commit's round trip overlaps the next batch (still after its batch, in order)
            overlap_commits=True,
            **extra,
        )

    owner_loop = group_consumer(
        "owner",
        [MESSAGES.name, CONVERSATIONS.name, ROUTING_COMMANDS.name, ROUTING_PROPOSALS.name],
        settings.consumer_group,
        handle_owned,
        assigned,
        revoked,
        initial_offset=settings.initial_offset,
        lock=owner_lock,
        decoder=decoder,
        repartition=raw_publish,
        # proposals and commands (relayed progress, sweeps) are few and each ends a wait:
        # they go ahead of a backlog of conversation events (README, "Owner batches")
        priority_topics=(ROUTING_PROPOSALS.name, ROUTING_COMMANDS.name),
        sizing=owner_sizing(settings),
        fetch_max_wait_ms=OWNER_FETCH_MAX_WAIT_MS,
    )
    owner = ConversationOwner(
        store,
        publisher,
        views,
        EventTime(
            settings.allowed_lateness,
            complete_as_of=complete_as_of or CompletenessProbe(owner_loop),
        ),
        AutoAssigner(publisher, store.timelines, batched=settings.dispatch_batched_changes),
        Compacting(
            lag=timedelta(seconds=settings.compaction_lag_seconds),
            max_conversations=settings.owner_max_conversations,
            audit=AuditRetention(
                keep=settings.audit_view_entries,
                retention=timedelta(days=settings.audit_retention_days),
            ),
        ),
        input_waiting=lambda: owner_loop.backlog() > 0,
    )
    views.yield_to(owner.acquire_yielding)
    presence_loop = group_consumer(
        "presence",
        [PRESENCE.name],
        settings.presence_consumer_group,
        handle_presence,
        presence_assigned,
        presence_revoked,
        initial_offset=settings.initial_offset,
        lock=presence_lock,
        decoder=decoder,
    )
    presence_probe = complete_as_of or CompletenessProbe(presence_loop)

    async def presence_complete_as_of(partition: int) -> datetime | None:
        return await presence_probe(PRESENCE.name, partition)

    recorder = PresenceRecorder(
        store,
        publisher,
        marks=MarkTracker(
            timeout=timedelta(milliseconds=settings.presence_mark_timeout_ms),
            lateness=settings.allowed_lateness,
        ),
        complete_as_of=presence_complete_as_of,
        dispatch=publisher,
        local_owner=owner,
    )
    dispatch_loop = group_consumer(
        "dispatcher",
        [ROUTING_DISPATCH.name],
        settings.dispatcher_consumer_group,
        handle_dispatch,
        dispatch_assigned,
        dispatch_revoked,
        # its position is its snapshot's: a commit per batch only fed monitoring
        commit_interval_seconds=settings.dispatch_commit_seconds,
    )
    return Pipeline(
        owner,
        views,
        dispatcher,
        recorder,
        owner_loop,
        presence_loop,
        dispatch_loop,
        owner_lock,
        presence_lock,
        tuple(settings.roles.split(",")),
    )


@dataclass
class Routing(Service):
    """Everything bootstrap built, for tests that want to look inside."""

    store: RoutingStore
    publisher: RoutingPublisher
    dispatch_store: MongoDispatchStore
    pipeline: Pipeline

    @property
    def owner(self) -> ConversationOwner:
        return self.pipeline.owner

    @property
    def views(self) -> ViewWriter:
        return self.pipeline.views

    @property
    def dispatcher(self) -> Dispatcher:
        return self.pipeline.dispatcher

    @property
    def loops(self) -> list[BatchConsumer]:
        return self.pipeline.loops

    async def ready(self, timeout: float = 30.0) -> None:
        """All consumers have partitions with resolved positions."""
        for loop in self.loops:
            await loop.ready(timeout)


def bootstrap(
    settings: RoutingSettings,
    *,
    store: RoutingStore | None = None,
    publisher: RoutingPublisher | None = None,
    complete_as_of: CompleteAsOf | None = None,
) -> Routing:
    """Build the service, not started and without I/O. Unit tests replace the MongoDB store,
    the Kafka publisher and the consumers' completeness probes (the consumers themselves and
    the dispatcher's store stay real, unconnected until ``start()``)."""
    client, db = connect(settings)
    store = store or MongoRoutingStore(
        db,
        decision_retention=timedelta(hours=settings.decision_retention_hours),
        timeline_retention=timedelta(hours=settings.presence_timeline_retention_hours),
        settings_retention=timedelta(hours=settings.settings_history_retention_hours),
    )
    dispatch_store = MongoDispatchStore(db)
    publisher = publisher or KafkaPublisher(settings.kafka_bootstrap_servers)
    grpc_server = GrpcServer(
        [
            ServiceRegistration(
                SERVICE_NAME,
                routing_pb2_grpc.add_RoutingServiceServicer_to_server,
                RoutingServicer(store, dispatch_store, publisher),
            )
        ],
        verifier=verifier_from_settings(settings),
        host=settings.grpc_host,
        port=settings.grpc_port,
    )
    routing = Routing(
        runtime=ServiceRuntime(
            "routing",
            grpc_server,
            shutdown_grace_seconds=settings.shutdown_grace_seconds,
            dependencies=standard_checks(
                settings.mongodb_uri, settings.kafka_bootstrap_servers, client_id="routing"
            ),
        ),
        store=store,
        publisher=publisher,
        dispatch_store=dispatch_store,
        pipeline=pipeline(settings, store, dispatch_store, publisher, complete_as_of),
    )
    generations = 0

    async def consume() -> None:
        nonlocal generations
        if generations:  # restarted after a crash: a fresh set, as at the first start
            routing.pipeline = pipeline(settings, store, dispatch_store, publisher, complete_as_of)
        generations += 1
        p = routing.pipeline
        await store.ensure_indexes()
        await publisher.start()
        try:
            p.recorder.partition_counts(
                await publisher.partition_count(MESSAGES.name),
                await publisher.partition_count(PRESENCE.name),
                await publisher.partition_count(ROUTING_DISPATCH.name),
            )
            tick = settings.progress_tick_ms / 1000
            prune_lock = asyncio.Lock()

            async def prune() -> None:
                # bounded per run; the backlog of a long outage drains over several runs
                await store.prune(utc_now(), limit=settings.retention_batch)
                await store.prune_audit(utc_now(), limit=settings.retention_batch)

            loops = []
            if settings.runs("owner"):
                loops += [
                    asyncio.create_task(p.owner_loop.run()),
                    asyncio.create_task(p.presence_loop.run()),
                    asyncio.create_task(p.views.run()),
                    asyncio.create_task(release_when_final(p.owner, p.owner_lock, tick)),
                    asyncio.create_task(
                        every(
                            settings.compaction_interval_seconds,
                            None,
                            lambda: p.owner.compact(lock=p.owner_lock),
                        )
                    ),
                    asyncio.create_task(
                        every(settings.retention_interval_seconds, prune_lock, prune)
                    ),
                    asyncio.create_task(every(tick, p.presence_lock, p.recorder.relay)),
                ]
            if settings.runs("dispatcher"):
                loops += [
                    asyncio.create_task(p.dispatch_loop.run()),
                    asyncio.create_task(p.dispatcher.run()),
                ]
            try:
                # not gather: a cancelled gather cancels every loop, and the second cancel
                # below then interrupted the consumers' own stop (they stayed in their groups,
                # fetching and heartbeating, after the runtime had stopped)
                done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                # if one loop failed, the others go with it (the runtime restarts the set)
                # instead of running on without a producer
                for task in loops:
                    task.cancel()
                # the consumers leave their groups (revoke callbacks take the locks) before
                # the producer stops; bounded, so a stuck leave cannot hold up the shutdown
                await asyncio.wait(loops, timeout=10)
        finally:
            with contextlib.suppress(Exception):
                await publisher.stop()

    async def close_client() -> None:
        await client.close()

    routing.runtime.background.append(consume)
    routing.runtime.cleanups.append(close_client)
    return routing
