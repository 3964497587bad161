"""Topic ``inbox.contacts.v1``: contact profiles from channel ingestors and CRM sync."""

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from inbox_contracts.envelope import EventData


class ChannelIdentity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str = Field(min_length=1, description="Channel kind or id, e.g. `whatsapp`.")
    handle: str = Field(min_length=1, description="The contact's handle on that channel.")


class ContactProfileUpserted(EventData):
    """Create a contact, or partially update it.

    Only the attributes present are changed; a ``null`` value clears an attribute. Values are
    validated against the org's attribute definitions by the contacts service. Identities are
    added (never removed by this event).
    """

    event_type: ClassVar[str] = "inbox.contacts.profile_upserted.v1"
    subject_field: ClassVar[str] = "contact_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "contact_id": "contact-7",
                    "attributes": {
                        "name": "Maria Muster",
                        "email": "maria@example.com",
                        "language": "de",
                        "membership": "gold",
                    },
                    "identities": [{"channel": "whatsapp", "handle": "+491701234567"}],
                    "occurred_at": "2026-11-25T08:00:00Z",
                }
            ]
        }
    )

    contact_id: str = Field(min_length=1)
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Attribute key → value; `null` clears."
    )
    identities: list[ChannelIdentity] = Field(default_factory=list)
