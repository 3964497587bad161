"""The real process: start ``python -m contacts_service``, talk to it over Kafka and gRPC."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from inbox.contacts.v1 import contacts_pb2 as pb
from inbox.contacts.v1 import contacts_pb2_grpc
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactProfileUpserted
from inbox_contracts.topics import CONTACTS
from inbox_testing import Infra, bearer, free_port, wait_until
from pymongo import MongoClient

pytestmark = [pytest.mark.e2e, pytest.mark.infra]


@pytest.fixture
def process(infra: Infra, jwt_secret: str) -> Iterator[str]:
    port, database = free_port(), f"test_contacts_e2e_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CONTACTS_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "CONTACTS_MONGODB_URI": infra.mongodb_uri,
        "CONTACTS_MONGODB_DATABASE": database,
        "CONTACTS_GRPC_PORT": str(port),
        "CONTACTS_METRICS_PORT": "0",
        "CONTACTS_JWT_SECRET": jwt_secret,
        "CONTACTS_CONSUMER_GROUP": f"contacts-e2e-{uuid.uuid4().hex[:8]}",
        "CONTACTS_CONSUMER_OFFSET_RESET": "latest",
        "CONTACTS_SHUTDOWN_GRACE_SECONDS": "1",
    }
    proc = subprocess.Popen([sys.executable, "-m", "contacts_service"], env=env)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0, "the service should stop cleanly on SIGTERM"
        finally:
            if proc.poll() is None:
                proc.kill()
            client: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_uri)
            client.drop_database(database)
            client.close()


async def test_profile_event_reaches_the_card_of_the_running_process(
    process: str, infra: Infra, make_token: Any, unique: Callable[[str], str]
) -> None:
    org, contact = unique("org"), unique("contact")
    token = make_token(org, "agent-1")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        async with grpc.aio.insecure_channel(process) as channel:
            stub = contacts_pb2_grpc.ContactsServiceStub(channel)

            async def card() -> pb.ContactCard | None:
                # Re-publish until the consumer (which starts at the end) has joined.
                event = CloudEvent.wrap(
                    ContactProfileUpserted(
                        org_id=org,
                        contact_id=contact,
                        attributes={"name": "Zoe", "membership": "gold"},
                        occurred_at=datetime(2026, 11, 25, tzinfo=UTC),
                    ),
                    source="/tests/contacts",
                    event_id="e2e-1",
                )
                await producer.send_and_wait(CONTACTS.name, event.to_json_bytes(), key=event.key)
                try:
                    return await stub.GetContactCard(
                        pb.GetContactCardRequest(contact_id=contact), metadata=bearer(token)
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                        return None
                    raise

            result: pb.ContactCard = await wait_until(card, timeout=60, interval=0.5)
    finally:
        await producer.stop()
    assert {f.key: f.value.display for f in result.fields if f.has_value} == {
        "name": "Zoe",
        "membership": "gold",
    }
