"""Contact reads (card, by id, by identity) and profile ingestion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inbox_kit.auth import Principal
from inbox_kit.errors import NotFound
from inbox_kit.validation import require_id, require_ids

from contacts_service.domain.attributes import (
    AttributeDefinition,
    Definitions,
    InvalidValue,
    Value,
    fits,
)
from contacts_service.domain.contact import (
    Contact,
    Identity,
    ProfileChange,
    unknown_keys,
    validate_change,
)
from contacts_service.service_layer.definitions import DefinitionsCache
from contacts_service.service_layer.ports import ContactRepository

MAX_BATCH = 100


@dataclass(frozen=True)
class CardField:
    definition: AttributeDefinition
    value: Value | None


@dataclass(frozen=True)
class Card:
    contact: Contact
    definitions_version: int
    fields: list[CardField]


@dataclass
class ContactsService:
    contacts: ContactRepository
    definitions: DefinitionsCache

    async def card(self, principal: Principal, contact_id: str) -> Card:
        require_id("contact_id", contact_id)
        contact = await self.contacts.get(principal.org_id, contact_id)
        if contact is None:
            raise NotFound(f"contact {contact_id!r} not found", reason="CONTACT_NOT_FOUND")
        definitions = await self.definitions.get(principal.org_id)
        fields = []
        for definition in definitions.enabled():
            entry = contact.entries.get(definition.key)
            value = entry.value if entry is not None else None
            if value is not None and not fits(definition, value):
                value = None
            fields.append(CardField(definition, value))
        return Card(contact, definitions.version, fields)

    async def get(self, principal: Principal, contact_id: str) -> tuple[Contact, Definitions]:
        require_id("contact_id", contact_id)
        contact = await self.contacts.get(principal.org_id, contact_id)
        if contact is None:
            raise NotFound(f"contact {contact_id!r} not found", reason="CONTACT_NOT_FOUND")
        return contact, await self.definitions.get(principal.org_id)

    async def batch_get(
        self, principal: Principal, contact_ids: Sequence[str]
    ) -> tuple[list[Contact], Definitions]:
        require_ids("contact_ids", contact_ids, max_count=MAX_BATCH)
        unique = list(dict.fromkeys(contact_ids))
        contacts = await self.contacts.get_many(principal.org_id, unique) if unique else []
        return contacts, await self.definitions.get(principal.org_id)

    async def find_by_identity(
        self, principal: Principal, channel: str, handle: str
    ) -> tuple[Contact, Definitions]:
        require_id("channel", channel)
        require_id("handle", handle)
        identity = Identity(channel.strip(), handle.strip())
        contact = await self.contacts.find_by_identity(principal.org_id, identity)
        if contact is None:
            raise NotFound(
                f"no contact with {identity.channel} identity {identity.handle!r}",
                reason="CONTACT_NOT_FOUND",
            )
        return contact, await self.definitions.get(principal.org_id)


@dataclass(frozen=True)
class RawProfile:
    """A decoded ContactProfileUpserted, not yet validated against the definitions."""

    event_id: str
    org_id: str
    contact_id: str
    occurred_at: datetime
    attributes: Mapping[str, Any]
    identities: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class IngestResult:
    #: Index in the batch → why that profile was refused (it changed nothing).
    rejected: dict[int, str]
    #: org id → ids of its contacts that the batch stored changes for.
    changed: dict[str, list[str]]


@dataclass
class ProfileIngestion:
    contacts: ContactRepository
    definitions: DefinitionsCache

    async def ingest(self, profiles: Sequence[RawProfile]) -> IngestResult:
        """Validate and store a batch of profile updates.

        The valid ones are stored (grouped per contact, in order) before this returns; the
        rejected ones change nothing. Raises only for infrastructure failures; then nothing is
        lost by retrying the whole batch.
        """
        rejected: dict[int, str] = {}
        groups: dict[tuple[str, str], list[ProfileChange]] = {}
        for index, profile in enumerate(profiles):
            definitions = await self.definitions.get(profile.org_id)
            if unknown_keys(definitions, profile.attributes):
                # Maybe the attribute was just created on another replica: check the store.
                definitions = await self.definitions.get(profile.org_id, fresh=True)
            try:
                change = validate_change(
                    definitions,
                    org_id=profile.org_id,
                    contact_id=profile.contact_id,
                    event_id=profile.event_id,
                    occurred_at=profile.occurred_at,
                    attributes=profile.attributes,
                    identities=profile.identities,
                )
            except InvalidValue as exc:
                rejected[index] = str(exc)
                continue
            groups.setdefault((profile.org_id, profile.contact_id), []).append(change)
        if groups:
            await self.contacts.apply(list(groups.values()))
        changed: dict[str, list[str]] = {}
        for org_id, contact_id in groups:
            changed.setdefault(org_id, []).append(contact_id)
        return IngestResult(rejected, changed)
