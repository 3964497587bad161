"""End to end with the real presence service: agents sign in/out over presence's gRPC,
presence publishes the events, routing (its own process) applies R1 and R2."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from inbox.presence.v1 import presence_pb2, presence_pb2_grpc
from inbox.routing.v1 import routing_pb2 as pb
from inbox.routing.v1 import routing_pb2_grpc
from inbox_contracts import CloudEvent, EventData, utc_now
from inbox_contracts.topics import CONVERSATIONS, MESSAGES, PRESENCE, ROUTING
from inbox_testing import Infra, TopicProbe, bearer, free_port, stop_process, wait_until
from routing_testing import assigned, inbound, outbound, signed_out

pytestmark = [pytest.mark.e2e, pytest.mark.infra]


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=out, stderr=out)


@pytest.fixture
def services(infra: Infra, jwt_secret: str, tmp_path: Path) -> Iterator[tuple[int, int]]:
    tag = uuid.uuid4().hex[:8]
    routing_port, presence_port = free_port(), free_port()
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "MONGODB_URI": infra.mongodb_uri,
        "METRICS_PORT": "0",
        "JWT_SECRET": jwt_secret,
        "LOG_LEVEL": "WARNING",
    }
    routing_env = {
        **os.environ,
        **{f"ROUTING_{k}": v for k, v in common.items()},
        "ROUTING_MONGODB_DATABASE": f"test_routing_pe_{tag}",
        "ROUTING_GRPC_PORT": str(routing_port),
        "ROUTING_CONSUMER_GROUP": f"routing-pe-{tag}",
        "ROUTING_PRESENCE_CONSUMER_GROUP": f"routing-presence-pe-{tag}",
        "ROUTING_INITIAL_OFFSET": "latest",
    }
    presence_env = {
        **os.environ,
        **{f"PRESENCE_{k}": v for k, v in common.items()},
        "PRESENCE_MONGODB_DATABASE": f"test_presence_pe_{tag}",
        "PRESENCE_GRPC_PORT": str(presence_port),
    }
    routing = start("routing_service", routing_env, tmp_path / "routing.log")
    presence = start("presence_service", presence_env, tmp_path / "presence.log")
    try:
        yield routing_port, presence_port
    finally:
        stop_process(routing)
        stop_process(presence)


async def test_sign_out_through_presence_unassigns(
    services: tuple[int, int], infra: Infra, make_token: Any
) -> None:
    routing_port, presence_port = services
    org, ana = f"org-{uuid.uuid4().hex[:8]}", f"ana-{uuid.uuid4().hex[:6]}"
    admin, ana_md = bearer(make_token(org, "boss", role="admin")), bearer(make_token(org, ana))
    c_new, c_pend = f"conv-new-{uuid.uuid4().hex[:6]}", f"conv-pend-{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()

    async def publish(*events: CloudEvent[EventData]) -> None:
        for e in events:
            topic = (
                MESSAGES.name
                if e.type.startswith("inbox.messages.")
                else (PRESENCE.name if e.type.startswith("inbox.presence.") else CONVERSATIONS.name)
            )
            await producer.send_and_wait(topic, e.to_json_bytes(), key=e.key)

    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{routing_port}") as rch,
            grpc.aio.insecure_channel(f"127.0.0.1:{presence_port}") as pch,
            TopicProbe(infra.kafka_bootstrap, ROUTING.name) as probe,
        ):
            routing = routing_pb2_grpc.RoutingServiceStub(rch)
            presence = presence_pb2_grpc.PresenceServiceStub(pch)

            async def state(conv: str) -> tuple[str, str] | None:
                try:
                    c = (
                        await routing.GetConversation(
                            pb.GetConversationRequest(conversation_id=conv),
                            metadata=ana_md,
                            timeout=5,
                        )
                    ).conversation
                except grpc.aio.AioRpcError:
                    return None
                return (
                    pb.ConversationQueue.Name(c.queue).removeprefix("CONVERSATION_QUEUE_"),
                    c.assignee_id,
                )

            async def enabled() -> bool:
                try:
                    r = await routing.UpdateRoutingSettings(
                        pb.UpdateRoutingSettingsRequest(remove_assignment_on_sign_out=True),
                        metadata=admin,
                        timeout=5,
                    )
                except grpc.aio.AioRpcError:
                    return False
                return bool(r.remove_assignment_on_sign_out)

            await wait_until(enabled, timeout=60)
            t0 = utc_now()
            # warm-up: routing's consumers start at "latest"; poke until both are live
            warm = "warm-conv"
            await publish(inbound(org, warm, t0), assigned(org, warm, "warm-agent", t0))
            for i in range(240):
                if await state(warm) == ("NEW", "warm-agent"):
                    break
                await asyncio.sleep(0.25)
                await publish(inbound(org, warm, t0 + timedelta(milliseconds=i + 1)))
            for _ in range(240):
                await publish(signed_out(org, "warm-agent", utc_now()))
                try:
                    await probe.wait_for(
                        lambda r: json.loads(r.value)["subject"] == warm, timeout=0.5
                    )
                    break
                except AssertionError:
                    continue

            session = (
                await presence.SignIn(
                    presence_pb2.SignInRequest(client_description="e2e"),
                    metadata=ana_md,
                    timeout=10,
                )
            ).session_id
            now = utc_now()
            for conv in (c_new, c_pend):
                await publish(inbound(org, conv, now), assigned(org, conv, ana, now))
            await publish(outbound(org, c_pend, utc_now(), agent=ana))
            await wait_until(lambda: _eq(state(c_pend), ("PENDING", ana)), timeout=30)
            await wait_until(lambda: _eq(state(c_new), ("NEW", ana)), timeout=30)

            def decision(conv: str, reason: str) -> Any:
                def check(r: Any) -> bool:
                    d = json.loads(r.value)["data"]
                    return bool(d["conversation_id"] == conv and d["reason"] == reason)

                return check

            await presence.SignOut(
                presence_pb2.SignOutRequest(session_id=session), metadata=ana_md, timeout=10
            )
            [r1] = await probe.wait_for(decision(c_new, "agent_signed_out"), timeout=30)
            assert json.loads(r1.value)["data"]["cause_event_type"] == (
                "inbox.presence.agent_signed_out.v1"
            )
            await publish(inbound(org, c_pend, utc_now()))  # R2 while she is signed out
            await probe.wait_for(decision(c_pend, "moved_to_new_while_signed_out"), timeout=30)
            await wait_until(lambda: _eq(state(c_new), ("NEW", "")), timeout=30)
            await wait_until(lambda: _eq(state(c_pend), ("NEW", "")), timeout=30)
    finally:
        await producer.stop()


async def _eq(got: Any, expected: Any) -> bool:
    return bool(await got == expected)
