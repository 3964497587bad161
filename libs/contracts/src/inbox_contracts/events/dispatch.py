"""Internal topics of routing's automatic assignment (PRODUCT.md §4).

``inbox.routing.dispatch.v1`` (key: ``org_id``) is the dispatcher's one ordered input per org:
conversation state changes published by routing's conversation owners, the presence events
routing consumed (re-published unchanged, re-keyed by org), and settings changes.
``inbox.routing.proposals.v1`` carries the dispatcher's proposals to the owner of the
conversation (explicit partition = the conversation's partition of the conversation topics).
"""

from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from inbox_contracts.envelope import EventData
from inbox_contracts.events.routing import AutoAssignReason


class ProposalRefusal(StrEnum):
    NOT_WAITING = "not_waiting"
    """The conversation stopped waiting (or started a new waiting period, or moved channel)."""
    AGENT_SIGNED_OUT = "agent_signed_out"
    """Routing's presence timeline shows the agent signed out."""
    AGENT_AT_CAPACITY = "agent_at_capacity"
    """The owner's conversations already held by the agent reach the proposal's ``capacity``
    (a hand assignment the dispatcher had not seen yet)."""


class DispatchChange(BaseModel):
    """What automatic assignment needs to know of one conversation, after a change: the
    fields of ``ConversationDispatchChanged`` but ``org_id`` (the record's). An element of
    ``ConversationsDispatchChanged.changes``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: str = Field(min_length=1)
    partition: int = Field(ge=0, description="Its partition of the conversation topics.")
    version: int = Field(ge=0, description="Grows with what the owner knows of it.")
    queue: str = Field(pattern="^(NEW|PENDING|RESOLVED)$")
    assignee_id: str | None = Field(default=None, description="Unset: unassigned.")
    channel_id: str | None = Field(default=None, description="Channel of its latest message.")
    waiting_since: AwareDatetime | None = Field(
        default=None, description="Set while waiting (NEW, unassigned): when it started."
    )
    waiting_cause: str | None = Field(
        default=None, description="Identifies the waiting period (set while waiting)."
    )
    cause_event_id: str = Field(min_length=1, description="The event that changed it.")
    cause_event_type: str = Field(min_length=1)
    proposal_id: str | None = Field(default=None, description="The proposal this answers.")
    refusal: ProposalRefusal | None = Field(default=None, description="Unset: accepted.")
    refused_agent_id: str | None = Field(default=None, description="Agent of a refusal.")
    agent_signed_out_at: AwareDatetime | None = Field(
        default=None, description="`agent_signed_out`: when the agent signed out."
    )
    presence_until: AwareDatetime | None = Field(
        default=None,
        description="Set on a waiting state when the owner had not seen presence progress "
        "reach its time yet: the dispatcher assigns it only once the presence progress relayed "
        "on its partition of this topic has reached this time (every presence event up to it "
        "is then ahead of it in the stream). Unset: judge it at once.",
    )
    occurred_at: AwareDatetime = Field(
        description="When the fact happened (event time, UTC). Decisions are made on this."
    )


class ConversationDispatchChanged(DispatchChange, EventData):
    """Internal: what automatic assignment needs to know of a conversation, after a change.

    Published by the owner of the conversation (one writer per conversation) whenever its
    queue, assignee, channel or waiting period changed, and as the answer to every proposal
    it handled (``proposal_id``; ``refusal`` unset = accepted). ``version`` grows with what the
    owner knows of the conversation: an older one is stale.
    """

    event_type: ClassVar[str] = "inbox.routing.dispatch.conversation_changed.v1"
    subject_field: ClassVar[str] = "org_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "partition": 3,
                    "version": 4,
                    "queue": "NEW",
                    "assignee_id": None,
                    "channel_id": "fb-page-acme",
                    "waiting_since": "2026-11-25T17:31:05Z",
                    "waiting_cause": "auto_unassigned:9a7c4f0e-2b8e-5c55-8a41-0b6f0d2c1e77",
                    "cause_event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                    "cause_event_type": "inbox.presence.agent_signed_out.v1",
                    "occurred_at": "2026-11-25T17:31:05Z",
                }
            ]
        }
    )


#: Most changes one ``ConversationsDispatchChanged`` carries (an owner sends more as several).
MAX_DISPATCH_CHANGES = 500


class ConversationsDispatchChanged(EventData):
    """Internal: the changes of many conversations of one org, in order, as one record.

    What an owner publishes after a batch (``ROUTING_DISPATCH_BATCHED_CHANGES``, default on):
    every ``ConversationDispatchChanged`` it would have sent for the org, as the elements of
    ``changes`` in the same order, up to ``MAX_DISPATCH_CHANGES`` (500) per record. The
    dispatcher applies each element exactly as that one event. ``occurred_at`` is the latest
    of the changes' ``occurred_at``.
    """

    event_type: ClassVar[str] = "inbox.routing.dispatch.conversations_changed.v1"
    subject_field: ClassVar[str] = "org_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "changes": [
                        {
                            "conversation_id": "conv-42",
                            "partition": 3,
                            "version": 1,
                            "queue": "NEW",
                            "channel_id": "fb-page-acme",
                            "waiting_since": "2026-11-25T17:31:05Z",
                            "waiting_cause": "created:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                            "cause_event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                            "cause_event_type": "inbox.messages.inbound_received.v1",
                            "presence_until": "2026-11-25T17:31:05Z",
                            "occurred_at": "2026-11-25T17:31:05Z",
                        }
                    ],
                    "occurred_at": "2026-11-25T17:31:05Z",
                }
            ]
        }
    )

    changes: list[DispatchChange] = Field(
        min_length=1,
        max_length=MAX_DISPATCH_CHANGES,
        description="The conversations' changes, in the order the owner made them.",
    )


class AssignmentSettingsChanged(EventData):
    """Internal: the org's automatic-assignment settings changed (published after storing)."""

    event_type: ClassVar[str] = "inbox.routing.dispatch.settings_changed.v1"
    subject_field: ClassVar[str] = "org_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "enabled": True,
                    "default_capacity": 5,
                    "team_capacities": {"team-billing": 3},
                    "channel_teams": {"fb-page-acme": "team-billing"},
                    "changed_by": "agent-boss",
                    "occurred_at": "2026-11-25T08:00:00Z",
                }
            ]
        }
    )

    enabled: bool
    default_capacity: int | None = Field(
        default=None, ge=1, description="Per agent; unset: unlimited."
    )
    team_capacities: dict[str, int] = Field(
        default_factory=dict, description="Team id -> capacity of its agents (overrides)."
    )
    channel_teams: dict[str, str] = Field(
        default_factory=dict, description="Channel id -> team id; unmapped: the whole org."
    )
    changed_by: str = Field(min_length=1)


class AssignmentProposed(EventData):
    """Internal: the dispatcher proposes an agent for a waiting conversation.

    Published to the conversation's partition of ``inbox.routing.proposals.v1``; the owner of
    that partition accepts it only while the conversation is still in the same waiting
    period on the same channel and the agent is signed in, and answers with a
    ``ConversationDispatchChanged`` either way. Deterministic id: a replayed dispatcher
    re-derives the same proposal with the same id.
    """

    event_type: ClassVar[str] = "inbox.routing.dispatch.assignment_proposed.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "partition": 3,
                    "agent_id": "agent-bob",
                    "waiting_cause": "auto_unassigned:9a7c4f0e-2b8e-5c55-8a41-0b6f0d2c1e77",
                    "channel_id": "fb-page-acme",
                    "team": "team-billing",
                    "waiting_since": "2026-11-25T17:31:05Z",
                    "reason": "conversation_waiting",
                    "cause_event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                    "cause_event_type": "inbox.presence.agent_signed_out.v1",
                    "occurred_at": "2026-11-25T17:31:05Z",
                }
            ]
        }
    )

    conversation_id: str = Field(min_length=1)
    partition: int = Field(ge=0, description="The conversation's partition.")
    agent_id: str = Field(min_length=1)
    waiting_cause: str = Field(min_length=1, description="The waiting period it is for.")
    channel_id: str | None = Field(default=None, description="The channel it was judged on.")
    team: str = Field(default="", description="The team it waits for; empty: the whole org.")
    waiting_since: AwareDatetime
    reason: AutoAssignReason
    cause_event_id: str = Field(min_length=1)
    cause_event_type: str = Field(min_length=1)
    capacity: int | None = Field(
        default=None,
        ge=1,
        description="The capacity the dispatcher applied (the team's, else the org default); "
        "unset: unlimited. The owner refuses (`agent_at_capacity`) when the conversations it "
        "owns already held by the agent reach it.",
    )
