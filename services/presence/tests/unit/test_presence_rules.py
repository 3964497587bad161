"""Pure rules: transitions, expiry, ids (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_service.domain.model import (
    AgentRef,
    EndReason,
    Session,
    SessionEnd,
    Timing,
    Transition,
    deadline,
    event_id_for,
    expiry_end,
    is_expired_for_others,
    is_expired_for_owner,
    next_transition,
    transition_key,
)
from presence_service.service_layer.handlers import transition_record

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
AGENT = AgentRef("org-acme", "agent-ana")
TIMING = Timing(timedelta(seconds=15), timedelta(seconds=45), timedelta(seconds=1))


def session(sid: str, start: int, last_hb: int | None = None) -> Session:
    hb = T0 + timedelta(seconds=start if last_hb is None else last_hb)
    return Session(sid, AGENT, T0 + timedelta(seconds=start), hb, hb + TIMING.session_timeout)


def test_first_session_signs_in_at_its_start() -> None:
    t = next_transition(AGENT, None, [session("a", 5), session("b", 3)], [])
    assert t == Transition(AGENT, 1, True, T0 + timedelta(seconds=3), "b")


def test_no_transition_while_a_session_stays_live() -> None:
    head = Transition(AGENT, 1, True, T0, "a")
    assert next_transition(AGENT, head, [session("b", 10)], []) is None


def test_last_end_signs_out_with_latest_end_and_its_reason() -> None:
    head = Transition(AGENT, 1, True, T0, "a")
    ends = [
        SessionEnd("a", AGENT, EndReason.EXPIRED, T0 + timedelta(seconds=50)),
        SessionEnd("b", AGENT, EndReason.EXPLICIT, T0 + timedelta(seconds=60)),
    ]
    t = next_transition(AGENT, head, [], ends)
    assert t == Transition(AGENT, 2, False, T0 + timedelta(seconds=60), "b", EndReason.EXPLICIT)


def test_sign_in_never_before_the_previous_sign_out() -> None:
    head = Transition(AGENT, 2, False, T0 + timedelta(seconds=30), "a", EndReason.EXPLICIT)
    t = next_transition(AGENT, head, [session("b", 20)], [])
    assert t is not None and t.seq == 3 and t.occurred_at == head.occurred_at


def test_expiry_is_last_heartbeat_plus_timeout_and_grace_only_for_others() -> None:
    s = session("a", 0, last_hb=10)
    end = expiry_end(s)
    assert end.ended_at == T0 + timedelta(seconds=55) and end.reason is EndReason.EXPIRED
    just_after = T0 + timedelta(seconds=55, milliseconds=500)
    assert is_expired_for_owner(s, just_after, None, TIMING)
    assert not is_expired_for_others(s, just_after, None, TIMING)
    assert is_expired_for_others(s, T0 + timedelta(seconds=56, milliseconds=1), None, TIMING)


def test_outage_defers_the_decision_not_the_end_time() -> None:
    s = session("a", 0)
    resumed = T0 + timedelta(seconds=120)
    assert deadline(s, resumed, TIMING) == resumed + TIMING.session_timeout
    assert not is_expired_for_others(s, resumed + timedelta(seconds=10), resumed, TIMING)
    assert expiry_end(s).ended_at == s.expires_at


def test_event_ids_are_deterministic_per_transition() -> None:
    t = Transition(AGENT, 2, False, T0, "a", EndReason.FORCED)
    r1, r2 = transition_record(t, T0), transition_record(t, T0 + timedelta(seconds=1))
    assert r1.event_id == r2.event_id == event_id_for(transition_key(AGENT, 2))
    assert r1.prev_key == transition_key(AGENT, 1) and r1.kafka_key == b"agent-ana"
    assert b'"reason":"forced"' in r1.payload
    other_org = AgentRef("org-other", "agent-ana")
    assert event_id_for(transition_key(other_org, 2)) != r1.event_id


def test_timing_must_be_sane() -> None:
    with pytest.raises(ValueError):
        Timing(timedelta(seconds=15), timedelta(seconds=5), timedelta(0))


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 100)), min_size=1, max_size=30),
)
def test_replaying_reconcile_alternates_and_matches_liveness(steps: list[tuple[bool, int]]) -> None:
    """Whatever the sequence of 'sessions live or not' observations, applying next_transition
    yields an alternating log (odd = in, even = out) ending in agreement, times never going
    backwards."""
    head: Transition | None = None
    for live_now, at in steps:
        live = [session(f"s{at}", at)] if live_now else []
        ends = [SessionEnd("x", AGENT, EndReason.EXPLICIT, T0 + timedelta(seconds=at))]
        t = next_transition(AGENT, head, live, ends)
        if t is not None:
            assert t.seq == (head.seq if head else 0) + 1
            assert t.signed_in == (t.seq % 2 == 1)
            assert head is None or t.occurred_at >= head.occurred_at
            head = t
        assert (head is not None and head.signed_in) == live_now or (head is None and not live_now)
