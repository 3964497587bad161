"""Wire the replies service: one function builds every component; nothing connects before
``start()``."""

from __future__ import annotations

from dataclasses import dataclass

from inbox.replies.v1 import replies_pb2_grpc
from inbox_contracts.topics import REPLIES
from inbox_kit.auth import verifier_from_settings
from inbox_kit.batch_consumer import BatchConsumer, per_event
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_kit.inbound import InboundDecoder
from inbox_kit.kafka import DeadLetters, EventPublisher
from inbox_kit.mongo import connect
from inbox_kit.readiness import standard_checks
from inbox_kit.runtime import BackgroundTask, ServiceRuntime
from inbox_kit.service import Service

from replies_service.adapters.contacts_grpc import GrpcContactDirectory
from replies_service.adapters.kafka import KafkaUsagePublisher
from replies_service.adapters.mongo import MongoReplyStore
from replies_service.entrypoints.consumer import usage_handler
from replies_service.entrypoints.grpc_api import RepliesServicer
from replies_service.service_layer.handlers import Deps
from replies_service.service_layer.ports import ContactDirectory, ReplyStore, UsagePublisher
from replies_service.service_layer.search_index import SearchIndex
from replies_service.settings import RepliesSettings

SERVICE_FULL_NAME = "inbox.replies.v1.RepliesService"


@dataclass
class App(Service):
    deps: Deps


def bootstrap(
    settings: RepliesSettings,
    *,
    store: ReplyStore | None = None,
    contacts: ContactDirectory | None = None,
    usage_publisher: UsagePublisher | None = None,
) -> App:
    """Build the service, not started and without I/O; ``store``, ``contacts`` and
    ``usage_publisher`` replace the MongoDB store, the contacts client and the Kafka publisher
    (unit tests)."""
    client, db = connect(settings)
    mongo_store = MongoReplyStore(db)
    background: list[BackgroundTask] = []
    if store is None:
        store = mongo_store

        async def ensure_indexes() -> None:
            await mongo_store.ensure_indexes()

        # in the background: a database outage at start is retried, not fatal
        background.append(ensure_indexes)
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id=settings.service_name)
    contacts_client = GrpcContactDirectory(
        settings.contacts_address, timeout_seconds=settings.contacts_timeout_seconds
    )
    contacts = contacts or contacts_client
    index = SearchIndex(
        store,
        max_orgs=settings.index_max_orgs,
        usage_refresh_seconds=settings.usage_refresh_seconds,
        usage_full_refresh_seconds=settings.usage_full_refresh_seconds,
        revision_max_age_seconds=settings.revision_max_age_seconds,
    )
    deps = Deps(
        store=store,
        index=index,
        contacts=contacts,
        publisher=usage_publisher or KafkaUsagePublisher(publisher),
    )
    usage = BatchConsumer(
        name="usage",
        bootstrap=settings.kafka_bootstrap_servers,
        topics=[REPLIES.name],
        group_id=settings.consumer_group,
        handler=per_event(usage_handler(deps)),
        dead_letters=DeadLetters(publisher.publish_raw, settings.consumer_group),
        decoder=InboundDecoder(max_future_skew=settings.max_future_skew()),
    )
    background.append(usage.run)
    grpc_server = GrpcServer(
        [
            ServiceRegistration(
                SERVICE_FULL_NAME,
                replies_pb2_grpc.add_RepliesServiceServicer_to_server,
                RepliesServicer(deps),
            )
        ],
        verifier=verifier_from_settings(settings),
        host=settings.grpc_host,
        port=settings.grpc_port,
    )

    async def close() -> None:
        await index.close()
        await contacts_client.close()
        await client.close()

    runtime = ServiceRuntime(
        name=settings.service_name,
        grpc=grpc_server,
        publisher=publisher,
        background=background,
        cleanups=[close],
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        dependencies=standard_checks(
            settings.mongodb_uri, settings.kafka_bootstrap_servers, client_id=settings.service_name
        ),
    )
    return App(runtime, deps)
