"""Topic ``inbox.replies.v1``: saved-reply usage, for analytics."""

from typing import ClassVar

from pydantic import ConfigDict, Field

from inbox_contracts.envelope import EventData


class SavedReplyUsed(EventData):
    """An agent used (inserted) a saved reply."""

    event_type: ClassVar[str] = "inbox.replies.reply_used.v1"
    subject_field: ClassVar[str] = "reply_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "reply_id": "reply-3",
                    "collection_id": "coll-faq",
                    "agent_id": "agent-ana",
                    "conversation_id": "conv-42",
                    "occurred_at": "2026-11-25T10:16:30Z",
                }
            ]
        }
    )

    reply_id: str = Field(
        min_length=1, description="The saved reply (Kafka key and CloudEvents subject)."
    )
    collection_id: str = Field(min_length=1, description="The collection it belongs to.")
    agent_id: str = Field(min_length=1, description="The agent who used it.")
    conversation_id: str | None = Field(None, description="Conversation it was used in, if any.")
