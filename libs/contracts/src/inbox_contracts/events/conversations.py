"""Topic ``inbox.conversations.v1``: what agents and reminders do to a conversation.

Produced by the inbox app backend (assign, unassign, resolve) and the reminder scheduler
(follow-up due).
"""

from typing import ClassVar

from pydantic import ConfigDict, Field

from inbox_contracts.envelope import EventData


class ConversationAssigned(EventData):
    """An agent (or an admin, or an assignment rule) assigned the conversation."""

    event_type: ClassVar[str] = "inbox.conversations.assigned.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "assignee_id": "agent-ana",
                    "assigned_by": "agent-boss",
                    "occurred_at": "2026-11-25T10:16:00Z",
                }
            ]
        }
    )

    conversation_id: str = Field(
        min_length=1, description="The conversation (Kafka key and CloudEvents subject)."
    )
    assignee_id: str = Field(min_length=1, description="The agent it is now assigned to.")
    assigned_by: str = Field(min_length=1, description="Who assigned it (agent id or `system`).")


class ConversationUnassigned(EventData):
    """Someone removed the assignee by hand."""

    event_type: ClassVar[str] = "inbox.conversations.unassigned.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "unassigned_by": "agent-boss",
                    "occurred_at": "2026-11-25T11:00:00Z",
                }
            ]
        }
    )

    conversation_id: str = Field(
        min_length=1, description="The conversation (Kafka key and CloudEvents subject)."
    )
    unassigned_by: str = Field(min_length=1, description="Who unassigned it (agent id).")


class ConversationResolved(EventData):
    """Resolved: moves it to RESOLVED and removes the assignee."""

    event_type: ClassVar[str] = "inbox.conversations.resolved.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "resolved_by": "agent-ana",
                    "occurred_at": "2026-11-25T11:30:00Z",
                }
            ]
        }
    )

    conversation_id: str = Field(
        min_length=1, description="The conversation (Kafka key and CloudEvents subject)."
    )
    resolved_by: str = Field(min_length=1, description="Who resolved it (agent id).")


class FollowUpDue(EventData):
    """A follow-up reminder ("boomerang") fired: PENDING or RESOLVED moves to NEW."""

    event_type: ClassVar[str] = "inbox.conversations.follow_up_due.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "reminder_id": "rem-9",
                    "occurred_at": "2026-11-26T09:00:00Z",
                }
            ]
        }
    )

    conversation_id: str = Field(
        min_length=1, description="The conversation (Kafka key and CloudEvents subject)."
    )
    reminder_id: str = Field(min_length=1, description="The reminder that fired.")
