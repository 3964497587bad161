"""Self-fencing: a replica whose progress floor could not be renewed for half its TTL claims
nothing (and deletes no session) until its floor write has landed again - past the TTL the
marks publisher takes it for dead and would no longer wait for what it is claiming."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fake_store import FakeStore
from inbox_kit.auth import Principal, Role
from presence_service.domain.model import AgentRef
from presence_service.service_layer import handlers

from .test_reconcile import built

ANA = Principal("org-1", "ana", Role.AGENT)
AGENT = AgentRef("org-1", "ana")


class StallingFloors(FakeStore):
    """Floor writes wait until the test lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.floor_writes_open = asyncio.Event()
        self.floor_writes_open.set()
        self.floor_writes: list[datetime] = []

    async def write_floor(self, floor: datetime, at: datetime) -> None:
        await self.floor_writes_open.wait()
        self.floor_writes.append(at)
        await super().write_floor(floor, at)


async def test_a_replica_past_its_lease_claims_only_after_renewing_it(clock: Any) -> None:
    store = StallingFloors()
    presence = built(store, clock).presence
    session = await handlers.sign_in(presence, ANA)  # first claim: renews the lease itself
    assert presence.lease_until is not None
    assert len(store.log(AGENT)) == 1

    store.floor_writes_open.clear()  # the store stalls for this replica's floor writes
    clock.advance(presence.replica_ttl.total_seconds() + 1)  # past the lease
    sign_out = asyncio.create_task(handlers.sign_out(presence, ANA, session.session_id))
    for _ in range(200):
        await asyncio.sleep(0)
    assert not sign_out.done()
    assert len(store.log(AGENT)) == 1  # fenced: no sign-out claimed
    assert session.session_id in store.sessions  # nor the session deleted

    store.floor_writes_open.set()
    assert await asyncio.wait_for(sign_out, timeout=5) is True
    assert store.floor_writes[-1] == clock.now  # renewed at the current time first
    assert presence.lease_until == clock.now + presence.replica_ttl
    assert [t.signed_in for t in store.log(AGENT)] == [True, False]


async def test_a_fresh_lease_costs_no_floor_write(clock: Any) -> None:
    store = StallingFloors()
    presence = built(store, clock).presence
    await handlers.sign_in(presence, ANA)
    written = len(store.floor_writes)
    clock.advance(presence.replica_ttl.total_seconds() / 4)  # well within the lease
    await handlers.sign_in(presence, Principal("org-1", "bo", Role.AGENT))
    assert len(store.floor_writes) == written
    assert len(store.agents()) == 2
