"""Proposals and automatic assignments are encoded once, without building their models: what
their consumers decode must be exactly the event built (and validated) with the models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from inbox_contracts import CloudEvent, decode
from inbox_contracts.events import AssignmentProposed, AutoAssignReason, ConversationAutoAssigned
from routing_service.domain.auto_assign import auto_assignment
from routing_service.domain.dispatch import AssignReason, Cause, Proposal
from routing_service.domain.model import ConversationEntry
from routing_service.service_layer.auto_assign import SOURCE as OWNER
from routing_service.service_layer.auto_assign import encode_assigned
from routing_service.service_layer.dispatcher import SOURCE as DISPATCHER
from routing_service.service_layer.dispatcher import encode_proposal

#: ids as the API accepts them: any text without control characters, quotes and escapes too
ids = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
times = st.builds(
    lambda base, us, tz: (base + timedelta(microseconds=us)).astimezone(tz),
    st.just(datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
    st.integers(0, 10**12),
    zones,
)
proposals = st.builds(
    Proposal,
    proposal_id=ids,
    org_id=ids,
    conversation_id=ids,
    partition=st.integers(0, 63),
    agent_id=ids,
    waiting_cause=ids,
    channel_id=st.none() | ids,
    team=st.just("") | ids,
    waiting_since=times,
    reason=st.sampled_from(AssignReason),
    # an empty cause (a state restored from an older snapshot) is filled in on the wire
    cause=st.builds(Cause, st.just("") | ids, st.just("") | ids),
    occurred_at=times,
    capacity=st.none() | st.integers(1, 1000),  # a proposal is only made with room
)


def proposal_event(p: Proposal) -> CloudEvent[AssignmentProposed]:
    """The reference: the proposal built (and validated) with the models."""
    return CloudEvent.wrap(
        AssignmentProposed(
            org_id=p.org_id,
            conversation_id=p.conversation_id,
            partition=p.partition,
            agent_id=p.agent_id,
            waiting_cause=p.waiting_cause,
            channel_id=p.channel_id,
            team=p.team,
            waiting_since=p.waiting_since,
            reason=AutoAssignReason(p.reason.value),
            cause_event_id=p.cause.event_id or p.waiting_cause,
            cause_event_type=p.cause.event_type or "unknown",
            capacity=p.capacity,
            occurred_at=p.occurred_at,
        ),
        source=DISPATCHER,
        event_id=p.proposal_id,
    )


def assigned_event(
    p: AssignmentProposed, proposal_id: str, entry: ConversationEntry
) -> CloudEvent[ConversationAutoAssigned]:
    """The reference: the automatic assignment built (and validated) with the models."""
    return CloudEvent.wrap(
        ConversationAutoAssigned(
            org_id=p.org_id,
            conversation_id=p.conversation_id,
            assignee_id=p.agent_id,
            team=p.team,
            reason=p.reason,
            cause_event_id=p.cause_event_id,
            cause_event_type=p.cause_event_type,
            waiting_since=p.waiting_since,
            occurred_at=entry.occurred_at,
        ),
        source=OWNER,
        event_id=proposal_id,
    )


@given(proposals)
def test_the_encoded_proposal_decodes_to_the_built_event(p: Proposal) -> None:
    encoded = encode_proposal(p)
    built = proposal_event(p)
    got = decode(encoded.to_json_bytes())
    assert got == built
    assert isinstance(got.data, AssignmentProposed)
    assert (encoded.id, encoded.type, encoded.key) == (built.id, built.type, built.key)
    assert encoded.partition == p.partition == got.data.partition


@given(proposals, times)
def test_the_encoded_auto_assignment_decodes_to_the_built_event(p: Proposal, at: datetime) -> None:
    proposal = proposal_event(p)
    entry = auto_assignment(
        proposal_id=proposal.id,
        agent_id=p.agent_id,
        reason=p.reason.value,
        cause_event_id=proposal.data.cause_event_id,
        cause_event_type=proposal.data.cause_event_type,
        proposed_at=p.occurred_at,
        known=[at],
    )
    encoded = encode_assigned(proposal.data, proposal.id, entry)
    built = assigned_event(proposal.data, proposal.id, entry)
    assert decode(encoded.to_json_bytes()) == built
    assert (encoded.id, encoded.type, encoded.key) == (built.id, built.type, built.key)
