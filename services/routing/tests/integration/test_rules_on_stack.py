"""R1-R4 and setting-off through real Kafka + FerretDB, observed over gRPC and the routing topic."""

from __future__ import annotations

import json
from datetime import timedelta

import grpc
import pytest
from inbox.routing.v1 import routing_pb2 as pb
from inbox_contracts import utc_now
from inbox_contracts.topics import ROUTING
from inbox_testing import TopicProbe, bearer, wait_until
from routing_testing import (
    assigned,
    follow_up,
    inbound,
    outbound,
    signed_in,
    signed_out,
)

pytestmark = pytest.mark.infra


def decision_for(org: str, conv: str, reason: str):  # type: ignore[no-untyped-def]
    def check(record) -> bool:  # type: ignore[no-untyped-def]
        body = json.loads(record.value)
        d = body["data"]
        return d["org_id"] == org and d["conversation_id"] == conv and d["reason"] == reason

    return check


async def test_r1_sweep_and_audit_trail(stack, client, unique, make_token) -> None:  # type: ignore[no-untyped-def]
    org, ana = unique("org"), unique("ana")
    c_new, c_pend = unique("conv"), unique("conv")
    await client.enable(org)
    t0 = utc_now() + timedelta(seconds=1)
    s = lambda n: t0 + timedelta(seconds=n)  # noqa: E731
    await stack.publish(
        signed_in(org, ana, s(0)),
        inbound(org, c_new, s(1)),
        assigned(org, c_new, ana, s(2)),
        inbound(org, c_pend, s(1)),
        assigned(org, c_pend, ana, s(2)),
        outbound(org, c_pend, s(3), agent=ana),
    )
    await wait_until(lambda: _is(client, org, c_pend, ("PENDING", ana)), timeout=20)
    await wait_until(lambda: _is(client, org, c_new, ("NEW", ana)), timeout=20)
    async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
        out = signed_out(org, ana, s(4))
        await stack.publish(out)
        [rec] = await probe.wait_for(decision_for(org, c_new, "agent_signed_out"), timeout=20)
        body = json.loads(rec.value)
        assert body["data"]["previous_assignee_id"] == ana
        assert body["data"]["cause_event_id"] == out.id
        assert rec.key == c_new.encode()
    # the read model is written right after the decision is published
    await wait_until(lambda: _is(client, org, c_new, ("NEW", "")), timeout=10)
    assert await client.conversation(org, c_pend) == ("PENDING", ana)
    trail = await client.stub.GetAuditTrail(
        pb.GetAuditTrailRequest(conversation_id=c_new, page_size=2),
        metadata=bearer(make_token(org, "boss", role="admin")),
    )
    assert len(trail.entries) == 2 and trail.next_page_token
    rest = await client.stub.GetAuditTrail(
        pb.GetAuditTrailRequest(conversation_id=c_new, page_token=trail.next_page_token),
        metadata=bearer(make_token(org, "boss", role="admin")),
    )
    kinds = [e.kind for e in [*trail.entries, *rest.entries]]
    assert kinds[0] == pb.AUDIT_ENTRY_KIND_CREATED
    assert pb.AUDIT_ENTRY_KIND_ASSIGNED in kinds
    last = rest.entries[-1]
    assert last.kind == pb.AUDIT_ENTRY_KIND_AUTO_UNASSIGNED
    assert last.reason == pb.AUTO_UNASSIGN_REASON_AGENT_SIGNED_OUT
    assert last.previous_assignee_id == ana and last.cause_event_id == out.id


async def _same(got, expected) -> bool:  # type: ignore[no-untyped-def]
    return bool(await got == expected)


async def _is(client, org, conv, expected) -> bool:  # type: ignore[no-untyped-def]
    return await client.state_or_none(org, conv) == expected


async def test_r2_r3_r4(stack, client, routing, unique) -> None:  # type: ignore[no-untyped-def]
    org, ana, bob = unique("org"), unique("ana"), unique("bob")
    c2, c3, c4 = unique("conv-r2"), unique("conv-r3"), unique("conv-r4")
    await client.enable(org)
    t0 = utc_now() + timedelta(seconds=1)
    s = lambda n: t0 + timedelta(seconds=n)  # noqa: E731
    await stack.publish(
        signed_in(org, ana, s(0)),
        inbound(org, c2, s(1)),
        assigned(org, c2, ana, s(2)),
        outbound(org, c2, s(3), agent=ana),
        inbound(org, c4, s(1)),
        assigned(org, c4, ana, s(2)),
        outbound(org, c4, s(3), agent=ana),
        signed_out(org, ana, s(4)),
        # R3: bob never signed in; a deliberate assignment to him stands, even on new messages
        inbound(org, c3, s(1)),
        assigned(org, c3, bob, s(2)),
        inbound(org, c3, s(5)),
    )
    async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
        await stack.publish(inbound(org, c2, s(6)))  # R2
        await probe.wait_for(decision_for(org, c2, "moved_to_new_while_signed_out"), timeout=20)
        await wait_until(lambda: _is(client, org, c2, ("NEW", "")), timeout=10)
        back = signed_in(org, ana, s(7))
        await stack.publish(back)

        async def recorded() -> bool:
            timeline = (await routing.store.timelines([(org, ana)])).get((org, ana), [])
            return any(p.event_id == back.id for p in timeline)

        # presence and conversation events travel on different topics; this test is about R4,
        # not about a sign-in overtaken by a later message (see README, late-arriving events)
        await wait_until(recorded, timeout=20)
        await stack.publish(follow_up(org, c4, s(8)))  # R4
        await wait_until(lambda: _is(client, org, c4, ("NEW", ana)), timeout=20)
        await wait_until(lambda: _is(client, org, c3, ("NEW", bob)), timeout=20)
        assert await client.conversation(org, c2) == ("NEW", "")
        await probe.drain(0.5)
        mine = [r for r in probe.records if json.loads(r.value)["data"]["org_id"] == org]
        assert len(mine) == 1  # only the R2


async def test_setting_off_unassigns_nothing(stack, client, unique) -> None:  # type: ignore[no-untyped-def]
    org, ana = unique("org"), unique("ana")
    conv = unique("conv")
    t0 = utc_now()
    s = lambda n: t0 + timedelta(seconds=n)  # noqa: E731
    async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
        await stack.publish(
            signed_in(org, ana, s(0)),
            inbound(org, conv, s(1)),
            assigned(org, conv, ana, s(2)),
            signed_out(org, ana, s(3)),
            inbound(org, conv, s(4)),
        )
        await wait_until(lambda: _is(client, org, conv, ("NEW", ana)), timeout=20)
        marker = unique("marker")
        await stack.publish(inbound(org, marker, s(5)))  # processed after the others
        await wait_until(lambda: _is(client, org, marker, ("NEW", "")), timeout=20)
        await probe.drain(0.5)
        assert not [r for r in probe.records if json.loads(r.value)["data"]["org_id"] == org]
    assert await client.conversation(org, conv) == ("NEW", ana)


async def test_grpc_validation_auth_and_tenancy(stack, client, unique, make_token) -> None:  # type: ignore[no-untyped-def]
    org, other = unique("org"), unique("org")
    conv = unique("conv")
    settings = await client.stub.GetRoutingSettings(
        pb.GetRoutingSettingsRequest(), metadata=bearer(make_token(org, "ana"))
    )
    assert settings.remove_assignment_on_sign_out is False  # off by default
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await client.stub.UpdateRoutingSettings(
            pb.UpdateRoutingSettingsRequest(remove_assignment_on_sign_out=True),
            metadata=bearer(make_token(org, "ana")),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    updated = await client.enable(org)
    assert updated.remove_assignment_on_sign_out and updated.updated_by == "boss"
    await stack.publish(inbound(org, conv, utc_now()))
    await wait_until(lambda: _is(client, org, conv, ("NEW", "")), timeout=20)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await client.conversation(other, conv)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await client.stub.GetConversation(
            pb.GetConversationRequest(conversation_id=""), metadata=bearer(make_token(org, "ana"))
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unauth:
        await client.stub.GetConversation(pb.GetConversationRequest(conversation_id=conv))
    assert unauth.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_list_conversations_by_queue_and_assignee_paged(
    stack, client, unique, make_token
) -> None:  # type: ignore[no-untyped-def]
    org, ana = unique("org"), unique("ana")
    convs = sorted(unique("conv") for _ in range(5))
    t0 = utc_now()
    for i, conv in enumerate(convs):
        await stack.publish(inbound(org, conv, t0))
        if i % 2 == 0:
            await stack.publish(assigned(org, conv, ana, t0 + timedelta(seconds=1)))
    await stack.publish(outbound(org, convs[4], t0 + timedelta(seconds=2)))
    # the read model is written in the background, conversation by conversation: wait for
    # all of them, not only for the last one published
    states = [("NEW", ana), ("NEW", ""), ("NEW", ana), ("NEW", ""), ("PENDING", ana)]
    for conv, state in zip(convs, states, strict=True):
        await wait_until(lambda c=conv, s=state: _is(client, org, c, s), timeout=20)
    md = bearer(make_token(org, "ana"))
    seen: list[str] = []
    token = ""
    while True:
        page = await client.stub.ListConversations(
            pb.ListConversationsRequest(assignee_id=ana, page_size=2, page_token=token), metadata=md
        )
        seen += [c.conversation_id for c in page.conversations]
        token = page.next_page_token
        if not token:
            break
    assert seen == [convs[0], convs[2], convs[4]]
    new_of_ana = await client.stub.ListConversations(
        pb.ListConversationsRequest(queue=pb.CONVERSATION_QUEUE_NEW, assignee_id=ana), metadata=md
    )
    assert [c.conversation_id for c in new_of_ana.conversations] == [convs[0], convs[2]]
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await client.stub.ListConversations(
            pb.ListConversationsRequest(page_size=10_000), metadata=md
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
