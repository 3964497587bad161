"""Topic ``inbox.routing.v1``: decisions the routing service took, keyed by conversation."""

from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from inbox_contracts.envelope import EventData


class AutoUnassignReason(StrEnum):
    AGENT_SIGNED_OUT = "agent_signed_out"
    """R1: the assignee signed out while the conversation was in NEW."""
    MOVED_TO_NEW_WHILE_SIGNED_OUT = "moved_to_new_while_signed_out"
    """R2: an inbound message or follow-up moved it to NEW while the assignee was signed out."""


class ConversationAutoUnassigned(EventData):
    """Routing removed the assignee.

    Because of the org's "Remove assignment" setting (R1: ``agent_signed_out``, cause the
    sign-out; R2: ``moved_to_new_while_signed_out``, cause the inbound or follow-up); or,
    whatever that setting, because an automatic assignment turned out to follow its agent's
    sign-out (a sign-out recorded after the assignment was accepted): reason
    ``agent_signed_out``, cause the ``inbox.routing.auto_assigned.v1`` event. The
    conversation then waits again (PRODUCT.md §4: never to a signed-out agent).
    """

    event_type: ClassVar[str] = "inbox.routing.auto_unassigned.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "previous_assignee_id": "agent-ana",
                    "reason": "agent_signed_out",
                    "cause_event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                    "cause_event_type": "inbox.presence.agent_signed_out.v1",
                    "occurred_at": "2026-11-25T17:31:05Z",
                }
            ]
        }
    )

    conversation_id: str = Field(min_length=1)
    previous_assignee_id: str = Field(min_length=1)
    reason: AutoUnassignReason
    cause_event_id: str = Field(min_length=1, description="CloudEvents id of the causing event.")
    cause_event_type: str = Field(min_length=1, description="Its CloudEvents type.")


class AgentSweepRequested(EventData):
    """Internal routing command: re-evaluate this partition's conversations of an agent.

    Published by routing's presence consumer after it recorded a sign-out, once per partition
    of the conversation topics (explicit partition, not keyed), so that the routing instance
    owning those conversations takes the decisions (one writer per conversation). Idempotent:
    handling it twice has no further effect.
    """

    event_type: ClassVar[str] = "inbox.routing.agent_sweep_requested.v1"
    subject_field: ClassVar[str] = "agent_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "agent_id": "agent-ana",
                    "partition": 3,
                    "cause_event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                    "cause_event_type": "inbox.presence.agent_signed_out.v1",
                    "occurred_at": "2026-11-25T17:31:05Z",
                }
            ]
        }
    )

    agent_id: str = Field(min_length=1, description="The agent whose presence changed.")
    partition: int = Field(ge=0, description="Partition of the conversation topics to sweep.")
    cause_event_id: str = Field(min_length=1, description="CloudEvents id of the presence event.")
    cause_event_type: str = Field(min_length=1, description="Its CloudEvents type.")


class PresenceMark(BaseModel):
    """How far event time is final on one partition of ``inbox.presence.v1``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partition: int = Field(ge=0, description="Partition of inbox.presence.v1.")
    progress: AwareDatetime = Field(
        description="Every presence transition on that partition with occurred_at <= progress "
        "is recorded in routing's presence timelines."
    )


class PresenceProgressRelayed(EventData):
    """Internal routing command: presence progress, relayed to the conversation owners and
    to the automatic-assignment dispatcher.

    Published by routing's presence consumer to the partitions of ``inbox.routing.commands.v1``
    and to every partition of ``inbox.routing.dispatch.v1`` (explicit partition; ``partition``
    names it) after it recorded the presence transitions the marks cover (and re-published them
    on the dispatch topic): from ``PresenceProgressed`` marks, or, for a presence partition
    without a mark for ``ROUTING_PRESENCE_MARK_TIMEOUT_MS``, from its wall clock minus the
    allowed lateness (see the routing README, "Decisions on event time"). Every partition whose
    owner is another routing instance gets each change; the owner in the same instance is told
    directly (its partitions get none). Owners keep the maximum per presence partition and wait
    for the minimum over all of them. Not tenant-scoped: ``org_id`` is always ``_all``.
    """

    event_type: ClassVar[str] = "inbox.routing.presence_progress_relayed.v1"
    subject_field: ClassVar[str] = "partition_key"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "_all",
                    "partition_key": "3",
                    "partition": 3,
                    "presence_partitions": 6,
                    "marks": [
                        {"partition": 0, "progress": "2026-11-25T09:00:00.250Z"},
                        {"partition": 1, "progress": "2026-11-25T09:00:00.240Z"},
                    ],
                    "occurred_at": "2026-11-25T09:00:00.260Z",
                }
            ]
        }
    )

    partition_key: str = Field(
        min_length=1, description="The command partition number as text (subject, key)."
    )
    partition: int = Field(ge=0, description="Partition of inbox.routing.commands.v1.")
    presence_partitions: int = Field(
        ge=1, description="Partition count of inbox.presence.v1 (how many marks to wait for)."
    )
    marks: list[PresenceMark] = Field(
        description="Progress of the presence partitions this relaying consumer owns."
    )


class AutoAssignReason(StrEnum):
    CONVERSATION_WAITING = "conversation_waiting"
    """The conversation started waiting (new inbound, unassigned by hand, by R1/R2, or a
    resolve followed by a new inbound) and an eligible agent had room."""
    AGENT_AVAILABLE = "agent_available"
    """An agent became eligible (signed in, Away -> Available, capacity freed by a resolve, an
    unassignment or a hand-over, capacity raised, automatic assignment turned on)."""


class ConversationAutoAssigned(EventData):
    """Routing assigned the conversation automatically (the org's "Automatic assignment").

    Published once routing's owner of the conversation accepted the dispatcher's proposal
    (the conversation was still waiting, the agent still signed in). The id is deterministic
    (the proposal id): a redelivery after a crash re-publishes the same id.
    """

    event_type: ClassVar[str] = "inbox.routing.auto_assigned.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "assignee_id": "agent-bob",
                    "team": "team-billing",
                    "reason": "conversation_waiting",
                    "cause_event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                    "cause_event_type": "inbox.messages.inbound_received.v1",
                    "waiting_since": "2026-11-25T17:31:05Z",
                    "occurred_at": "2026-11-25T17:31:05.042Z",
                }
            ]
        }
    )

    conversation_id: str = Field(min_length=1)
    assignee_id: str = Field(min_length=1, description="The agent it is now assigned to.")
    team: str = Field(
        default="",
        description="The team it waited for (its channel's team); empty: the whole org.",
    )
    reason: AutoAssignReason
    cause_event_id: str = Field(
        min_length=1,
        description="CloudEvents id of the event that made it possible: what started the "
        "waiting (`conversation_waiting`) or what made the agent eligible (`agent_available`).",
    )
    cause_event_type: str = Field(min_length=1, description="Its CloudEvents type.")
    waiting_since: AwareDatetime = Field(
        description="When the conversation started waiting (event time)."
    )
