"""Wire the presence service. Nothing connects at import time."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from inbox.presence.v1 import presence_pb2_grpc as pb_grpc
from inbox_kit.auth import verifier_from_settings
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_kit.kafka import EventPublisher
from inbox_kit.mongo import connect
from inbox_kit.readiness import standard_checks
from inbox_kit.runtime import ServiceRuntime
from inbox_kit.service import Service

from presence_service.adapters.group_commit import Linger
from presence_service.adapters.kafka import KafkaEventPublisher, KafkaProgressPublisher
from presence_service.adapters.mongo import MongoPresenceStore
from presence_service.adapters.write_gate import WriteGate
from presence_service.entrypoints.background import (
    expirer,
    head_cache_warmer,
    persister,
    progress_marks,
    relay,
    retention,
    sweeper,
)
from presence_service.entrypoints.grpc_api import PresenceServicer
from presence_service.service_layer import handlers, marks
from presence_service.service_layer.handlers import Presence
from presence_service.service_layer.ports import PresenceStore
from presence_service.settings import PresenceSettings

SERVICE_NAME = "inbox.presence.v1.PresenceService"


@dataclass
class PresenceService(Service):
    presence: Presence


def bootstrap(
    settings: PresenceSettings,
    *,
    store: PresenceStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> PresenceService:
    """Build the service, not started and without I/O. ``store`` replaces the MongoDB store
    and ``clock`` the wall clock (unit tests)."""
    client, db = connect(settings)
    replica_id = uuid.uuid4().hex
    mongo_store = MongoPresenceStore(
        db,
        WriteGate(settings.mongodb_write_concurrency),
        replica_id,
        linger=Linger(settings.group_commit_linger_ms / 1000),
    )
    presence = Presence(
        store=store or mongo_store,
        timing=settings.timing(),
        replica_id=replica_id,
        replica_ttl=timedelta(seconds=settings.progress_replica_ttl_seconds),
        retention=timedelta(seconds=settings.retention_seconds),
        joined=False,
    )
    if clock is not None:
        presence.clock = clock

    async def prepare() -> None:
        if store is None:
            await mongo_store.ensure_indexes()
            await mongo_store.ensure_ttl_indexes(timedelta(seconds=settings.retention_seconds))
        # Detect a full outage before serving: heartbeats that arrive now must not be judged
        # against deadlines that passed while nobody could heartbeat.
        await handlers.refresh_liveness(presence, settings.outage_threshold())
        # Known as a replica before claiming anything: the progress marks wait for its floor,
        # and the marks publisher has seen it before it serves (``handlers.join``).
        await handlers.report_floor(presence)
        await handlers.join(presence)

    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id="presence")
    progress = KafkaProgressPublisher(publisher) if settings.publish_enabled else None
    background = [
        sweeper(presence, settings),
        expirer(presence),
        head_cache_warmer(presence),
        persister(presence, settings),
        progress_marks(presence, progress, settings),
        retention(presence, settings),
    ]
    if settings.publish_enabled:
        background.append(relay(presence, KafkaEventPublisher(publisher), settings))

    grpc_server = GrpcServer(
        [
            ServiceRegistration(
                SERVICE_NAME,
                pb_grpc.add_PresenceServiceServicer_to_server,
                PresenceServicer(presence),
            )
        ],
        verifier=verifier_from_settings(settings),
        host=settings.grpc_host,
        port=settings.grpc_port,
    )

    async def close_mongo() -> None:
        await client.close()

    async def write_back_heartbeats() -> None:  # a graceful stop loses no heartbeat progress
        await presence.settle()
        await handlers.persist_progress(presence, everything=True)
        await marks.leave(presence)

    runtime = ServiceRuntime(
        name="presence",
        startup=[prepare],
        grpc=grpc_server,
        publisher=publisher,
        background=background,
        cleanups=[close_mongo, write_back_heartbeats],
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        dependencies=standard_checks(
            settings.mongodb_uri, settings.kafka_bootstrap_servers, client_id="presence"
        ),
    )
    return PresenceService(runtime, presence)
