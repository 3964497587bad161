"""Delivery properties on the real stack: topic order, dead letters, two instances."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timedelta

import pytest
from inbox_contracts import CloudEvent, EventData, utc_now
from inbox_contracts.topics import MESSAGES, ROUTING
from inbox_testing import TopicProbe, wait_until
from routing_testing import (
    assigned,
    expected_outcome,
    follow_up,
    inbound,
    outbound,
    resolved,
    signed_in,
    signed_out,
    unassigned,
)

from .conftest import topic_of

pytestmark = pytest.mark.infra
#: Scenarios are stamped this far ahead of the time they are published, so that no event is
#: late by more than L even when publishing a whole scenario is slow (a loaded machine: one
#: acknowledged send after the other, topic after topic).
AHEAD = timedelta(seconds=3)


def scenario(
    org: str, convs: list[str], agents: list[str], t0: datetime, seed: int
) -> list[CloudEvent[EventData]]:
    """A random history in event-time order (every conversation starts with an inbound)."""
    rnd = random.Random(seed)
    events: list[CloudEvent[EventData]] = []
    t = t0

    def tick() -> datetime:
        nonlocal t
        t += timedelta(milliseconds=rnd.randint(5, 50))
        return t

    for a in agents:
        events.append(signed_in(org, a, tick()))
    for c in convs:
        events.append(inbound(org, c, tick()))
    for _ in range(len(convs) * 4):
        c, a = rnd.choice(convs), rnd.choice(agents)
        kind = rnd.choice(
            [
                "assign",
                "assign",
                "inbound",
                "outbound",
                "follow",
                "resolve",
                "unassign",
                "in",
                "out",
                "out",
            ]
        )
        if kind == "assign":
            events.append(assigned(org, c, a, tick()))
        elif kind == "inbound":
            events.append(inbound(org, c, tick()))
        elif kind == "outbound":
            events.append(outbound(org, c, tick(), agent=a))
        elif kind == "follow":
            events.append(follow_up(org, c, tick()))
        elif kind == "resolve":
            events.append(resolved(org, c, tick()))
        elif kind == "unassign":
            events.append(unassigned(org, c, tick()))
        elif kind == "in":
            events.append(signed_in(org, a, tick()))
        else:
            events.append(signed_out(org, a, tick()))
    return events


async def converged(client, org: str, expected: dict[str, tuple[str, str]]) -> bool:  # type: ignore[no-untyped-def]
    for conv, state in expected.items():
        if await client.state_or_none(org, conv) != state:
            return False
    return True


async def final_states(client, org: str, convs) -> dict[str, tuple[str, str] | None]:  # type: ignore[no-untyped-def]
    return {c: await client.state_or_none(org, c) for c in convs}


def orders(events: list[CloudEvent[EventData]]) -> dict[str, list[CloudEvent[EventData]]]:
    by_topic: dict[str, list[CloudEvent[EventData]]] = {}
    for e in events:
        by_topic.setdefault(topic_of(e), []).append(e)
    m, c, p = (
        by_topic.get(n, [])
        for n in ("inbox.messages.v1", "inbox.conversations.v1", "inbox.presence.v1")
    )
    return {
        "event_time": events,
        "messages_conversations_presence": [*m, *c, *p],
        "conversations_messages_presence": [*c, *m, *p],
    }


async def test_same_scenario_in_different_topic_orders_ends_in_the_same_state(
    stack,
    client,
    routing,
    unique,  # type: ignore[no-untyped-def]
) -> None:
    agents = [unique("agent") for _ in range(2)]
    results = {}
    for name in orders([]):
        org = unique("org")
        await client.enable(org)
        convs = [f"conv-{i}" for i in range(6)]
        events = scenario(org, convs, agents, utc_now() + AHEAD, seed=7)
        expected, decision_ids = expected_outcome(
            events, setting_on_since=events[0].data.occurred_at
        )
        async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
            await stack.publish(*orders(events)[name])
            await stack.consumed(routing)
            mine = lambda r, o=org: json.loads(r.value)["data"]["org_id"] == o  # noqa: E731
            if decision_ids:
                await probe.wait_for(mine, count=len(decision_ids), timeout=30)
            try:
                await wait_until(lambda o=org, x=expected: converged(client, o, x), timeout=60)
            except AssertionError:
                got = await final_states(client, org, convs)
                raise AssertionError(f"{name}: expected {expected}, got {got}") from None
            await probe.read_to_end()
            got_ids = {json.loads(r.value)["id"] for r in probe.records if mine(r)}
        assert got_ids == decision_ids, name
        results[name] = await final_states(client, org, convs)
    assert len({json.dumps(sorted(r.items())) for r in results.values()}) == 1


async def test_malformed_event_goes_to_dead_letters_and_partition_goes_on(
    stack,
    client,
    unique,  # type: ignore[no-untyped-def]
) -> None:
    org, conv = unique("org"), unique("conv")
    garbage = b'{"type": "inbox.messages.inbound_received.v1", "data": ' + conv.encode()
    async with TopicProbe(stack.infra.kafka_bootstrap, MESSAGES.dead_letter) as dlq:
        await stack.producer.send_and_wait(MESSAGES.name, garbage, key=conv.encode())
        # the same key: same partition, right behind the poison record
        await stack.publish(inbound(org, conv, utc_now()))
        [dead] = await dlq.wait_for(lambda r: r.value == garbage, timeout=20)
        headers = dict(dead.headers)
        assert headers["x-dlq-error-type"] == b"MalformedEvent"
        assert headers["x-dlq-consumer-group"] == stack.groups[0].encode()
    await wait_until(lambda: converged(client, org, {conv: ("NEW", "")}), timeout=20)


async def test_two_instances_in_one_group_give_the_same_results_as_one(
    stack,
    client,
    routing,
    unique,  # type: ignore[no-untyped-def]
) -> None:
    org = unique("org")
    await client.enable(org)
    agents = [unique("agent") for _ in range(3)]
    convs = [f"conv-{i}" for i in range(24)]
    events = scenario(org, convs, agents, utc_now() + AHEAD, seed=11)
    expected, decision_ids = expected_outcome(events, setting_on_since=events[0].data.occurred_at)
    ordered = orders(events)["messages_conversations_presence"]
    half = len(ordered) // 2
    async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
        await stack.publish(*ordered[:half])
        second = await stack.start_routing()  # joins the group: a rebalance mid-stream
        try:
            await stack.publish(*ordered[half:])
            await stack.consumed(routing, second)
            await wait_until(lambda: converged(client, org, expected), timeout=60)
            owned = [routing.owner.owned, second.owner.owned]
            assert all(owned) and not (owned[0] & owned[1])  # both own partitions, disjoint
            mine = lambda r: json.loads(r.value)["data"]["org_id"] == org  # noqa: E731
            if decision_ids:
                await probe.wait_for(mine, count=len(decision_ids), timeout=20)
            await probe.drain(0.5)
            got_ids = [json.loads(r.value)["id"] for r in probe.records if mine(r)]
            assert set(got_ids) == decision_ids
        finally:
            await second.runtime.stop()
    await asyncio.sleep(0)
