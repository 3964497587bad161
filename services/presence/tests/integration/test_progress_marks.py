"""Progress marks on the real Kafka + FerretDB, two in-process replicas."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from datetime import UTC, datetime

import pytest
from inbox.presence.v1 import presence_pb2 as pb
from inbox_contracts.topics import PRESENCE
from inbox_testing import TopicProbe
from presence_test_helpers import (
    PROGRESS,
    SIGNED_IN,
    SIGNED_OUT,
    Client,
    Replicas,
    check_marks_never_overtake,
    event,
    of,
)

pytestmark = pytest.mark.infra


async def test_marks_arrive_while_idle_and_never_overtake_a_transition(
    replicas: Replicas, infra, make_token, unique
) -> None:
    r1, _ = await replicas.start()
    r2, _ = await replicas.start()
    org = unique("org")
    expires, leaves, forced = unique("agent"), unique("agent"), unique("agent")
    admin = Client(r1.grpc.address, make_token(org, unique("admin"), role="admin"))
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        c_exp = Client(r1.grpc.address, make_token(org, expires))
        c_leave = Client(r2.grpc.address, make_token(org, leaves))
        c_forced = Client(r2.grpc.address, make_token(org, forced, teams=("team-b", "team-a")))
        s_exp, s_leave, _ = await asyncio.gather(
            c_exp.sign_in(), c_leave.sign_in(), c_forced.sign_in()
        )
        await c_exp.heartbeat(s_exp)  # then stops: expires at last heartbeat + timeout
        await c_leave.sign_out(s_leave)
        await admin.stub.ForceSignOut(
            pb.ForceSignOutRequest(agent_id=forced), metadata=admin.md, timeout=10
        )
        for agent in (expires, leaves, forced):
            await probe.wait_for(of(agent, SIGNED_OUT), timeout=15)
        mine = [event(r) for r in probe.records if event(r)["data"].get("org_id") == org]
        latest = max(datetime.fromisoformat(e["data"]["occurred_at"]) for e in mine)

        def passed() -> set[int]:  # partitions whose marks passed every transition
            return {p for p, w in check_marks_never_overtake(probe.records, org) if w >= latest}

        deadline = asyncio.get_running_loop().time() + 15
        while passed() != {r.partition for r in probe.records} and (
            asyncio.get_running_loop().time() < deadline
        ):
            await probe.drain(0.2)
        idle_from = datetime.now(UTC)
        await probe.drain(1.5)  # idle: marks keep coming

        def idle_marks(partition: int) -> int:
            return sum(
                1
                for r in probe.records
                if r.partition == partition
                and event(r)["type"] == PROGRESS
                and r.timestamp / 1000 >= idle_from.timestamp()
            )

        deadline = asyncio.get_running_loop().time() + 5  # the probe may fetch one later
        while min(map(idle_marks, {r.partition for r in probe.records})) < 10 and (
            asyncio.get_running_loop().time() < deadline
        ):
            await probe.drain(0.3)
    check_marks_never_overtake(probe.records, org)
    partitions = {r.partition for r in probe.records}
    assert passed() == partitions
    # the sign-in carries the token's teams (sorted)
    [signed_in] = [event(r) for r in probe.records if of(forced, SIGNED_IN)(r)]
    assert signed_in["data"]["teams"] == ["team-a", "team-b"]
    idle = [r for r in probe.records if event(r)["type"] == PROGRESS]
    # every mark is on the partition it names (all of a round's marks go out in one call)
    assert all(event(r)["data"]["partition"] == r.partition for r in idle)
    idle = [r for r in idle if r.timestamp / 1000 >= idle_from.timestamp()]
    for partition in partitions:
        stamps = sorted(r.timestamp for r in idle if r.partition == partition)
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert gaps and max(gaps) < 1000, (partition, gaps[-5:])  # target 50 ms; loaded CI
        lags = [
            r.timestamp - datetime.fromisoformat(event(r)["data"]["watermark"]).timestamp() * 1000
            for r in idle
            if r.partition == partition
        ]
        assert statistics.median(lags) < 500, statistics.median(lags)  # idle: mark ~ now
    for c in (c_exp, c_leave, c_forced, admin):
        await c.close()
