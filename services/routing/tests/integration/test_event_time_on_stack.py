"""PRODUCT.md §1 on the real stack: decisions on event time, taken once final.

A sign-in consumed 200 ms after a later inbound, and an outbound consumed 200 ms after a later
sign-out, end exactly as the event-time reference: no decision. Presence progress marks are
published by the test (``ProgressMarks``), as presence does. "Nothing published" is checked up
to a marker: a decision on the same partition that is due after the one that must not happen,
then the routing topic read to its end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner
from inbox_contracts import utc_now
from inbox_contracts.topics import MESSAGES, ROUTING
from inbox_testing import TopicProbe, wait_until
from routing_testing import (
    ProgressMarks,
    assigned,
    inbound,
    outbound,
    signed_in,
    signed_out,
)

pytestmark = pytest.mark.infra
MS = timedelta(milliseconds=1)


async def same_partition(stack, conv: str, unique: Callable[[str], str]) -> str:  # type: ignore[no-untyped-def]
    """Another conversation id on ``conv``'s partition (the producer's default partitioner)."""
    parts = sorted(await stack.producer.partitions_for(MESSAGES.name))
    pick = DefaultPartitioner()
    want = pick(conv.encode(), parts, parts)
    while True:
        other = unique("marker")
        if pick(other.encode(), parts, parts) == want:
            return other


def decisions_of(org: str, records) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    out = []
    for r in records:
        d = json.loads(r.value)["data"]
        if d["org_id"] == org:
            out.append((d["conversation_id"], d["reason"]))
    return out


async def _is(client, org, conv, expected) -> bool:  # type: ignore[no-untyped-def]
    return await client.state_or_none(org, conv) == expected


async def test_a_sign_in_200ms_late_ends_as_the_reference(stack, client, unique) -> None:  # type: ignore[no-untyped-def]
    org, ana, bob = unique("org"), unique("ana"), unique("bob")
    conv = unique("conv")
    marker = await same_partition(stack, conv, unique)
    await client.enable(org)
    async with ProgressMarks(stack.producer) as marks:
        t = utc_now()
        for agent, c in ((ana, conv), (bob, marker)):
            await stack.publish(
                signed_in(org, agent, t),
                inbound(org, c, t + MS),
                assigned(org, c, agent, t + 2 * MS),
                outbound(org, c, t + 3 * MS, agent=agent),  # PENDING: no R1 at the sign-out
                signed_out(org, agent, t + 4 * MS),
            )
        await wait_until(lambda: _is(client, org, conv, ("PENDING", ana)), timeout=20)
        await wait_until(lambda: _is(client, org, marker, ("PENDING", bob)), timeout=20)
        async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
            marks.hold = utc_now()  # presence has promised nothing later than this yet
            back = marks.hold + MS  # ana signs in again ...
            await stack.publish(
                inbound(org, conv, back + 200 * MS),  # ... 200 ms before this inbound
                inbound(org, marker, back + 201 * MS),  # R2: bob is still signed out
                signed_in(org, ana, back),  # consumed after the later inbound
            )
            marks.hold = None
            await probe.wait_for(lambda r: decisions_of(org, [r]) != [], timeout=20)
            await probe.read_to_end()
            assert decisions_of(org, probe.records) == [(marker, "moved_to_new_while_signed_out")]
    # the read model is asynchronous, and a conversation's view waits for its pending decision
    await wait_until(lambda: _is(client, org, conv, ("NEW", ana)), timeout=10)
    await wait_until(lambda: _is(client, org, marker, ("NEW", "")), timeout=10)


async def test_an_outbound_200ms_late_ends_as_the_reference(stack, client, unique) -> None:  # type: ignore[no-untyped-def]
    org, ana = unique("org"), unique("ana")
    conv = unique("conv")
    marker = await same_partition(stack, conv, unique)
    await client.enable(org)
    # The set-up is stamped 1 s back, so that the outbound stamped 200 ms before the sign-out
    # comes after the assignment in event time however fast the set-up runs (on a quiet machine
    # it takes less than 200 ms); presence promises nothing past the sign-in until it is sent.
    t = utc_now() - timedelta(seconds=1)
    marks = ProgressMarks(stack.producer)
    marks.hold = t - MS
    async with marks:
        await stack.publish(signed_in(org, ana, t))
        marks.hold = None
        for c in (conv, marker):
            await stack.publish(inbound(org, c, t + MS), assigned(org, c, ana, t + 2 * MS))
        await wait_until(lambda: _is(client, org, conv, ("NEW", ana)), timeout=20)
        await wait_until(lambda: _is(client, org, marker, ("NEW", ana)), timeout=20)
        async with TopicProbe(stack.infra.kafka_bootstrap, ROUTING.name) as probe:
            gone = utc_now()
            await stack.publish(
                signed_out(org, ana, gone),  # R1 for both NEW conversations, as they look now
                outbound(org, conv, gone - 200 * MS, agent=ana),  # 200 ms earlier, consumed later
            )
            started = utc_now()
            await probe.wait_for(lambda r: decisions_of(org, [r]) != [], timeout=20)
            waited = utc_now() - started
            await probe.read_to_end()
            assert decisions_of(org, probe.records) == [(marker, "agent_signed_out")]
    assert await client.conversation(org, conv) == ("PENDING", ana)
    await wait_until(lambda: _is(client, org, marker, ("NEW", "")), timeout=10)
    # R1 waits for the conversation streams to pass the sign-out + L (500 ms), and no longer
    assert timedelta(milliseconds=400) < waited < timedelta(seconds=3)
