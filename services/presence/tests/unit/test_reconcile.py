"""Presence built by ``bootstrap`` over an in-memory store with a manual clock: sign-in,
sign-out and ``reconcile``'s repair of the transition log, without I/O and without waiting
for a session to time out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from inbox_kit.auth import Principal, Role
from inbox_testing.plugin import TEST_JWT_SECRET
from presence_service.bootstrap import PresenceService, bootstrap
from presence_service.domain.model import AgentRef, EndReason, Session, Transition, transition_key
from presence_service.service_layer import handlers
from presence_service.settings import PresenceSettings

ANA = Principal("org-1", "ana", Role.AGENT)
AGENT = AgentRef("org-1", "ana")


def built(store: Any, clock: Any) -> PresenceService:
    settings = PresenceSettings(
        grpc_port=0,
        metrics_port=0,
        jwt_secret=TEST_JWT_SECRET,
        heartbeat_interval_seconds=5,
        session_timeout_seconds=15,
    )
    return bootstrap(settings, store=store, clock=clock)


async def test_sign_in_then_out_writes_one_transition_each(store: Any, clock: Any) -> None:
    presence = built(store, clock).presence
    session = await handlers.sign_in(presence, ANA, "web")
    clock.advance(3)
    assert await handlers.sign_out(presence, ANA, session.session_id) is True
    log = store.log(AGENT)
    assert [(t.seq, t.signed_in, t.reason) for t in log] == [
        (1, True, None),
        (2, False, EndReason.EXPLICIT),
    ]
    assert log[1].occurred_at - log[0].occurred_at == timedelta(seconds=3)
    assert sorted(store.outbox) == [t.key for t in log]  # each claim is its outbox record


async def test_reconcile_leaves_a_log_that_matches_the_sessions_alone(
    store: Any, clock: Any
) -> None:
    presence = built(store, clock).presence
    await handlers.sign_in(presence, ANA)
    head = await handlers.reconcile(presence, AGENT)
    assert head is not None and (head.seq, head.signed_in) == (1, True)
    assert len(store.log(AGENT)) == 1


async def test_reconcile_signs_out_an_agent_whose_session_another_replica_left_behind(
    store: Any, clock: Any
) -> None:
    presence = built(store, clock).presence
    started = clock()
    # a session of a replica that died (no progress floor), and the sign-in it claimed
    store.sessions["s-1"] = Session(
        "s-1", AGENT, started, started, started + timedelta(seconds=15), replica="gone"
    )
    store.db.transitions[transition_key(AGENT, 1)] = Transition(AGENT, 1, True, started, "s-1")
    clock.advance(14)
    head = await handlers.reconcile(presence, AGENT)
    assert head is not None and head.signed_in, "not overdue yet: the log stays as it is"

    clock.advance(15)  # past the deadline and the slack other actors give it
    head = await handlers.reconcile(presence, AGENT)
    assert head is not None
    assert (head.seq, head.signed_in, head.reason) == (2, False, EndReason.EXPIRED)
    assert head.occurred_at == started + timedelta(seconds=15)  # ended at its deadline
    assert store.sessions == {}
    assert store.ends["s-1"].reason is EndReason.EXPIRED


async def test_reconcile_repairs_a_log_that_missed_a_sign_in(store: Any, clock: Any) -> None:
    presence = built(store, clock).presence
    session = await handlers.sign_in(presence, ANA)
    store.db.transitions.clear()  # as if the claim was lost between session write and claim
    store.db.outbox.clear()
    store.db.pending.clear()
    head = await handlers.reconcile(presence, AGENT)
    assert head is not None
    assert (head.seq, head.signed_in, head.session_id) == (1, True, session.session_id)
