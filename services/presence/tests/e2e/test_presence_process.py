"""End to end: presence as real processes (``python -m presence_service``), gRPC + Kafka only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest
from inbox.presence.v1 import presence_pb2 as pb
from inbox_contracts.topics import PRESENCE
from inbox_testing import Infra, TopicProbe, free_port
from presence_procs import Proc
from presence_service.domain.model import AgentRef, event_id_for, transition_key
from presence_test_helpers import SIGNED_IN, SIGNED_OUT, Client, event, logical, of

pytestmark = [pytest.mark.e2e, pytest.mark.infra]


async def test_kill9_between_store_and_publish_event_arrives_after_restart(
    infra: Infra, database: str, procs: list[Proc], make_token, unique
) -> None:
    """Simulation (honest): the first process runs with publishing disabled, so it stores the
    transitions (= its outbox) and publishes nothing - exactly the state a crash between the
    store and the publish leaves. Then it is SIGKILLed and a normal process starts."""
    port = free_port()
    org, agent = unique("org"), unique("agent")
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        first = Proc(infra, database, port, publish_enabled="false")
        procs.append(first)
        await first.ready()
        client = Client(first.address, make_token(org, agent))
        sid = await client.sign_in()
        await client.sign_out(sid)
        await client.close()
        await probe.drain(1.0)
        assert [r for r in probe.records if of(agent)(r)] == []  # stored, not published
        first.kill9()
        second = Proc(infra, database, port)
        procs.append(second)
        await second.ready()
        records = await probe.wait_for(of(agent), count=2, timeout=20)
    events = [event(r) for r in records]
    assert [e["type"] for e in events] == [SIGNED_IN, SIGNED_OUT]
    ref = AgentRef(org, agent)
    assert [e["id"] for e in events] == [event_id_for(transition_key(ref, n)) for n in (1, 2)]
    assert events[1]["data"]["reason"] == "explicit"


async def test_kill9_with_live_sessions_no_spurious_sign_out_and_expiry_still_fires(
    infra: Infra, database: str, procs: list[Proc], make_token, unique
) -> None:
    port = free_port()
    org, stays, leaves = unique("org"), unique("agent"), unique("agent")
    timing = {"session_timeout_seconds": 4.0, "heartbeat_interval_seconds": 1.0}
    first = Proc(infra, database, port, **timing)
    procs.append(first)
    await first.ready()
    c_stays = Client(first.address, make_token(org, stays))
    c_leaves = Client(first.address, make_token(org, leaves))
    s_stays = await c_stays.sign_in()
    signed_in = await c_leaves.stub.SignIn(pb.SignInRequest(), metadata=c_leaves.md, timeout=10)
    s_leaves = signed_in.session_id
    last = await c_leaves.heartbeat(s_leaves)  # then this agent's client goes away

    beating = True
    failures = 0

    async def heartbeat_forever() -> None:
        nonlocal failures
        while beating:
            try:
                await c_stays.heartbeat(s_stays)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # only while restarting
                failures += 1
            await asyncio.sleep(0.5)

    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        beater = asyncio.create_task(heartbeat_forever())
        first.kill9()
        second = Proc(infra, database, port, **timing)
        procs.append(second)
        await second.ready()
        [out] = await probe.wait_for(of(leaves, SIGNED_OUT), timeout=20)
        await asyncio.sleep(2.0)  # the stayer keeps heartbeating past its session timeout
        beating = False
        await beater
        [view] = await c_stays.presence(stays)
        assert view.signed_in
        # marker: the stayer's explicit sign-out (it would fail had the session ended) is
        # published after anything the restart could have published for that agent
        assert (await c_stays.sign_out(s_stays)).agent_signed_out
        await probe.wait_for(of(stays, SIGNED_OUT), timeout=20)
    assert failures >= 1  # the restart was real and the client saw it
    outs = [
        e for e in logical([r for r in probe.records if of(stays)(r)]) if e["type"] == SIGNED_OUT
    ]
    assert [e["data"]["reason"] for e in outs] == ["explicit"]  # no spurious sign-out
    assert event(out)["data"]["reason"] == "expired"
    # kill -9 loses the heartbeat progress the replica had not written back yet (README
    # "Heartbeats"): the end is the last *stored* heartbeat + timeout, between the sign-in's
    # deadline and the last heartbeat's
    ended_at = datetime.fromisoformat(event(out)["data"]["occurred_at"].replace("Z", "+00:00"))
    assert signed_in.expires_at.ToDatetime(UTC) <= ended_at <= last.expires_at.ToDatetime(UTC)
    await c_stays.close()
    await c_leaves.close()


async def test_two_replica_processes_one_transition_per_sign_out(
    infra: Infra, database: str, procs: list[Proc], make_token, unique
) -> None:
    p1 = Proc(infra, database, free_port())
    p2 = Proc(infra, database, free_port())
    procs += [p1, p2]
    await asyncio.gather(p1.ready(), p2.ready())
    org = unique("org")
    agents = [unique("agent") for _ in range(4)]
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        for i, agent in enumerate(agents):
            c1 = Client(p1.address, make_token(org, agent))
            c2 = Client(p2.address, make_token(org, agent))
            a, b = await asyncio.gather(c1.sign_in(), c2.sign_in())
            if i % 2:  # both sessions end concurrently on different replicas
                await asyncio.gather(c1.sign_out(a), c2.sign_out(b))
            else:  # one ends explicitly, the other expires (both sweepers race on it)
                await c2.sign_out(b)
            await c1.close()
            await c2.close()
        for agent in agents:
            await probe.wait_for(of(agent, SIGNED_OUT), timeout=20)
        await probe.drain(1.5)
    for agent in agents:
        # at-least-once: a replica may re-publish a transition, always with the same id
        events = logical([r for r in probe.records if of(agent)(r)])
        assert [e["type"] for e in events] == [SIGNED_IN, SIGNED_OUT], agent
