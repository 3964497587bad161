"""Wire the routing service: Mongo store, Kafka publisher and consumers, gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from inbox.routing.v1 import routing_pb2_grpc
from inbox_contracts.topics import (
    CONVERSATIONS,
    MESSAGES,
    PRESENCE,
    ROUTING_COMMANDS,
    ROUTING_DISPATCH,
    ROUTING_PROPOSALS,
)
from inbox_kit.auth import verifier_from_settings
from inbox_kit.batch_consumer import Batch, BatchConsumer
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_kit.inbound import InboundDecoder
from inbox_kit.kafka import DeadLetters
from inbox_kit.mongo import connect
from inbox_kit.readiness import standard_checks
from inbox_kit.runtime import ServiceRuntime

from routing_service.adapters.dispatch_store import MongoDispatchStore
from routing_service.adapters.kafka import KafkaPublisher
from routing_service.adapters.mongo import MongoRoutingStore
from routing_service.entrypoints.grpc_api import RoutingServicer
from routing_service.service_layer.auto_assign import AutoAssigner
from routing_service.service_layer.dispatcher import Dispatcher, DispatchRecord
from routing_service.service_layer.owner import ConversationOwner, Delivery
from routing_service.service_layer.presence import PresenceRecorder
from routing_service.service_layer.views import ViewWriter
from routing_service.settings import RoutingSettings

log = logging.getLogger(__name__)
SERVICE_NAME = "inbox.routing.v1.RoutingService"
#: Routing answers within ms, so its fetches do not wait long for more data; the heartbeat is
#: frequent and the session generous because a take-over can hold the loop for seconds.
LOW_LATENCY = {"fetch_max_wait_ms": 50, "session_timeout_ms": 30000, "heartbeat_interval_ms": 1000}


@dataclass
class Routing:
    """Everything bootstrap built, for tests that want to look inside."""

    runtime: ServiceRuntime
    store: MongoRoutingStore
    publisher: KafkaPublisher
    dispatch_store: MongoDispatchStore
    owner: ConversationOwner | None = None
    views: ViewWriter | None = None
    dispatcher: Dispatcher | None = None
    loops: list[BatchConsumer] = field(default_factory=list)

    async def ready(self, timeout: float = 30.0) -> None:
        """All consumers have partitions with resolved positions."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.loops) < 3:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("routing consumers did not start")
            await asyncio.sleep(0.05)
        for loop in self.loops:
            await loop.ready(timeout)


def build(settings: RoutingSettings) -> Routing:
    client, db = connect(settings)
    store = MongoRoutingStore(db)
    dispatch_store = MongoDispatchStore(db)
    publisher = KafkaPublisher(settings.kafka_bootstrap_servers)
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
                client, settings.kafka_bootstrap_servers, client_id="routing"
            ),
        ),
        store=store,
        publisher=publisher,
        dispatch_store=dispatch_store,
    )

    async def consume() -> None:
        await store.ensure_indexes()
        await publisher.start()
        try:
            partitions = await publisher.producer.partitions_for(MESSAGES.name)
            owner_lock = asyncio.Lock()
            views = ViewWriter(store, exclusive=owner_lock)
            routing.views = views
            assigner = AutoAssigner(publisher, store.timelines)
            owner = ConversationOwner(store, publisher, views, assigner)
            routing.owner = owner
            recorder = PresenceRecorder(store, publisher, len(partitions), publisher)
            dispatcher = Dispatcher(
                dispatch_store,
                publisher,
                snapshot_seconds=settings.dispatch_snapshot_seconds,
            )
            routing.dispatcher = dispatcher
            raw_publish = publisher.publish_raw
            decoder = InboundDecoder(max_future_skew=settings.max_future_skew())

            async def handle_owned(batch: Batch) -> None:
                await owner.handle([Delivery(r.partition, e) for r, e in batch])

            async def handle_presence(batch: Batch) -> None:
                await recorder.handle([e for _, e in batch])

            async def assigned(parts: set[int]) -> None:
                await owner.assign(parts)

            async def revoked(parts: set[int]) -> None:
                await owner.revoke(parts)

            async def handle_dispatch(batch: Batch) -> None:
                await dispatcher.handle(
                    [DispatchRecord(r.partition, r.offset, e) for r, e in batch]
                )

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

            owner_loop = BatchConsumer(
                name="owner",
                bootstrap=settings.kafka_bootstrap_servers,
                topics=[
                    MESSAGES.name,
                    CONVERSATIONS.name,
                    ROUTING_COMMANDS.name,
                    ROUTING_PROPOSALS.name,
                ],
                group_id=settings.consumer_group,
                handler=handle_owned,
                dead_letters=DeadLetters(raw_publish, settings.consumer_group),
                on_assigned=assigned,
                on_revoked=revoked,
                max_records=settings.batch_max_records,
                initial_offset=settings.initial_offset,
                lock=owner_lock,
                consumer_options=LOW_LATENCY,
                decoder=decoder,
                repartition=raw_publish,
            )
            routing.loops = [owner_loop]
            presence_loop = BatchConsumer(
                name="presence",
                bootstrap=settings.kafka_bootstrap_servers,
                topics=[PRESENCE.name],
                group_id=settings.presence_consumer_group,
                handler=handle_presence,
                dead_letters=DeadLetters(raw_publish, settings.presence_consumer_group),
                max_records=settings.batch_max_records,
                initial_offset=settings.initial_offset,
                consumer_options=LOW_LATENCY,
                decoder=decoder,
            )
            routing.loops.append(presence_loop)
            dispatch_loop = BatchConsumer(
                name="dispatcher",
                bootstrap=settings.kafka_bootstrap_servers,
                topics=[ROUTING_DISPATCH.name],
                group_id=settings.dispatcher_consumer_group,
                handler=handle_dispatch,
                dead_letters=DeadLetters(raw_publish, settings.dispatcher_consumer_group),
                on_assigned=dispatch_assigned,
                on_revoked=dispatch_revoked,
                max_records=settings.batch_max_records,
                initial_offset="earliest",
                consumer_options=LOW_LATENCY,
            )
            routing.loops.append(dispatch_loop)
            await asyncio.gather(
                owner_loop.run(),
                presence_loop.run(),
                dispatch_loop.run(),
                views.run(),
                dispatcher.run(),
            )
        finally:
            with contextlib.suppress(Exception):
                await publisher.stop()

    async def close_client() -> None:
        await client.close()

    routing.runtime.background.append(consume)
    routing.runtime.cleanups.append(close_client)
    return routing
