"""Wire the contacts service: one function builds every component; nothing connects before
``start()``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from inbox.contacts.v1 import contacts_pb2_grpc
from inbox_kit.auth import verifier_from_settings
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from inbox_kit.inbound import InboundDecoder
from inbox_kit.kafka import EventPublisher
from inbox_kit.mongo import connect
from inbox_kit.readiness import standard_checks
from inbox_kit.runtime import BackgroundTask, ServiceRuntime
from inbox_kit.service import Service

from contacts_service.adapters.contact_cache import ContactCache
from contacts_service.adapters.mongo import MongoContactRepository, MongoDefinitionsRepository
from contacts_service.entrypoints.change_feed import ChangeFeed
from contacts_service.entrypoints.consumer import ProfileConsumer
from contacts_service.entrypoints.grpc_api import SERVICE_NAME, ContactsServicer
from contacts_service.service_layer.contacts import ContactsService, ProfileIngestion
from contacts_service.service_layer.definitions import DefinitionsCache, DefinitionsService
from contacts_service.service_layer.ports import ContactRepository, DefinitionsRepository
from contacts_service.settings import ContactsSettings


@dataclass
class Contacts(Service):
    consumer: ProfileConsumer | None
    change_feed: ChangeFeed | None
    contact_cache: ContactCache
    contacts: ContactsService
    definitions: DefinitionsService
    ingestion: ProfileIngestion


def bootstrap(
    settings: ContactsSettings,
    *,
    contacts_repo: ContactRepository | None = None,
    definitions_repo: DefinitionsRepository | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Contacts:
    """Build the service, not started and without I/O; the repositories replace the MongoDB
    ones and ``clock`` the monotonic clock of the caches (unit tests)."""
    client, db = connect(settings)
    definitions_repo = definitions_repo or MongoDefinitionsRepository(db)
    contact_cache = ContactCache(
        max_entries=settings.cache_max_entries, max_age=settings.cache_max_age_seconds, clock=clock
    )
    contacts_repo = contacts_repo or MongoContactRepository(db, cache=contact_cache)
    cache = DefinitionsCache(definitions_repo, ttl=settings.definitions_cache_seconds, clock=clock)
    contacts = ContactsService(contacts_repo, cache)
    definitions = DefinitionsService(definitions_repo, cache)
    ingestion = ProfileIngestion(
        contacts_repo, DefinitionsCache(definitions_repo, ttl=1.0, clock=clock)
    )
    servicer = ContactsServicer(contacts, definitions)
    grpc = GrpcServer(
        [
            ServiceRegistration(
                SERVICE_NAME, contacts_pb2_grpc.add_ContactsServiceServicer_to_server, servicer
            )
        ],
        verifier=verifier_from_settings(settings),
        host=settings.grpc_host,
        port=settings.grpc_port,
    )
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id="contacts")
    decoder = InboundDecoder(max_future_skew=settings.max_future_skew())
    consumer = None
    background: list[BackgroundTask] = []
    if settings.consume:
        consumer = ProfileConsumer.over(
            publisher,
            ingestion,
            decoder=decoder,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.consumer_group,
            max_batch=settings.consumer_max_batch,
            offset_reset=settings.consumer_offset_reset,
        )
        background.append(consumer.run)
    change_feed = None
    if settings.cache_max_entries:
        change_feed = ChangeFeed(
            contact_cache, bootstrap_servers=settings.kafka_bootstrap_servers, decoder=decoder
        )
        background.append(change_feed.run)

    async def close_db() -> None:
        await client.close()

    runtime = ServiceRuntime(
        name="contacts",
        grpc=grpc,
        publisher=publisher if consumer is not None else None,
        background=background,
        cleanups=[close_db],
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        dependencies=standard_checks(
            settings.mongodb_uri, settings.kafka_bootstrap_servers, client_id="contacts"
        ),
    )
    return Contacts(runtime, consumer, change_feed, contact_cache, contacts, definitions, ingestion)
