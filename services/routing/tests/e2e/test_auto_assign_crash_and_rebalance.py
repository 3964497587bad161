"""Automatic assignment survives kill -9 and a second instance joining (rebalance).

Two ``python -m routing_service`` processes in the same consumer groups: A runs alone, B
joins mid-stream (partitions move, dispatcher state is taken over from snapshot + replay),
then A is killed with SIGKILL mid-stream. Meanwhile conversations keep arriving, the test
resolves assigned ones as they are assigned (capacity frees), and an agent signs out (R1
puts its NEW conversations back in the queue). After quiescence: no agent above capacity,
no conversation with two automatic assignments in one waiting period, and nothing waits
while an eligible agent has room.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from inbox.routing.v1 import routing_pb2 as pb
from inbox.routing.v1 import routing_pb2_grpc
from inbox_contracts import CloudEvent, EventData, utc_now
from inbox_contracts.topics import ROUTING
from inbox_testing import Infra, ServiceProcess, TopicProbe, bearer, free_port, wait_until
from pymongo import AsyncMongoClient
from routing_testing import inbound, resolved, signed_in, signed_out, topic_of

pytestmark = [pytest.mark.e2e, pytest.mark.infra]
CAPACITY = 3
AUTO = "inbox.routing.auto_assigned.v1"


class Instance(ServiceProcess):
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        super().__init__("routing_service", {**env, "ROUTING_GRPC_PORT": str(self.port)}, log)


async def test_kill9_of_a_dispatcher_and_a_second_instance_joining(
    infra: Infra, jwt_secret: str, tmp_path: Path, producer: AIOKafkaProducer, make_token: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "ROUTING_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "ROUTING_MONGODB_URI": infra.mongodb_uri,
        "ROUTING_MONGODB_DATABASE": f"test_routing_aa_{tag}",
        "ROUTING_METRICS_PORT": "0",
        "ROUTING_JWT_SECRET": jwt_secret,
        "ROUTING_CONSUMER_GROUP": f"routing-aa-{tag}",
        "ROUTING_PRESENCE_CONSUMER_GROUP": f"routing-aa-presence-{tag}",
        "ROUTING_DISPATCHER_CONSUMER_GROUP": f"routing-aa-dispatcher-{tag}",
        "ROUTING_DISPATCH_SNAPSHOT_SECONDS": "1",
        "ROUTING_INITIAL_OFFSET": "latest",
        "ROUTING_LOG_LEVEL": "WARNING",
    }
    a, b = Instance(env, tmp_path / "a.log"), Instance(env, tmp_path / "b.log")
    a.start()
    org, warm = f"org-{tag}", f"warm-{tag}"
    admin = bearer(make_token(org, "boss", role="admin"))
    warm_admin = bearer(make_token(warm, "boss", role="admin"))
    reader = bearer(make_token(org, "x"))

    async def publish(*events: CloudEvent[EventData]) -> None:
        futures = [await producer.send(topic_of(e), e.to_json_bytes(), key=e.key) for e in events]
        await asyncio.gather(*futures)

    t0 = utc_now()
    clock = [0]

    def at() -> Any:
        clock[0] += 1
        return t0 + timedelta(milliseconds=clock[0])

    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as b_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as a_channel,
            TopicProbe(infra.kafka_bootstrap, ROUTING.name) as probe,
        ):
            stub_a = routing_pb2_grpc.RoutingServiceStub(a_channel)
            stub_b = routing_pb2_grpc.RoutingServiceStub(b_channel)
            await wait_until(lambda: _configure(stub_a, warm_admin), timeout=90, interval=0.5)
            assert await _configure(stub_a, admin)

            def auto_of(o: str) -> Any:
                return lambda r: (
                    json.loads(r.value)["type"] == AUTO
                    and (json.loads(r.value)["data"]["org_id"] == o)
                )

            mine = auto_of(org)
            # warm-up (another org): every consumer group of A is live once one got assigned
            await publish(signed_in(warm, "warm", at()))
            for i in range(120):
                await publish(inbound(warm, f"warm-{i}", at()))
                try:
                    await probe.wait_for(auto_of(warm), timeout=0.5)
                    break
                except AssertionError:
                    continue

            agents = [f"agent-{i}" for i in range(5)]
            convs = [f"conv-{i:03d}" for i in range(60)]
            await publish(*(signed_in(org, x, at()) for x in agents))
            resolved_ids: set[str] = set()

            async def resolve_assigned(limit: int) -> None:
                await probe.drain(0.05)
                for r in probe.records:
                    d = json.loads(r.value)["data"]
                    cid = d["conversation_id"]
                    fresh = cid.startswith("conv-") and cid not in resolved_ids
                    if mine(r) and fresh and len(resolved_ids) < limit:
                        resolved_ids.add(cid)
                        await publish(resolved(org, cid, at()))

            for i, c in enumerate(convs):
                await publish(inbound(org, c, at()))
                await resolve_assigned(30)
                if i == 15:
                    b.start()  # a second instance joins: rebalance mid-stream
                if i == 30:
                    await publish(signed_out(org, agents[0], at()))  # R1 back to the queue
                if i == 40:
                    a.kill9()  # the survivor takes over A's partitions from snapshots
                await asyncio.sleep(0.05)

            async def quiet() -> bool:
                await resolve_assigned(30)
                loads = await _loads(stub_b, reader)
                try:
                    waiting = await stub_b.ListWaitingConversations(
                        pb.ListWaitingConversationsRequest(), metadata=reader, timeout=5
                    )
                except grpc.aio.AioRpcError:
                    return False  # B still starting
                live = [x for x in agents[1:] if loads.get(x, 0) < CAPACITY]
                return len(resolved_ids) == 30 and not live and waiting.total > 0

            await wait_until(quiet, timeout=120, interval=0.5)
            await probe.drain(1.0)

            # every agent's real load (NEW + PENDING assigned), from the conversations
            held = Counter[str]()
            waiting_convs = []

            async def read_model(c: str) -> Any:
                try:
                    reply = await stub_b.GetConversation(
                        pb.GetConversationRequest(conversation_id=c), metadata=reader, timeout=5
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() is grpc.StatusCode.NOT_FOUND:
                        return None  # the read model is asynchronous: B may still be writing it
                    raise
                return reply.conversation

            for c in convs:
                conv = await wait_until(partial(read_model, c), timeout=60, interval=0.2)
                if conv.queue == pb.CONVERSATION_QUEUE_NEW and not conv.assignee_id:
                    waiting_convs.append(c)
                elif conv.queue != pb.CONVERSATION_QUEUE_RESOLVED:
                    held[conv.assignee_id] += 1
            assert max(held.values()) <= CAPACITY, f"over capacity: {held}"
            assert all(held[x] == CAPACITY for x in agents[1:])  # nobody with room...
            assert waiting_convs  # ...while conversations wait
            assert held[agents[0]] == 0  # signed out: R1 took its NEW ones, nothing new
            # at most one automatic assignment per waiting period: a conversation waits
            # once, plus once more if R1 took it from agent-0
            per_conv = Counter[str]()
            bodies = [json.loads(r.value) for r in probe.records if mine(r)]
            for body in {body["id"]: body for body in bodies}.values():
                per_conv[body["data"]["conversation_id"]] += 1
            r1 = {
                json.loads(r.value)["data"]["conversation_id"]
                for r in probe.records
                if json.loads(r.value)["type"] == "inbox.routing.auto_unassigned.v1"
                and json.loads(r.value)["data"]["org_id"] == org
            }
            for c, n in per_conv.items():
                assert n <= 1 + (c in r1), f"{c} assigned {n} times"
    finally:
        a.stop()
        b.stop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
        await client.drop_database(env["ROUTING_MONGODB_DATABASE"])
        await client.close()


async def _configure(stub: Any, md: Any) -> bool:
    try:
        await stub.UpdateRoutingSettings(
            pb.UpdateRoutingSettingsRequest(remove_assignment_on_sign_out=True),
            metadata=md,
            timeout=5,
        )
        r = await stub.UpdateAssignmentSettings(
            pb.UpdateAssignmentSettingsRequest(enabled=True, default_capacity=CAPACITY),
            metadata=md,
            timeout=5,
        )
    except grpc.aio.AioRpcError:
        return False
    return bool(r.enabled)


async def _loads(stub: Any, md: Any) -> dict[str, int]:
    try:
        r = await stub.ListAgentLoads(pb.ListAgentLoadsRequest(), metadata=md, timeout=5)
    except grpc.aio.AioRpcError:
        return {}
    return {x.agent_id: x.held for x in r.agents if x.signed_in}
