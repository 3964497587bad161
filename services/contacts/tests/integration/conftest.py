"""One in-process contacts service (gRPC + consumer) for the integration tests.

Tests isolate themselves by unique org ids; the service has its own database and a unique
consumer group that starts at the end of the topic.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from contacts_service.bootstrap import Contacts, bootstrap
from contacts_service.settings import ContactsSettings
from inbox.contacts.v1 import contacts_pb2_grpc
from inbox_contracts import CloudEvent
from inbox_contracts.events import ChannelIdentity, ContactProfileUpserted
from inbox_contracts.topics import CONTACTS
from inbox_testing import Infra
from pymongo import AsyncMongoClient


@dataclass
class Running:
    service: Contacts
    address: str
    settings: ContactsSettings


def settings_for(infra: Infra, secret: str, database: str, **overrides: Any) -> ContactsSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap,
        "mongodb_uri": infra.mongodb_uri,
        "mongodb_database": database,
        "grpc_port": 0,
        "metrics_port": 0,
        "jwt_secret": secret,
        "consumer_group": f"contacts-test-{uuid.uuid4().hex[:8]}",
        "consumer_offset_reset": "latest",
        "shutdown_grace_seconds": 0.5,
    }
    values.update(overrides)
    return ContactsSettings(**values)


@pytest.fixture(scope="session")
async def contacts_db_name(infra: Infra) -> AsyncIterator[str]:
    name = f"test_contacts_{uuid.uuid4().hex[:10]}"
    yield name
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    await client.drop_database(name)
    await client.close()


@pytest.fixture(scope="session")
async def running(infra: Infra, jwt_secret: str, contacts_db_name: str) -> AsyncIterator[Running]:
    settings = settings_for(infra, jwt_secret, contacts_db_name)
    service = bootstrap(settings)
    await service.runtime.start()
    assert service.consumer is not None
    assert service.change_feed is not None
    await service.consumer.ready(timeout=30)
    await asyncio.wait_for(service.change_feed.ready.wait(), timeout=30)
    yield Running(service, service.runtime.grpc.address, settings)
    await service.runtime.stop()


Replica = tuple[Contacts, contacts_pb2_grpc.ContactsServiceStub]


@pytest.fixture
def second_replica(
    running: Running, infra: Infra, jwt_secret: str
) -> Callable[..., AbstractAsyncContextManager[Replica]]:
    """Starts another replica on the same database — without a profile consumer, so it learns
    of changes only through the database and the change feed — and a stub for it."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Replica]:
        settings = settings_for(
            infra, jwt_secret, running.settings.mongodb_database, consume=False, **overrides
        )
        other = bootstrap(settings)
        await other.runtime.start()
        try:
            if other.change_feed is not None:
                await asyncio.wait_for(other.change_feed.ready.wait(), timeout=30)
            async with grpc.aio.insecure_channel(other.runtime.grpc.address) as channel:
                yield other, contacts_pb2_grpc.ContactsServiceStub(channel)
        finally:
            await other.runtime.stop()

    return start


@pytest.fixture
async def stub(running: Running) -> AsyncIterator[contacts_pb2_grpc.ContactsServiceStub]:
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield contacts_pb2_grpc.ContactsServiceStub(channel)


@pytest.fixture(scope="session")
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await p.start()
    yield p
    await p.stop()


Publish = Callable[..., Any]


@pytest.fixture
def publish(producer: AIOKafkaProducer) -> Publish:
    async def send(
        org_id: str,
        contact_id: str,
        attributes: dict[str, Any],
        *,
        identities: tuple[tuple[str, str], ...] = (),
        at: datetime | None = None,
        event_id: str | None = None,
    ) -> CloudEvent[ContactProfileUpserted]:
        data = ContactProfileUpserted(
            org_id=org_id,
            contact_id=contact_id,
            attributes=attributes,
            identities=[ChannelIdentity(channel=c, handle=h) for c, h in identities],
            occurred_at=at or datetime.now(UTC),
        )
        event = CloudEvent.wrap(data, source="/tests/contacts", event_id=event_id)
        await producer.send_and_wait(CONTACTS.name, event.to_json_bytes(), key=event.key)
        return event

    return send
