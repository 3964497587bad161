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

    contact_id: str = Field(
        min_length=1, description="The contact (Kafka key and CloudEvents subject)."
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Attribute key → value; `null` clears."
    )
    identities: list[ChannelIdentity] = Field(
        default_factory=list, description="Channel identities to add to the contact."
    )


class ContactsChanged(EventData):
    """The contacts service stored a change to these contacts' profiles.

    Published on ``inbox.contacts.changes.v1`` after the change is stored (at least once; a
    redelivered profile update announces its contacts again). It carries ids only: read the
    current profile over gRPC. The contacts service's replicas use it to drop cached cards;
    other services may use it the same way.
    """

    event_type: ClassVar[str] = "inbox.contacts.contacts_changed.v1"
    subject_field: ClassVar[str] = "org_id"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "org_id": "org-acme",
                    "contact_ids": ["contact-7", "contact-8"],
                    "occurred_at": "2026-11-26T08:00:01Z",
                }
            ]
        }
    )

    contact_ids: list[str] = Field(
        min_length=1,
        max_length=1000,
        description="Contacts of `org_id` whose stored profile changed (at most 1,000).",
    )
