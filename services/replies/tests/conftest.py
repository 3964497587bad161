"""Fixtures of the replies integration and e2e tests: the replies service in-process (real
gRPC server, FerretDB, Kafka), the real contacts service as a subprocess, contact seeding."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from inbox.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from inbox.replies.v1 import replies_pb2_grpc
from inbox_contracts import CloudEvent, utc_now
from inbox_contracts.events import ContactProfileUpserted
from inbox_contracts.topics import CONTACTS
from inbox_kit.kafka import EventPublisher
from inbox_testing import (
    TEST_JWT_SECRET,
    Infra,
    bearer,
    free_port,
    stop_process,
    wait_serving,
    wait_until,
)
from pymongo import AsyncMongoClient, MongoClient
from replies_service.bootstrap import App, bootstrap
from replies_service.settings import RepliesSettings


@dataclass
class ContactsProcess:
    address: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def wait_healthy() -> Callable[[str, subprocess.Popen[bytes]], None]:
    return wait_serving


@pytest.fixture(scope="session")
def contacts_service(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContactsProcess]:
    port = free_port()
    db = f"test_contacts_{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "CONTACTS_GRPC_PORT": str(port),
        "CONTACTS_METRICS_PORT": "0",
        "CONTACTS_MONGODB_DATABASE": db,
        "CONTACTS_MONGODB_URI": infra.mongodb_uri,
        "CONTACTS_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "CONTACTS_JWT_SECRET": TEST_JWT_SECRET,
        "CONTACTS_CONSUMER_GROUP": f"replies-tests-{uuid.uuid4().hex[:8]}",
        "CONTACTS_CONSUMER_OFFSET_RESET": "latest",
        "CONTACTS_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path_factory.mktemp("contacts") / "contacts.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "contacts_service"], env=env, stdout=log, stderr=log
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, process)
        yield ContactsProcess(address, process)
    finally:
        stop_process(process)
        log.close()
        with MongoClient[dict[str, Any]](infra.mongodb_uri) as client:
            client.drop_database(db)


@pytest.fixture(scope="session")
async def replies_app(infra: Infra, contacts_service: ContactsProcess) -> AsyncIterator[App]:
    db = f"test_replies_{uuid.uuid4().hex[:10]}"
    settings = RepliesSettings(
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=db,
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        grpc_port=0,
        metrics_port=0,
        jwt_secret=TEST_JWT_SECRET,
        consumer_group=f"replies-tests-{uuid.uuid4().hex[:8]}",
        contacts_address=contacts_service.address,
        usage_refresh_seconds=0.2,
    )
    app = bootstrap(settings)
    await app.runtime.start()
    try:
        yield app
    finally:
        await app.runtime.stop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
        await client.drop_database(db)
        await client.close()


@pytest.fixture(scope="session")
async def replies(replies_app: App) -> AsyncIterator[replies_pb2_grpc.RepliesServiceAsyncStub]:
    async with grpc.aio.insecure_channel(replies_app.runtime.grpc.address) as channel:
        yield replies_pb2_grpc.RepliesServiceStub(channel)


@pytest.fixture(scope="session")
async def seed_contact(infra: Infra, contacts_service: ContactsProcess) -> AsyncIterator[Any]:
    """Publish a ContactProfileUpserted and wait until the contacts API returns it."""
    publisher = EventPublisher(infra.kafka_bootstrap, client_id="replies-tests")
    await publisher.start()
    channel = grpc.aio.insecure_channel(contacts_service.address)
    stub = contacts_pb2_grpc.ContactsServiceStub(channel)

    async def seed(org_id: str, contact_id: str, attributes: dict[str, Any], token: str) -> None:
        event = CloudEvent.wrap(
            ContactProfileUpserted(
                org_id=org_id, contact_id=contact_id, attributes=attributes, occurred_at=utc_now()
            ),
            source="/tests/replies",
        )

        async def present() -> bool:
            # republish until seen: the contacts consumer starts at "latest" and may not have
            # joined its group when the first copy was produced (upserts are idempotent)
            await publisher.publish(CONTACTS, event)
            try:
                got = await stub.BatchGetContacts(
                    contacts_pb2.BatchGetContactsRequest(contact_ids=[contact_id]),
                    metadata=bearer(token),
                    timeout=2,
                )
            except grpc.aio.AioRpcError:
                return False
            return any(c.contact_id == contact_id for c in got.contacts)

        await wait_until(present, timeout=60, interval=0.5)

    try:
        yield seed
    finally:
        await channel.close(None)
        await publisher.stop()
