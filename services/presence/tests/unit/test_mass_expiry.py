"""A mass expiry costs a few look-ups per chunk of agents, not per session: every look-up of
an agent's sessions or ends is a collection scan on FerretDB (the 500-session expiry was
scan-bound). Counted on the in-memory store; the end times stay exact."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from inbox_kit.auth import Principal, Role
from presence_service.domain.model import AgentRef, EndReason, Session, SessionEnd
from presence_service.service_layer import handlers

from .test_reconcile import built

AGENTS = 200


class CountingStore:
    """Counts the calls that scan on FerretDB (everything else is delegated)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.scans = {"sessions_of": 0, "ends_since": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def sessions_of(self, agents: list[AgentRef]) -> list[Session]:
        self.scans["sessions_of"] += 1
        await asyncio.sleep(0)  # a real round trip: concurrent callers queue up meanwhile
        result: list[Session] = await self._inner.sessions_of(agents)
        return result

    async def ends_since(self, since: Mapping[AgentRef, datetime]) -> list[SessionEnd]:
        self.scans["ends_since"] += 1
        await asyncio.sleep(0)
        result: list[SessionEnd] = await self._inner.ends_since(since)
        return result


async def test_a_mass_expiry_scans_per_chunk_and_ends_each_session_at_its_deadline(
    store: Any, clock: Any
) -> None:
    counting = CountingStore(store)
    presence = built(counting, clock).presence
    principals = [Principal("org-1", f"agent-{i:03d}", Role.AGENT) for i in range(AGENTS)]
    sessions = []
    for i, principal in enumerate(principals):
        sessions.append(await handlers.sign_in(presence, principal))
        clock.advance(0.01 * (i % 7))  # different deadlines
    deadlines = {s.session_id: s.expires_at for s in sessions}
    counting.scans = dict.fromkeys(counting.scans, 0)

    clock.advance(16)  # past every deadline (timeout 15 s) + the handover grace
    assert await handlers.expire_overdue(presence) == AGENTS

    chunks = -(-AGENTS // handlers.EXPIRY_CHUNK)
    # per chunk: one round that claims the sign-outs, one that finds the logs settled
    assert counting.scans["sessions_of"] <= 2 * chunks, counting.scans
    assert counting.scans["ends_since"] <= chunks, counting.scans
    assert len(store.ends) == AGENTS and not store.sessions and not len(presence.live)
    for s in sessions:
        end = store.ends[s.session_id]
        assert (end.reason, end.ended_at) == (EndReason.EXPIRED, deadlines[s.session_id])
        [signed_in, signed_out] = store.log(s.agent)
        assert signed_in.signed_in and not signed_out.signed_in
        assert signed_out.occurred_at == deadlines[s.session_id]
        assert signed_out.reason is EndReason.EXPIRED


async def test_concurrent_sign_outs_share_their_reconcile(store: Any, clock: Any) -> None:
    counting = CountingStore(store)
    presence = built(counting, clock).presence
    principals = [Principal("org-1", f"agent-{i:03d}", Role.AGENT) for i in range(40)]
    sessions = [await handlers.sign_in(presence, p) for p in principals]
    counting.scans = dict.fromkeys(counting.scans, 0)
    clock.advance(1)
    signed_out = await asyncio.gather(
        *(
            handlers.sign_out(presence, p, s.session_id)
            for p, s in zip(principals, sessions, strict=True)
        )
    )
    assert all(signed_out)
    assert counting.scans["sessions_of"] <= 4, counting.scans  # not 2 per sign-out
    for s in sessions:
        assert [t.signed_in for t in store.log(s.agent)] == [True, False]
        assert store.log(s.agent)[1].occurred_at == s.started_at + timedelta(seconds=1)
