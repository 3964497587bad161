"""Topic ``inbox.routing.v1``: decisions the routing service took, keyed by conversation."""

from enum import StrEnum
from typing import ClassVar

from pydantic import ConfigDict, Field

from inbox_contracts.envelope import EventData


class AutoUnassignReason(StrEnum):
    AGENT_SIGNED_OUT = "agent_signed_out"
    """R1: the assignee signed out while the conversation was in NEW."""
    MOVED_TO_NEW_WHILE_SIGNED_OUT = "moved_to_new_while_signed_out"
    """R2: an inbound message or follow-up moved it to NEW while the assignee was signed out."""


class ConversationAutoUnassigned(EventData):
    """Routing removed the assignee because of the org's "Remove assignment" setting."""

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
