"""Topic ``inbox.messages.v1``: messages on a conversation, produced by channel ingestors."""

from typing import ClassVar

from pydantic import ConfigDict, Field

from inbox_contracts.envelope import EventData


class InboundMessageReceived(EventData):
    """The contact wrote. Moves the conversation to NEW (creating it if unknown)."""

    event_type: ClassVar[str] = "inbox.messages.inbound_received.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "message_id": "msg-1001",
                    "channel_id": "fb-page-acme",
                    "contact_id": "contact-7",
                    "occurred_at": "2026-11-25T10:15:00Z",
                }
            ]
        }
    )

    conversation_id: str = Field(
        min_length=1, description="The conversation (Kafka key and CloudEvents subject)."
    )
    message_id: str = Field(min_length=1, description="The message, unique per conversation.")
    channel_id: str = Field(min_length=1, description="The connected account it came in on.")
    contact_id: str = Field(min_length=1, description="The customer who wrote.")


class OutboundMessageSent(EventData):
    """An agent replied. Moves the conversation from NEW to PENDING."""

    event_type: ClassVar[str] = "inbox.messages.outbound_sent.v1"
    subject_field: ClassVar[str] = "conversation_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "conversation_id": "conv-42",
                    "message_id": "msg-1002",
                    "channel_id": "fb-page-acme",
                    "agent_id": "agent-ana",
                    "occurred_at": "2026-11-25T10:17:30Z",
                }
            ]
        }
    )

    conversation_id: str = Field(
        min_length=1, description="The conversation (Kafka key and CloudEvents subject)."
    )
    message_id: str = Field(min_length=1, description="The message, unique per conversation.")
    channel_id: str = Field(min_length=1, description="The connected account it was sent on.")
    agent_id: str = Field(min_length=1, description="The agent who replied.")
