"""Wire the presence service. Nothing connects at import time."""

from __future__ import annotations

from inbox.presence.v1 import presence_pb2_grpc as pb_grpc
from inbox_kit.auth import verifier_from_settings
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_kit.kafka import EventPublisher
from inbox_kit.mongo import connect
from inbox_kit.readiness import standard_checks
from inbox_kit.runtime import ServiceRuntime

from presence_service.adapters.kafka import KafkaEventPublisher
from presence_service.adapters.mongo import MongoPresenceStore
from presence_service.adapters.write_gate import WriteGate
from presence_service.entrypoints.background import relay, sweeper
from presence_service.entrypoints.grpc_api import PresenceServicer
from presence_service.service_layer import handlers
from presence_service.service_layer.handlers import Presence
from presence_service.settings import PresenceSettings

SERVICE_NAME = "inbox.presence.v1.PresenceService"


async def bootstrap(settings: PresenceSettings | None = None) -> tuple[ServiceRuntime, Presence]:
    """Build the runtime (not started) and the handlers' context."""
    settings = settings or PresenceSettings()
    client, db = connect(settings)
    store = MongoPresenceStore(db, WriteGate(settings.mongodb_write_concurrency))
    await store.ensure_indexes()
    presence = Presence(store=store, timing=settings.timing())
    # Detect a full outage before serving: heartbeats that arrive now must not be judged
    # against deadlines that passed while nobody could heartbeat.
    await handlers.refresh_liveness(presence, settings.outage_threshold())

    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id="presence")
    background = [sweeper(presence, settings)]
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

    runtime = ServiceRuntime(
        name="presence",
        grpc=grpc_server,
        publisher=publisher,
        background=background,
        cleanups=[close_mongo],
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        dependencies=standard_checks(
            client, settings.kafka_bootstrap_servers, client_id="presence"
        ),
    )
    return runtime, presence
