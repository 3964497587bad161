"""Fixtures for routing integration tests: the service in-process on the real stack."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from inbox.routing.v1 import routing_pb2 as pb
from inbox.routing.v1 import routing_pb2_grpc
from inbox_contracts import CloudEvent, EventData
from inbox_contracts.topics import CONVERSATIONS, MESSAGES, PRESENCE, ROUTING_COMMANDS
from inbox_kit.batch_consumer import BatchConsumer
from inbox_testing import Infra, bearer
from pymongo import AsyncMongoClient
from routing_service.adapters.kafka import fetch_state
from routing_service.bootstrap import Routing, bootstrap
from routing_service.settings import RoutingSettings
from routing_testing import topic_of


@dataclass
class Stack:
    infra: Infra
    producer: AIOKafkaProducer
    secret: str
    database: str
    groups: tuple[str, str]

    def settings(self, **overrides: Any) -> RoutingSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.infra.kafka_bootstrap,
            "mongodb_uri": self.infra.mongodb_uri,
            "mongodb_database": self.database,
            "grpc_port": 0,
            "metrics_port": 0,
            "jwt_secret": self.secret,
            "consumer_group": self.groups[0],
            "presence_consumer_group": self.groups[1],
            "dispatcher_consumer_group": f"{self.groups[0]}-dispatcher",
            "initial_offset": "latest",
            "shutdown_grace_seconds": 0.5,
        }
        values.update(overrides)
        return RoutingSettings(**values)

    async def publish(self, *events: CloudEvent[EventData]) -> None:
        for e in events:
            await self.producer.send_and_wait(topic_of(e), e.to_json_bytes(), key=e.key)

    async def consumed(self, *instances: Routing, timeout: float = 60) -> None:
        """Wait until every record published so far on routing's inputs has been handed out
        by the consumers of ``instances``: presence first (its sweeps and relayed progress
        go to the commands topic), then the conversation inputs with their repartition
        topics and the commands. A marker, unlike a pause: a late record cannot slip by."""
        deadline = time.monotonic() + timeout
        inputs = [MESSAGES, CONVERSATIONS]
        stages = [
            ("presence", [PRESENCE.name]),
            ("owner", [t.name for t in inputs] + [t.repartition for t in inputs]),
            ("owner", [ROUTING_COMMANDS.name]),
        ]
        probe = AIOKafkaConsumer(bootstrap_servers=self.infra.kafka_bootstrap)
        await probe.start()
        try:
            for loop_name, topics in stages:
                tps = [
                    TopicPartition(t, p)
                    for t in topics
                    for p in sorted(await self.producer.partitions_for(t))
                ]
                ends = await probe.end_offsets(tps)
                loops = [lp for r in instances for lp in r.loops if lp.name == loop_name]
                while not _handed_out(loops, ends):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{topics} not consumed within {timeout}s")
                    await asyncio.sleep(0.05)
        finally:
            await probe.stop()

    async def start_routing(self, **overrides: Any) -> Routing:
        routing = bootstrap(self.settings(**overrides))
        await routing.runtime.start()
        await routing.ready(timeout=60)
        return routing


def _handed_out(loops: list[BatchConsumer], ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        states = [state for lp in loops if (state := fetch_state(lp, tp)) is not None]
        if not states or states[0].position < end:
            return False
    return True


@pytest.fixture(scope="session")
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def stack(infra: Infra, producer: AIOKafkaProducer, jwt_secret: str) -> AsyncIterator[Stack]:
    tag = uuid.uuid4().hex[:10]
    database = f"test_routing_{tag}"
    yield Stack(infra, producer, jwt_secret, database, (f"routing-t-{tag}", f"routing-p-{tag}"))
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    await client.drop_database(database)
    await client.close()


@pytest.fixture
async def routing(stack: Stack) -> AsyncIterator[Routing]:
    r = await stack.start_routing()
    yield r
    await r.runtime.stop()


@dataclass
class Client:
    stub: routing_pb2_grpc.RoutingServiceStub
    make_token: Callable[..., str]

    async def enable(self, org: str, enabled: bool = True) -> pb.RoutingSettings:
        token = self.make_token(org, "boss", role="admin")
        return await self.stub.UpdateRoutingSettings(
            pb.UpdateRoutingSettingsRequest(remove_assignment_on_sign_out=enabled),
            metadata=bearer(token),
            timeout=10,
        )

    async def conversation(self, org: str, conv: str) -> tuple[str, str]:
        reply = await self.stub.GetConversation(
            pb.GetConversationRequest(conversation_id=conv),
            metadata=bearer(self.make_token(org, "ana")),
            timeout=10,
        )
        c = reply.conversation
        return (
            pb.ConversationQueue.Name(c.queue).removeprefix("CONVERSATION_QUEUE_"),
            c.assignee_id,
        )

    async def state_or_none(self, org: str, conv: str) -> tuple[str, str] | None:
        try:
            return await self.conversation(org, conv)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise


@pytest.fixture
async def client(routing: Routing, make_token: Callable[..., str]) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(routing.runtime.grpc.address) as channel:
        yield Client(routing_pb2_grpc.RoutingServiceStub(channel), make_token)
