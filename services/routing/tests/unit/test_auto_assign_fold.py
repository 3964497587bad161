"""An automatic assignment the fold finds after its agent's sign-out is taken back (§4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from routing_service.domain.auto_assign import auto_assignment
from routing_service.domain.model import (
    ConversationEntry,
    EntryKind,
    PresenceEntry,
    Queue,
    Reason,
    SettingsHistory,
    decision_id,
    fold,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ORG, CONV = "org-1", "c1"


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


INBOUND = ConversationEntry("in-1", "inbound", EntryKind.INBOUND, t(1), "contact-1")
AUTO = auto_assignment(
    proposal_id="p-1",
    agent_id="ana",
    reason="conversation_waiting",
    cause_event_id="in-1",
    cause_event_type="inbound",
    proposed_at=t(3),
    known=[t(1)],
)
SIGNED_IN = PresenceEntry("s-in", "signed_in", t(0), signed_in=True)
SIGNED_OUT = PresenceEntry("s-out", "signed_out", t(2), signed_in=False)


def test_accepted_before_the_sign_out_was_recorded_is_taken_back_once_it_is() -> None:
    before = fold(
        ORG,
        CONV,
        [INBOUND, AUTO],
        timelines={"ana": [SIGNED_IN]},
        settings=SettingsHistory(),
        final_until=t(10),
    )
    assert before.state.assignee_id == "ana" and not before.new_decisions

    after = fold(
        ORG,
        CONV,
        [INBOUND, AUTO],
        timelines={"ana": [SIGNED_IN, SIGNED_OUT]},
        settings=SettingsHistory(),
        final_until=t(10),
    )
    assert (after.state.queue, after.state.assignee_id) == (Queue.NEW, None)
    [d] = after.new_decisions
    assert (d.reason, d.previous_assignee_id, d.assignment_id) == (
        Reason.R1_SIGNED_OUT,
        "ana",
        AUTO.event_id,
    )
    assert d.decision_id == decision_id(AUTO.event_id, ORG, CONV, Reason.R1_SIGNED_OUT)
    assert d.occurred_at == AUTO.occurred_at

    # the published decision is a fact: folding again applies it, takes nothing new
    again = fold(
        ORG,
        CONV,
        [INBOUND, AUTO],
        timelines={"ana": [SIGNED_IN, SIGNED_OUT]},
        settings=SettingsHistory(),
        facts=[d],
        final_until=t(10),
    )
    assert again.state.assignee_id is None and not again.new_decisions
    assert [a.decision_id for a in again.audit if a.decision_id] == [AUTO.event_id, d.decision_id]


def test_taken_back_only_once_presence_is_final_at_the_assignment() -> None:
    pending = fold(
        ORG,
        CONV,
        [INBOUND, AUTO],
        timelines={"ana": [SIGNED_IN, SIGNED_OUT]},
        settings=SettingsHistory(),
        final_until=t(2.5),
    )
    assert pending.state.assignee_id == "ana" and not pending.new_decisions
    assert pending.pending_at == AUTO.occurred_at


def test_a_sign_out_after_the_assignment_leaves_it_to_r1() -> None:
    later = PresenceEntry("s-out", "signed_out", t(5), signed_in=False)
    result = fold(
        ORG,
        CONV,
        [INBOUND, AUTO],
        timelines={"ana": [SIGNED_IN, later]},
        settings=SettingsHistory(),
        final_until=t(10),
    )
    assert result.state.assignee_id == "ana"  # R1 is off in this org
    assert not result.new_decisions


def test_a_hand_assignment_to_a_signed_out_agent_stands() -> None:
    by_hand = ConversationEntry(
        "a-1", "assigned", EntryKind.ASSIGNED, t(3), "boss", assignee_id="ana"
    )
    result = fold(
        ORG,
        CONV,
        [INBOUND, by_hand],
        timelines={"ana": [SIGNED_IN, SIGNED_OUT]},
        settings=SettingsHistory(),
        final_until=t(10),
    )
    assert result.state.assignee_id == "ana" and not result.new_decisions
