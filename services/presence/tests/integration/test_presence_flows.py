"""Presence on the real Kafka + FerretDB, in-process service (one or two replicas)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import grpc
import pytest
from inbox.presence.v1 import presence_pb2 as pb
from inbox_contracts.topics import PRESENCE
from inbox_testing import TopicProbe, wait_until
from presence_test_helpers import (
    AVAILABILITY,
    FAST,
    SIGNED_IN,
    SIGNED_OUT,
    Client,
    Replicas,
    code_of,
    event,
    logical,
    of,
)

pytestmark = pytest.mark.infra

TIMEOUT = FAST["session_timeout_seconds"]
DETECTION = TIMEOUT + FAST["expiry_grace_seconds"] + FAST["sweep_interval_seconds"]


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_explicit_sign_out_publishes_exactly_one_signed_out(
    replicas: Replicas, infra, make_token, unique
) -> None:
    runtime, _ = await replicas.start()
    org, agent = unique("org"), unique("agent")
    client = Client(runtime.grpc.address, make_token(org, agent))
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        sid = await client.sign_in()
        await client.heartbeat(sid)
        assert (await client.sign_out(sid)).agent_signed_out
        # marker: the agent's next transition; per agent the outbox publishes in order, so
        # whatever the sign-out published is on the topic before it
        await client.sign_in()
        await probe.wait_for(of(agent, SIGNED_IN), count=2)
    events = logical([r for r in probe.records if of(agent)(r)])
    ins = [e for e in events if e["type"] == SIGNED_IN and e["data"]["session_id"] == sid]
    outs = [e for e in events if e["type"] == SIGNED_OUT]
    assert len(ins) == 1 and len(outs) == 1
    assert outs[0]["data"]["reason"] == "explicit"
    assert outs[0]["data"]["session_id"] == sid and outs[0]["data"]["org_id"] == org
    assert _dt(outs[0]["time"]) >= _dt(ins[0]["time"])
    # Kafka key = agent id (the topic is shared: other tests' records are ignored)
    assert all(r.key == agent.encode() for r in probe.records if of(agent)(r))
    # heartbeat / sign-out on the ended session → FAILED_PRECONDITION, "sign in again"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.heartbeat(sid)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "sign in again" in (err.value.details() or "")
    assert await code_of(client.sign_out(sid)) == grpc.StatusCode.FAILED_PRECONDITION
    await client.close()


async def test_second_session_keeps_agent_signed_in(
    replicas: Replicas, infra, make_token, unique
) -> None:
    runtime, _ = await replicas.start()
    org, agent = unique("org"), unique("agent")
    client = Client(runtime.grpc.address, make_token(org, agent))
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        tab1 = await client.sign_in()
        tab2 = await client.sign_in()
        await probe.wait_for(of(agent, SIGNED_IN))
        assert not (await client.sign_out(tab1)).agent_signed_out
        [view] = await client.presence(agent)
        assert view.signed_in and [s.session_id for s in view.sessions] == [tab2]
        # the last sign-out is the marker: closing tab1 published nothing before it
        assert (await client.sign_out(tab2)).agent_signed_out
        outs = await probe.wait_for(of(agent, SIGNED_OUT))
    events = logical([r for r in probe.records if of(agent)(r)])
    assert [e["type"] for e in events] == [SIGNED_IN, SIGNED_OUT]
    assert event(outs[0])["data"]["session_id"] == tab2
    await client.close()


async def test_heartbeats_stop_then_one_expired_sign_out_at_last_heartbeat_plus_timeout(
    replicas: Replicas, infra, make_token, unique
) -> None:
    runtime, _ = await replicas.start()
    org, agent = unique("org"), unique("agent")
    client = Client(runtime.grpc.address, make_token(org, agent))
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        sid = await client.sign_in()
        last = await client.heartbeat(sid)
        stopped = asyncio.get_running_loop().time()
        outs = await probe.wait_for(of(agent, SIGNED_OUT), timeout=DETECTION + 5)
        noticed = asyncio.get_running_loop().time() - stopped
        await probe.drain(0.5)
    outs = [event(r) for r in probe.records if of(agent, SIGNED_OUT)(r)]
    assert len(outs) == 1
    assert outs[0]["data"]["reason"] == "expired"
    # occurred_at = last heartbeat + timeout = the expires_at the last heartbeat returned
    assert _dt(outs[0]["data"]["occurred_at"]) == last.expires_at.ToDatetime().replace(
        tzinfo=_dt(outs[0]["time"]).tzinfo
    )
    assert noticed < DETECTION + 2.0  # loaded machine slack
    assert await code_of(client.heartbeat(sid)) == grpc.StatusCode.FAILED_PRECONDITION
    await client.close()


async def test_reconnect_inside_timeout_publishes_nothing(
    replicas: Replicas, infra, make_token, unique
) -> None:
    runtime, _ = await replicas.start()
    org, agent = unique("org"), unique("agent")
    client = Client(runtime.grpc.address, make_token(org, agent))
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        sid = await client.sign_in()
        await probe.wait_for(of(agent, SIGNED_IN))
        # page reload: the old tab stops heartbeating, a new session starts before it expires
        await asyncio.sleep(TIMEOUT / 2)
        new = await client.sign_in()
        deadline = asyncio.get_running_loop().time() + DETECTION + 1.0
        while asyncio.get_running_loop().time() < deadline:  # the old session expires meanwhile
            await client.heartbeat(new)
            await asyncio.sleep(0.3)
        assert await code_of(client.heartbeat(sid)) == grpc.StatusCode.FAILED_PRECONDITION
        [view] = await client.presence(agent)
        assert view.signed_in and [s.session_id for s in view.sessions] == [new]
        # marker: the explicit sign-out is the agent's next transition, published after
        # anything the reload could have published
        assert (await client.sign_out(new)).agent_signed_out
        [out] = await probe.wait_for(of(agent, SIGNED_OUT))
    events = logical([r for r in probe.records if of(agent)(r)])
    assert [e["type"] for e in events] == [SIGNED_IN, SIGNED_OUT]
    assert event(out)["data"]["session_id"] == new
    await client.close()


async def test_availability_is_published_and_never_signs_out(
    replicas: Replicas, infra, make_token, unique
) -> None:
    runtime, _ = await replicas.start()
    org, agent = unique("org"), unique("agent")
    client = Client(runtime.grpc.address, make_token(org, agent))
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        sid = await client.sign_in()
        r = await client.stub.SetAvailability(
            pb.SetAvailabilityRequest(availability=pb.AVAILABILITY_AWAY), metadata=client.md
        )
        assert r.availability == pb.AVAILABILITY_AWAY
        [changed] = await probe.wait_for(of(agent, AVAILABILITY))
        [view] = await client.presence(agent)
        assert view.signed_in and view.availability == pb.AVAILABILITY_AWAY
        await client.sign_out(sid)  # marker: published after the availability change
        await probe.wait_for(of(agent, SIGNED_OUT))
    assert event(changed)["data"]["availability"] == "away"
    events = logical([r for r in probe.records if of(agent)(r)])
    assert [e["type"] for e in events] == [SIGNED_IN, AVAILABILITY, SIGNED_OUT]
    await client.close()


async def test_get_presence_and_list_signed_in_paged(
    replicas: Replicas, make_token, unique
) -> None:
    runtime, _ = await replicas.start()
    org = unique("org")
    agents = sorted(unique("agent") for _ in range(5))
    clients = [Client(runtime.grpc.address, make_token(org, a)) for a in agents]
    sessions = [await c.sign_in() for c in clients]
    await clients[4].sign_out(sessions[4])
    views = await clients[0].presence(agents[4], agents[0], "never-seen")
    assert [(v.agent_id, v.signed_in) for v in views] == [
        (agents[4], False),
        (agents[0], True),
        ("never-seen", False),
    ]
    assert views[0].HasField("since") and not views[2].HasField("since")
    assert views[1].sessions[0].session_id == sessions[0]
    seen: list[str] = []
    token = ""
    while True:
        page = await clients[0].stub.ListSignedInAgents(
            pb.ListSignedInAgentsRequest(page_size=2, page_token=token), metadata=clients[0].md
        )
        seen += [a.agent_id for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert seen == agents[:4]
    for c in clients:
        await c.close()


async def test_force_sign_out_by_admin(replicas: Replicas, infra, make_token, unique) -> None:
    runtime, _ = await replicas.start()
    org, agent = unique("org"), unique("agent")
    client = Client(runtime.grpc.address, make_token(org, agent))
    admin = Client(runtime.grpc.address, make_token(org, unique("admin"), role="admin"))
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        s1, s2 = await client.sign_in(), await client.sign_in()
        r = await admin.stub.ForceSignOut(pb.ForceSignOutRequest(agent_id=agent), metadata=admin.md)
        assert r.ended_sessions == 2
        [out] = await probe.wait_for(of(agent, SIGNED_OUT))
    assert event(out)["data"]["reason"] == "forced"
    for sid in (s1, s2):
        assert await code_of(client.heartbeat(sid)) == grpc.StatusCode.FAILED_PRECONDITION
    await client.close()
    await admin.close()


async def test_bad_input_gets_precise_codes_and_service_keeps_serving(
    replicas: Replicas, make_token, unique
) -> None:
    runtime, _ = await replicas.start()
    org, agent = unique("org"), unique("agent")
    client = Client(runtime.grpc.address, make_token(org, agent))
    other_org = Client(runtime.grpc.address, make_token(unique("org"), agent))
    other_org_admin = Client(runtime.grpc.address, make_token(unique("org"), "boss", role="admin"))
    sid = await client.sign_in()
    s = client.stub
    no_token = await code_of(s.SignIn(pb.SignInRequest()))
    assert no_token == grpc.StatusCode.UNAUTHENTICATED
    bad_token = await code_of(
        s.SignIn(pb.SignInRequest(), metadata=(("authorization", "Bearer nope"),))
    )
    assert bad_token == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(client.heartbeat("no-such-session")) == grpc.StatusCode.NOT_FOUND
    # another org's caller (same agent id!) cannot touch the session
    assert await code_of(other_org.heartbeat(sid)) == grpc.StatusCode.NOT_FOUND
    assert await code_of(other_org.sign_out(sid)) == grpc.StatusCode.NOT_FOUND
    forced = other_org_admin.stub.ForceSignOut(
        pb.ForceSignOutRequest(agent_id=agent), metadata=other_org_admin.md
    )
    assert await code_of(forced) == grpc.StatusCode.NOT_FOUND
    not_admin = s.ForceSignOut(pb.ForceSignOutRequest(agent_id=agent), metadata=client.md)
    assert await code_of(not_admin) == grpc.StatusCode.PERMISSION_DENIED
    [other_view] = await other_org.presence(agent)  # other org sees nothing of ours
    assert not other_view.signed_in and not other_view.sessions
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.heartbeat("")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "session_id" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.presence()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "agent_ids" in (err.value.details() or "")
    assert await code_of(client.presence("ok", "")) == grpc.StatusCode.INVALID_ARGUMENT
    empty_force = s.ForceSignOut(pb.ForceSignOutRequest(agent_id=""), metadata=client.md)
    assert await code_of(empty_force) == grpc.StatusCode.PERMISSION_DENIED  # auth first
    unspecified = s.SetAvailability(pb.SetAvailabilityRequest(), metadata=client.md)
    assert await code_of(unspecified) == grpc.StatusCode.INVALID_ARGUMENT
    bad_page = s.ListSignedInAgents(
        pb.ListSignedInAgentsRequest(page_token="%%%"), metadata=client.md
    )
    assert await code_of(bad_page) == grpc.StatusCode.INVALID_ARGUMENT
    # still serving
    await client.heartbeat(sid)
    assert (await client.presence(agent))[0].signed_in
    for c in (client, other_org, other_org_admin):
        await c.close()


async def test_two_replicas_one_logical_transition_per_sign_out(
    replicas: Replicas, infra, make_token, unique
) -> None:
    r1, _ = await replicas.start()
    r2, _ = await replicas.start()
    org = unique("org")
    agents = [unique("agent") for _ in range(3)]
    via1 = [Client(r1.grpc.address, make_token(org, a)) for a in agents]
    via2 = [Client(r2.grpc.address, make_token(org, a)) for a in agents]
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        # agent 0: two sessions signed in concurrently on both replicas, then both signed out
        # concurrently on both replicas → one signed in, one signed out
        a, b = await asyncio.gather(via1[0].sign_in(), via2[0].sign_in())
        await asyncio.gather(via1[0].sign_out(a), via2[0].sign_out(b))
        # agent 1: expires; both replicas' sweepers see it
        await via1[1].sign_in()
        # agent 2: its heartbeats alternate between replicas, then it signs out explicitly
        s = await via2[2].sign_in()
        for client in (via1[2], via2[2], via1[2]):
            await client.heartbeat(s)
        await via1[2].sign_out(s)
        for agent in agents:
            await probe.wait_for(of(agent, SIGNED_OUT), timeout=DETECTION + 5)
        await probe.drain(1.5)
    for agent in agents:
        # at-least-once: a replica may re-publish a transition, always with the same id
        events = logical([r for r in probe.records if of(agent)(r)])
        assert [e["type"] for e in events] == [SIGNED_IN, SIGNED_OUT], agent
    for c in via1 + via2:
        await c.close()


async def test_restart_keeps_sessions_and_expiry_still_fires(
    replicas: Replicas, infra, make_token, unique
) -> None:
    runtime, _ = await replicas.start()
    org, stays, leaves = unique("org"), unique("agent"), unique("agent")
    c_stays = Client(runtime.grpc.address, make_token(org, stays))
    c_leaves = Client(runtime.grpc.address, make_token(org, leaves))
    s_stays, s_leaves = await c_stays.sign_in(), await c_leaves.sign_in()
    last = await c_leaves.heartbeat(s_leaves)
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        # (probe setup can take a while on a loaded machine: keep the 1.5 s session alive)
        await c_stays.heartbeat(s_stays)
        await replicas.stop(runtime)
        runtime2, _ = await replicas.start()
        c_stays2 = Client(runtime2.grpc.address, make_token(org, stays))
        deadline = asyncio.get_running_loop().time() + DETECTION + 1.5
        while asyncio.get_running_loop().time() < deadline:
            await c_stays2.heartbeat(s_stays)  # the same session survives the restart
            await asyncio.sleep(0.3)
        [out] = await probe.wait_for(of(leaves, SIGNED_OUT), timeout=5)
        # marker: had the session not survived, this sign-out would fail; it is published
        # after anything the restart could have published for the agent
        assert (await c_stays2.sign_out(s_stays)).agent_signed_out
        await probe.wait_for(of(stays, SIGNED_OUT))
    outs = [
        e for e in logical([r for r in probe.records if of(stays)(r)]) if e["type"] != SIGNED_IN
    ]
    assert [e["data"]["reason"] for e in outs] == ["explicit"]
    assert event(out)["data"]["reason"] == "expired"
    expected = last.expires_at.ToDatetime() + timedelta(0)
    assert _dt(event(out)["time"]).replace(tzinfo=None) == expected
    for c in (c_stays, c_leaves, c_stays2):
        await c.close()


async def test_a_running_replica_publishes_what_a_non_publishing_one_stored(
    replicas: Replicas, infra, make_token, unique, mongo_db
) -> None:
    """The periodic relay scan (pending markers, not a full outbox scan) of a replica that
    started *before* the transition publishes it, with the transition's event id, and then
    clears the marker."""
    _publisher, _ = await replicas.start()  # its startup full scan is done before we claim
    silent, _ = await replicas.start(publish_enabled=False)
    org, agent = unique("org"), unique("agent")
    client = Client(silent.grpc.address, make_token(org, agent))
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        await client.sign_in()
        [signed_in] = await probe.wait_for(
            of(agent, SIGNED_IN),
            timeout=FAST["relay_min_age_seconds"] + FAST["relay_scan_interval_seconds"] + 10,
        )
    stored = await mongo_db["outbox"].find_one({"agent_id": agent, "seq": 1})
    assert stored is not None and stored["event_id"] == event(signed_in)["id"]

    async def cleared() -> bool:
        return await mongo_db["outbox_pending"].find_one({"_id": stored["_id"]}) is None

    await wait_until(cleared, timeout=10)
    await client.close()
