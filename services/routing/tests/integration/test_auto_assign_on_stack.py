"""Automatic assignment (PRODUCT.md §4) through real Kafka + FerretDB, one test per rule.

Presence events are published by the tests (as presence would, with the agent's teams on the
sign-in); decisions are observed on inbox.routing.v1 and over gRPC. Includes the three failures
users report of comparable products: queued conversations never assigned when capacity frees
(Chatwoot #10583), not oldest first (#10376), unbalanced under a capacity limit (#11034).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from inbox.routing.v1 import routing_pb2 as pb
from inbox_contracts import utc_now
from inbox_contracts.topics import ROUTING
from inbox_testing import TopicProbe, bearer, wait_until
from routing_testing import availability, inbound, resolved, signed_in, signed_out

pytestmark = pytest.mark.infra
AUTO = "inbox.routing.auto_assigned.v1"


def auto_assigned(org: str) -> Callable[[Any], bool]:
    def check(record: Any) -> bool:
        body = json.loads(record.value)
        return bool(body["type"] == AUTO and body["data"]["org_id"] == org)

    return check


def assignments(probe: TopicProbe, org: str) -> dict[str, str]:
    """conversation -> agent of the latest automatic assignment seen."""
    out: dict[str, str] = {}
    for r in probe.records:
        if auto_assigned(org)(r):
            d = json.loads(r.value)["data"]
            out[d["conversation_id"]] = d["assignee_id"]
    return out


async def configure(
    client: Any, org: str, *, capacity: int = 0, teams: dict[str, str] | None = None
) -> None:
    await client.enable(org)  # "Remove assignment" (R1/R2) on as well
    await client.stub.UpdateAssignmentSettings(
        pb.UpdateAssignmentSettingsRequest(
            enabled=True, default_capacity=capacity, channel_teams=teams or {}
        ),
        metadata=bearer(client.make_token(org, "boss", role="admin")),
        timeout=10,
    )


async def waiting(client: Any, org: str) -> pb.ListWaitingConversationsResponse:
    return await client.stub.ListWaitingConversations(
        pb.ListWaitingConversationsRequest(),
        metadata=bearer(client.make_token(org, "ana")),
        timeout=10,
    )


def clock() -> Callable[[float], datetime]:
    t0 = utc_now()
    return lambda n: t0 + timedelta(seconds=n)


async def test_sign_out_hands_new_work_to_the_next_available_agent(
    stack: Any, client: Any, unique: Callable[[str], str]
) -> None:
    org, ana, bob, conv = unique("org"), unique("ana"), unique("bob"), unique("conv")
    await configure(client, org)
    s = clock()
    async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
        await stack.publish(signed_in(org, ana, s(0)), inbound(org, conv, s(0.1)))
        [first] = await probe.wait_for(auto_assigned(org), timeout=20)
        assert json.loads(first.value)["data"]["assignee_id"] == ana
        await stack.publish(signed_in(org, bob, s(0.2)))
        out = signed_out(org, ana, s(0.3))
        await stack.publish(out)  # R1 unassigns it; it waits again; bob gets it
        recs = await probe.wait_for(auto_assigned(org), count=2, timeout=20)
        data = json.loads(recs[-1].value)["data"]
        assert data["assignee_id"] == bob and data["conversation_id"] == conv
        assert data["reason"] == "conversation_waiting"
        assert recs[-1].key == conv.encode()
    await wait_until(lambda: _is(client, org, conv, ("NEW", bob)), timeout=10)
    trail = await client.stub.GetAuditTrail(
        pb.GetAuditTrailRequest(conversation_id=conv),
        metadata=bearer(client.make_token(org, "boss", role="admin")),
    )
    kinds = [e.kind for e in trail.entries]
    assert kinds.count(pb.AUDIT_ENTRY_KIND_AUTO_ASSIGNED) == 2
    assert pb.AUDIT_ENTRY_KIND_AUTO_UNASSIGNED in kinds
    last = trail.entries[-1]
    assert last.assignee_id == bob and last.actor == "routing"
    assert last.auto_assign_reason == pb.AUTO_ASSIGN_REASON_CONVERSATION_WAITING
    assert last.decision_id == json.loads(recs[-1].value)["id"]


async def test_away_gets_nothing_capacity_full_waits_and_freed_capacity_takes_the_oldest(
    stack: Any, client: Any, unique: Callable[[str], str]
) -> None:
    """Chatwoot #10583 (queued never assigned when capacity frees) and #10376 (oldest)."""
    org, ana = unique("org"), unique("ana")
    c1, c2, c3 = unique("c1"), unique("c2"), unique("c3")
    await configure(client, org, capacity=1)
    s = clock()
    async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
        await stack.publish(
            signed_in(org, ana, s(0)), availability(org, ana, s(0.1), available=False)
        )
        await stack.publish(inbound(org, c1, s(0.2)))
        # the view is eventually consistent: c1 can show before the dispatcher consumed
        # ana's presence (another topic), so wait for the reason too
        away = "no eligible agent: 1 away"
        got = await wait_until(lambda: _waiting_ids(client, org, [c1], away), timeout=40)
        assert got.conversations[0].away == 1
        assert not assignments(await _drained(probe), org)  # Away: nothing new
        await stack.publish(availability(org, ana, s(0.3), available=True))
        await probe.wait_for(auto_assigned(org), timeout=20)
        assert assignments(probe, org) == {c1: ana}
        # capacity 1 is full: the next ones wait, the older first in the queue
        await stack.publish(inbound(org, c3, s(0.5)))
        await stack.publish(inbound(org, c2, s(0.4)))
        got = await wait_until(lambda: _waiting_ids(client, org, [c2, c3]), timeout=40)
        assert [w.conversation_id for w in got.conversations] == [c2, c3]
        assert got.conversations[0].reason == "no eligible agent: 1 at capacity"
        loads = await client.stub.ListAgentLoads(
            pb.ListAgentLoadsRequest(), metadata=bearer(client.make_token(org, ana))
        )
        [load] = loads.agents
        assert (load.agent_id, load.held, load.capacity) == (ana, 1, 1)
        # a resolve frees the slot: the oldest waiting one (c2) is assigned, c3 keeps waiting
        await stack.publish(resolved(org, c1, s(0.6)))
        await probe.wait_for(auto_assigned(org), count=2, timeout=20)
        assert assignments(probe, org) == {c1: ana, c2: ana}
        got = await wait_until(lambda: _waiting_ids(client, org, [c3]), timeout=40)
        assert got.total == 1


async def test_balanced_under_a_capacity_limit(
    stack: Any, client: Any, unique: Callable[[str], str]
) -> None:
    """Chatwoot #11034: with capacity 3 and three agents, nine conversations go 3/3/3 and
    the tenth waits; round robin on ties."""
    org = unique("org")
    agents = [unique(f"agent{i}") for i in range(3)]
    convs = [unique(f"conv{i}") for i in range(10)]
    await configure(client, org, capacity=3)
    s = clock()
    async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
        await stack.publish(*(signed_in(org, a, s(i * 0.01)) for i, a in enumerate(agents)))
        await stack.publish(*(inbound(org, c, s(1 + i * 0.01)) for i, c in enumerate(convs)))
        await probe.wait_for(auto_assigned(org), count=9, timeout=30)
        # the one the dispatcher learnt of last waits (conversations are assigned as they
        # arrive while agents have room; oldest first applies among those waiting)
        got = await wait_until(lambda: _one_waiting(client, org), timeout=20)
        assert got.conversations[0].reason == "no eligible agent: 3 at capacity"
        await _drained(probe)
    done = assignments(probe, org)
    assert len(done) == 9 and got.conversations[0].conversation_id not in done
    assert sorted(Counter(done.values()).values()) == [3, 3, 3]


async def test_channel_teams_route_to_team_members_only(
    stack: Any, client: Any, unique: Callable[[str], str]
) -> None:
    org, ana, bob = unique("org"), unique("ana"), unique("bob")
    billing, other = unique("conv"), unique("conv")
    await configure(client, org, teams={"ch-billing": "team-billing"})
    s = clock()
    async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
        await stack.publish(
            signed_in(org, ana, s(0), teams=["team-sales"]),
            signed_in(org, bob, s(0.01), teams=["team-billing"]),
        )
        await stack.publish(inbound(org, billing, s(0.1), channel="ch-billing"))
        await stack.publish(inbound(org, other, s(0.2), channel="ch-unmapped"))
        await probe.wait_for(auto_assigned(org), count=2, timeout=20)
    done = assignments(probe, org)
    assert done[billing] == bob  # only bob is in team-billing
    assert done[other] == ana  # whole org: ana holds fewer


async def test_settings_are_validated_audited_and_admin_only(
    client: Any, unique: Callable[[str], str]
) -> None:
    import grpc

    org = unique("org")
    admin = bearer(client.make_token(org, "boss", role="admin"))
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await client.stub.UpdateAssignmentSettings(
            pb.UpdateAssignmentSettingsRequest(enabled=True, default_capacity=-1), metadata=admin
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await client.stub.UpdateAssignmentSettings(
            pb.UpdateAssignmentSettingsRequest(enabled=True),
            metadata=bearer(client.make_token(org, "ana")),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    before = await client.stub.GetAssignmentSettings(
        pb.GetAssignmentSettingsRequest(), metadata=admin
    )
    assert not before.enabled and before.updated_by == ""
    with pytest.raises(grpc.aio.AioRpcError) as control:
        await client.stub.UpdateAssignmentSettings(
            pb.UpdateAssignmentSettingsRequest(enabled=True, channel_teams={"ch\n": "t1"}),
            metadata=admin,
        )
    assert control.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # ids are stored as values, not MongoDB field names: '.' and a leading '$' are fine
    teams = {"t1": 2, "$t.2": 3}
    channels = {"fb.page": "$t.2", "$ch": "t1"}
    after = await client.stub.UpdateAssignmentSettings(
        pb.UpdateAssignmentSettingsRequest(
            enabled=True, default_capacity=4, team_capacities=teams, channel_teams=channels
        ),
        metadata=admin,
    )
    assert after.enabled and after.default_capacity == 4
    assert dict(after.team_capacities) == teams and dict(after.channel_teams) == channels
    assert after.updated_by == "boss" and after.updated_at.seconds > 0
    read = await client.stub.GetAssignmentSettings(
        pb.GetAssignmentSettingsRequest(), metadata=admin
    )
    assert dict(read.team_capacities) == teams and dict(read.channel_teams) == channels


async def _is(client: Any, org: str, conv: str, expected: tuple[str, str]) -> bool:
    return bool(await client.state_or_none(org, conv) == expected)


async def _waiting_ids(
    client: Any, org: str, expected: list[str], first_reason: str | None = None
) -> pb.ListWaitingConversationsResponse | None:
    got = await waiting(client, org)
    if [w.conversation_id for w in got.conversations] != expected:
        return None
    if first_reason is not None and got.conversations[0].reason != first_reason:
        return None
    return got


async def _one_waiting(client: Any, org: str) -> pb.ListWaitingConversationsResponse | None:
    got = await waiting(client, org)
    settled = got.total == 1 and got.conversations[0].reason.startswith("no eligible")
    return got if settled else None


async def _drained(probe: TopicProbe) -> TopicProbe:
    await probe.drain(0.5)
    return probe
