"""Contact profiles and how profile updates merge. Pure; no I/O.

Each attribute value carries a stamp ``(occurred_at, event_id)`` of the event that set it; an
update applies to an attribute only if its stamp is greater (last writer wins per attribute by
event time, ties broken by event id). That makes applying updates commutative and idempotent:
duplicates, redeliveries and out-of-order arrival all converge to the same profile, so no
separate "processed events" bookkeeping is needed. A cleared value (``null``) is kept as a
stamped tombstone so an older value arriving later does not resurrect it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from contacts_service.domain.attributes import (
    Definitions,
    InvalidValue,
    Value,
    fits,
    validate_value,
)

MAX_IDENTITIES = 100
MAX_ATTRIBUTES_PER_EVENT = 200

#: (event time in microseconds since the epoch, event id); tuples compare lexicographically.
Stamp = tuple[int, str]


def to_micros(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)


@dataclass(frozen=True)
class Entry:
    """One attribute's value (``None`` = cleared) and the stamp of the event that set it."""

    value: Value | None
    stamp: Stamp


@dataclass(frozen=True)
class Identity:
    channel: str
    handle: str


@dataclass(frozen=True)
class ProfileChange:
    """A validated ContactProfileUpserted."""

    org_id: str
    contact_id: str
    event_id: str
    occurred_at: datetime
    values: Mapping[str, Value | None]
    identities: tuple[Identity, ...] = ()

    @property
    def stamp(self) -> Stamp:
        return (to_micros(self.occurred_at), self.event_id)


@dataclass(frozen=True)
class Contact:
    org_id: str
    contact_id: str
    entries: Mapping[str, Entry] = field(default_factory=dict)
    identities: tuple[Identity, ...] = ()
    #: Event time (µs) of the newest change applied.
    updated_micros: int = 0

    @property
    def updated_at(self) -> datetime:
        return from_micros(self.updated_micros)

    def apply(self, change: ProfileChange) -> tuple[Contact, set[str]]:
        """Merge one change; return the new contact and the attribute keys that changed."""
        stamp = change.stamp
        entries = dict(self.entries)
        changed: set[str] = set()
        for key, value in change.values.items():
            current = entries.get(key)
            if current is None or stamp > current.stamp:
                entries[key] = Entry(value, stamp)
                changed.add(key)
        identities = list(self.identities)
        for identity in change.identities:
            if identity not in identities and len(identities) < MAX_IDENTITIES:
                identities.append(identity)
        return (
            replace(
                self,
                entries=entries,
                identities=tuple(identities),
                updated_micros=max(self.updated_micros, stamp[0]),
            ),
            changed,
        )

    def apply_all(self, changes: Iterable[ProfileChange]) -> tuple[Contact, set[str]]:
        contact, changed = self, set[str]()
        for change in changes:
            contact, keys = contact.apply(change)
            changed |= keys
        return contact, changed

    def values(self, definitions: Definitions) -> dict[str, Value]:
        """Current values of defined attributes (enabled or not), in definition order."""
        result: dict[str, Value] = {}
        for definition in definitions.items:
            entry = self.entries.get(definition.key)
            if entry is not None and entry.value is not None and fits(definition, entry.value):
                result[definition.key] = entry.value
        return result


def validate_change(
    definitions: Definitions,
    *,
    org_id: str,
    contact_id: str,
    event_id: str,
    occurred_at: datetime,
    attributes: Mapping[str, Any],
    identities: Iterable[tuple[str, str]],
) -> ProfileChange:
    """Validate raw attribute values against the org's definitions (all or nothing).

    Raises ``InvalidValue`` naming the attribute for an unknown key or a value of the wrong
    type. Disabled attributes still accept values (they are only hidden from the card).
    """
    if len(attributes) > MAX_ATTRIBUTES_PER_EVENT:
        raise InvalidValue(f"more than {MAX_ATTRIBUTES_PER_EVENT} attributes in one event")
    index = definitions.by_key()
    values: dict[str, Value | None] = {}
    for key, raw in attributes.items():
        definition = index.get(key)
        if definition is None:
            raise InvalidValue(f"{key}: unknown attribute")
        values[key] = None if raw is None else validate_value(definition, raw)
    unique: list[Identity] = []
    for channel, handle in identities:
        identity = Identity(channel.strip(), handle.strip())
        if not identity.channel or not identity.handle:
            raise InvalidValue("identities: channel and handle must not be blank")
        if identity not in unique:
            unique.append(identity)
    if len(unique) > MAX_IDENTITIES:
        raise InvalidValue(f"identities: at most {MAX_IDENTITIES}")
    return ProfileChange(
        org_id=org_id,
        contact_id=contact_id,
        event_id=event_id,
        occurred_at=occurred_at,
        values=values,
        identities=tuple(unique),
    )


def unknown_keys(definitions: Definitions, attributes: Mapping[str, Any]) -> bool:
    index = definitions.by_key()
    return any(k not in index for k in attributes)
