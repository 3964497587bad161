"""What a sign-in and a ForceSignOut cost in store calls (counted on the in-memory store):
a sign-in is one group-committed write (plus one ``_id`` read: the next transition number
after the write for an agent already signed in - one store call, the store reads it with the
write's batch - the stored hint before it for an agent this replica does not know),
and concurrent ForceSignOuts of agents with many sessions share their look-ups."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from inbox_kit.auth import Principal, Role
from presence_service.domain.model import AgentRef, EndReason
from presence_service.service_layer import handlers

from .test_reconcile import built

ADMIN = Principal("org-1", "boss", Role.ADMIN)


class CountingStore:
    """Counts every store call (delegated to the in-memory store), yielding once per call
    like a real round trip, so that concurrent callers queue up meanwhile."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not asyncio.iscoroutinefunction(target) or name in ("write_floor", "floors", "lease"):
            return target

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            await asyncio.sleep(0)
            return await target(*args, **kwargs)

        return counted


async def test_a_sign_in_from_signed_out_is_one_write_and_no_probe(store: Any, clock: Any) -> None:
    counting = CountingStore(store)
    presence = built(counting, clock).presence
    ana = Principal("org-1", "ana", Role.AGENT)

    first = await handlers.sign_in(presence, ana)  # never signed in, unknown here
    assert counting.calls == Counter(head_hint=1, insert_session=1), counting.calls
    counting.calls.clear()

    await handlers.sign_in(presence, ana)  # signed in already (known here)
    assert counting.calls == Counter(insert_session_then_head=1), counting.calls

    clock.advance(1)
    for s in list(store.sessions.values()):
        await handlers.sign_out(presence, ana, s.session_id)
    counting.calls.clear()
    clock.advance(1)
    again = await handlers.sign_in(presence, ana)  # signed out, known here: no read at all
    assert counting.calls == Counter(insert_session=1), counting.calls

    log = store.log(AgentRef("org-1", "ana"))
    assert [(t.seq, t.signed_in) for t in log] == [(1, True), (2, False), (3, True)]
    assert (log[0].session_id, log[2].session_id) == (first.session_id, again.session_id)
    assert log[2].occurred_at == again.started_at


async def test_a_sign_in_with_a_stale_head_loses_its_claim_and_probes(
    store: Any, clock: Any
) -> None:
    """Another replica moved the log on (signed the agent in and out): the claim made with
    the insert loses, and the probe finds the real head."""
    presence = built(store, clock).presence
    other = built(store, clock).presence
    ana = Principal("org-1", "ana", Role.AGENT)
    s1 = await handlers.sign_in(presence, ana)
    await handlers.sign_out(presence, ana, s1.session_id)  # known here: t2 (out)
    clock.advance(1)
    s2 = await handlers.sign_in(other, ana)  # t3 (in), t4 (out) on the other replica
    clock.advance(1)
    await handlers.sign_out(other, ana, s2.session_id)
    clock.advance(1)

    s3 = await handlers.sign_in(presence, ana)  # claims t3 with the insert: lost

    log = store.log(AgentRef("org-1", "ana"))
    assert [(t.seq, t.signed_in) for t in log] == [
        (1, True),
        (2, False),
        (3, True),
        (4, False),
        (5, True),
    ]
    assert log[4].session_id == s3.session_id


async def test_concurrent_force_sign_outs_share_their_look_ups(store: Any, clock: Any) -> None:
    counting = CountingStore(store)
    presence = built(counting, clock).presence
    agents = [Principal("org-1", f"agent-{i}", Role.AGENT) for i in range(10)]
    for agent in agents:
        for _ in range(10):
            await handlers.sign_in(presence, agent)
    counting.calls.clear()
    clock.advance(1)

    ended = await asyncio.gather(
        *(handlers.force_sign_out(presence, ADMIN, a.agent_id) for a in agents)
    )

    assert ended == [10] * 10
    # one look-up to find the sessions, one (the reconcile) to see that no sign-in raced
    assert counting.calls["sessions_of"] <= 2, counting.calls
    assert counting.calls["ends_since"] == 0, counting.calls
    assert counting.calls["ended_ids"] <= 1, counting.calls
    assert not store.sessions and len(presence.live) == 0
    for a in agents:
        [signed_in, signed_out] = store.log(AgentRef("org-1", a.agent_id))
        assert signed_in.signed_in and not signed_out.signed_in
        assert signed_out.reason is EndReason.FORCED
        assert signed_out.occurred_at == clock.now


async def test_after_learning_every_stored_hint_a_new_agent_signs_in_without_a_read(
    store: Any, clock: Any
) -> None:
    """With every stored hint learned, an agent unknown here has no transition retention may
    have pruned: its sign-in claims transition 1 at once, for half the retention period."""
    counting = CountingStore(store)
    presence = built(counting, clock).presence
    await presence.learn_stored_heads()
    counting.calls.clear()

    await handlers.sign_in(presence, Principal("org-1", "new", Role.AGENT))
    assert counting.calls == Counter(insert_session=1), counting.calls

    clock.advance(presence.retention.total_seconds() / 2)
    counting.calls.clear()
    await handlers.sign_in(presence, Principal("org-1", "newer", Role.AGENT))
    assert counting.calls == Counter(head_hint=1, insert_session=1), counting.calls


async def test_two_concurrent_force_sign_outs_of_one_agent_count_each_session_once(
    store: Any, clock: Any
) -> None:
    presence = built(store, clock).presence
    ana = Principal("org-1", "ana", Role.AGENT)
    for _ in range(3):
        await handlers.sign_in(presence, ana)
    ended = await asyncio.gather(
        handlers.force_sign_out(presence, ADMIN, "ana"),
        handlers.force_sign_out(presence, ADMIN, "ana"),
    )
    assert sorted(ended) == [0, 3]
    assert [t.signed_in for t in store.log(AgentRef("org-1", "ana"))] == [True, False]


async def test_a_head_known_for_half_the_retention_is_read_again(store: Any, clock: Any) -> None:
    """A replica running longer than the retention must not probe from a transition learned
    long ago (the records after it may be pruned): past half the retention the sign-in reads
    the stored hint again before it trusts anything."""
    counting = CountingStore(store)
    presence = built(counting, clock).presence
    ana = Principal("org-1", "ana", Role.AGENT)
    await handlers.sign_in(presence, ana)
    clock.advance(presence.retention.total_seconds() / 2 - 1)
    counting.calls.clear()
    await handlers.sign_in(presence, ana)  # still trusted: no hint read
    assert counting.calls == Counter(insert_session_then_head=1), counting.calls

    clock.advance(1)
    counting.calls.clear()
    await handlers.sign_in(presence, ana)
    assert counting.calls["head_hint"] >= 1, counting.calls
    log = store.log(AgentRef("org-1", "ana"))
    assert [(t.seq, t.signed_in) for t in log] == [(1, True)]  # still one sign-in
