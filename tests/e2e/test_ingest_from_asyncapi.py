"""An outside ingestor, coded from ``docs/asyncapi.yaml`` alone: no import of our event models.

For every event type on a topic that an outside producer writes (``x-producers`` of the
channel), build an event from the document's example, validate it against the document's
payload schema, publish it with a librdkafka producer (confluent-kafka, configured with the
partitioner the document asks for), and see it applied through the services' gRPC reads.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from confluent_kafka import Producer
from inbox.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from inbox.routing.v1 import routing_pb2, routing_pb2_grpc
from inbox_testing import Infra, bearer, free_port, stop_process, wait_serving, wait_until
from jsonschema import Draft202012Validator
from pymongo import MongoClient

pytestmark = [pytest.mark.e2e, pytest.mark.infra]

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
OUR_SERVICES = {"presence", "routing", "contacts", "replies"}
QUEUE = routing_pb2.ConversationQueue


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return spec


def _deref(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _ingestor_messages(spec: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """CloudEvents type -> (topic, message) for every channel an outside producer writes."""
    found = {}
    for channel in spec["channels"].values():
        if not set(channel.get("x-producers", [])) - OUR_SERVICES:
            continue
        for ref in channel["messages"].values():
            message = _deref(spec, ref["$ref"])
            found[message["name"]] = (channel["address"], message)
    return found


class Ingestor:
    """Builds events from the document's examples, with ids of its own, and publishes them."""

    def __init__(self, spec: dict[str, Any], bootstrap: str) -> None:
        self.spec = spec
        self.suffix = uuid.uuid4().hex[:8]
        self.messages = _ingestor_messages(spec)
        partitioner = spec["channels"][next(iter(spec["channels"]))]["bindings"]["kafka"]
        assert partitioner["x-partitioner"] == "murmur2"
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "partitioner": "murmur2_random",
                "acks": "all",
                "enable.idempotence": True,
            }
        )
        self.sent = 0

    def _renamed(self, value: str) -> str:
        return f"{value}-{self.suffix}"

    def build(self, event_type: str, occurred_at: datetime) -> tuple[str, dict[str, Any]]:
        topic, message = self.messages[event_type]
        example = copy.deepcopy(message["examples"][0])
        event: dict[str, Any] = example["payload"]
        data = event["data"]
        for field, value in data.items():
            if field.endswith("_id") and isinstance(value, str):
                data[field] = self._renamed(value)
        event["subject"] = self._renamed(event["subject"])
        event["id"] = str(uuid.uuid4())
        event["time"] = data["occurred_at"] = occurred_at.isoformat().replace("+00:00", "Z")
        schema = {**self.spec, "$ref": message["payload"]["$ref"]}
        Draft202012Validator(schema).validate(event)
        return topic, event

    def publish(self, event_type: str, occurred_at: datetime) -> dict[str, Any]:
        topic, event = self.build(event_type, occurred_at)
        _, message = self.messages[event_type]
        assert message["bindings"]["kafka"]["x-key-location"] == "$message.payload#/subject"
        headers = {**message["examples"][0]["headers"], "ce_id": event["id"]}
        errors: list[Any] = []
        self.producer.produce(
            topic,
            value=json.dumps(event).encode(),
            key=event["subject"].encode(),
            headers=list(headers.items()),
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
        assert self.producer.flush(30) == 0 and not errors, errors
        self.sent += 1
        return event


def _service(module: str, prefix: str, infra: Infra, secret: str, log: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    database = f"test_{module}_asyncapi_{tag}"
    env = {
        **os.environ,
        f"{prefix}KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        f"{prefix}MONGODB_URI": infra.mongodb_uri,
        f"{prefix}MONGODB_DATABASE": database,
        f"{prefix}GRPC_PORT": str(port),
        f"{prefix}METRICS_PORT": "0",
        f"{prefix}JWT_SECRET": secret,
        f"{prefix}CONSUMER_GROUP": f"{module}-asyncapi-{tag}",
        f"{prefix}PRESENCE_CONSUMER_GROUP": f"{module}-presence-asyncapi-{tag}",
        f"{prefix}INITIAL_OFFSET": "latest",
        f"{prefix}CONSUMER_OFFSET_RESET": "latest",
        f"{prefix}LOG_LEVEL": "WARNING",
        f"{prefix}SHUTDOWN_GRACE_SECONDS": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"{module}_service"], env=env, stdout=out, stderr=out
        )
    return {"proc": proc, "address": f"127.0.0.1:{port}", "database": database}


@pytest.fixture
def services(infra: Infra, jwt_secret: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    started = [
        ("routing", _service("routing", "ROUTING_", infra, jwt_secret, tmp_path / "r.log")),
        ("contacts", _service("contacts", "CONTACTS_", infra, jwt_secret, tmp_path / "c.log")),
    ]
    try:
        for _name, svc in started:
            wait_serving(svc["address"], svc["proc"], timeout=90)
        yield {name: svc["address"] for name, svc in started}
    finally:
        client: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_uri)
        for _name, svc in started:
            stop_process(svc["proc"])
            client.drop_database(svc["database"])
        client.close()


async def test_every_ingestor_event_type_built_from_the_document_is_applied(
    services: dict[str, str], infra: Infra, make_token: Callable[..., str]
) -> None:
    spec = _spec()
    ingestor = Ingestor(spec, infra.kafka_bootstrap)
    # What the document says an ingestor publishes: the types this test walks through.
    conversation_flow = [
        "inbox.messages.inbound_received.v1",
        "inbox.conversations.assigned.v1",
        "inbox.messages.outbound_sent.v1",
        "inbox.conversations.follow_up_due.v1",
        "inbox.conversations.unassigned.v1",
        "inbox.conversations.resolved.v1",
    ]
    contact_types = ["inbox.contacts.profile_upserted.v1"]
    assert sorted(ingestor.messages) == sorted(conversation_flow + contact_types)

    org = ingestor._renamed("org-acme")
    token = bearer(make_token(org, "agent-reader"))
    start = datetime.now(UTC) - timedelta(minutes=5)

    async with (
        grpc.aio.insecure_channel(services["routing"]) as routing_channel,
        grpc.aio.insecure_channel(services["contacts"]) as contacts_channel,
    ):
        routing = routing_pb2_grpc.RoutingServiceStub(routing_channel)
        contacts = contacts_pb2_grpc.ContactsServiceStub(contacts_channel)

        async def conversation(conversation_id: str) -> routing_pb2.Conversation | None:
            try:
                reply = await routing.GetConversation(
                    routing_pb2.GetConversationRequest(conversation_id=conversation_id),
                    metadata=token,
                    timeout=5,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return reply.conversation

        # The services' consumers start at the end of the topics: the first inbound message
        # is re-published (same fact, new id) until routing has joined and applied it.
        first = ingestor.build(conversation_flow[0], start)[1]
        conversation_id = first["data"]["conversation_id"]

        async def created() -> routing_pb2.Conversation | None:
            ingestor.publish(conversation_flow[0], start)
            return await conversation(conversation_id)

        state = await wait_until(created, timeout=60, interval=1.0)
        assert state.queue == QUEUE.CONVERSATION_QUEUE_NEW

        expected: dict[str, Callable[[routing_pb2.Conversation], bool]] = {
            "inbox.conversations.assigned.v1": lambda c: (
                c.assignee_id == ingestor._renamed("agent-ana")
            ),
            "inbox.messages.outbound_sent.v1": lambda c: (
                c.queue == QUEUE.CONVERSATION_QUEUE_PENDING
            ),
            "inbox.conversations.follow_up_due.v1": lambda c: (
                c.queue == QUEUE.CONVERSATION_QUEUE_NEW
            ),
            "inbox.conversations.unassigned.v1": lambda c: c.assignee_id == "",
            "inbox.conversations.resolved.v1": lambda c: (
                c.queue == QUEUE.CONVERSATION_QUEUE_RESOLVED
            ),
        }
        for step, event_type in enumerate(conversation_flow[1:], start=1):
            ingestor.publish(event_type, start + timedelta(seconds=step))
            check = expected[event_type]

            async def applied(check: Callable[[routing_pb2.Conversation], bool] = check) -> bool:
                current = await conversation(conversation_id)
                return current is not None and check(current)

            await wait_until(applied, timeout=30, interval=0.2)

        async def profile() -> contacts_pb2.Contact | None:
            event = ingestor.publish(contact_types[0], start)
            try:
                return await contacts.GetContact(
                    contacts_pb2.GetContactRequest(contact_id=event["subject"]),
                    metadata=token,
                    timeout=5,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise

        contact = await wait_until(profile, timeout=60, interval=1.0)
        example_attributes = ingestor.messages[contact_types[0]][1]["examples"][0]["payload"]
        assert {k: v.display for k, v in contact.attributes.items()} == (
            example_attributes["data"]["attributes"]
        )
        await asyncio.to_thread(ingestor.producer.flush, 5)
