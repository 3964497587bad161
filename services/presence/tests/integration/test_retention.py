"""Retention on the real FerretDB (no TTL there): the bounded pruning round."""

from __future__ import annotations

from datetime import timedelta

import pytest
from inbox_contracts.topics import PRESENCE
from inbox_testing import TopicProbe, wait_until
from presence_service.domain.model import AgentRef, event_id_for, transition_key
from presence_service.service_layer import handlers
from presence_test_helpers import SIGNED_IN, SIGNED_OUT, Client, Replicas, event, of

pytestmark = pytest.mark.infra


async def test_pruning_keeps_each_agents_last_state_and_the_log_continues(
    replicas: Replicas, infra, make_token, unique, mongo_db
) -> None:
    runtime, presence = await replicas.start()
    org, agent = unique("org"), unique("agent")
    client = Client(runtime.grpc.address, make_token(org, agent))
    for _ in range(2):  # transitions 1..4
        await client.sign_out(await client.sign_in())

    async def published() -> bool:
        n = await mongo_db["outbox"].count_documents({"agent_id": agent, "published": True})
        return n == 4

    await wait_until(published, timeout=15)
    assert await mongo_db["session_ends"].count_documents({"agent_id": agent}) == 2
    # nothing is old enough yet
    assert await handlers.prune_once(presence, timedelta(hours=1), 1000) == (0, 0)
    # everything is "old": transitions 1..3 and both ends go, the head (4) stays; bounded
    assert await handlers.prune_once(presence, timedelta(0), 2) == (2, 2)
    assert await handlers.prune_once(presence, timedelta(0), 1000) == (1, 0)
    left = [d["seq"] async for d in mongo_db["outbox"].find({"agent_id": agent})]
    assert left == [4]
    [view] = await client.presence(agent)
    assert not view.signed_in and view.since.ToDatetime().year > 2000
    async with TopicProbe(infra.kafka_bootstrap, PRESENCE.name) as probe:
        await client.sign_in()  # the log continues at 5, with its own event id
        [record] = await probe.wait_for(of(agent, SIGNED_IN))
    assert event(record)["id"] == event_id_for(transition_key(AgentRef(org, agent), 5))
    assert [r for r in probe.records if of(agent, SIGNED_OUT)(r)] == []
    await client.close()
