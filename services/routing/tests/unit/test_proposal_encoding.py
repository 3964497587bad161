"""Proposals are encoded once, without building their models: what the owner decodes must be
exactly the event ``proposal_event`` builds (and validates) from the same proposal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from inbox_contracts import decode
from inbox_contracts.events import AssignmentProposed
from routing_service.domain.dispatch import AssignReason, Cause, Proposal
from routing_service.service_layer.dispatcher import encode_proposal, proposal_event

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


@given(proposals)
def test_the_encoded_proposal_decodes_to_the_built_event(p: Proposal) -> None:
    encoded = encode_proposal(p)
    built = proposal_event(p)
    got = decode(encoded.to_json_bytes())
    assert got == built
    assert isinstance(got.data, AssignmentProposed)
    assert (encoded.id, encoded.type, encoded.key) == (built.id, built.type, built.key)
    assert encoded.partition == p.partition == got.data.partition
