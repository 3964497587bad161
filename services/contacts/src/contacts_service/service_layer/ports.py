"""What the handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from contacts_service.domain.attributes import Definitions
from contacts_service.domain.contact import Contact, Identity, ProfileChange


class DefinitionsRepository(Protocol):
    async def get(self, org_id: str) -> Definitions:
        """The org's current definitions (``Definitions.initial`` if never changed)."""

    async def get_for_write(self, org_id: str) -> Definitions:
        """Like ``get``, but first repairs a pointer left behind by a crashed writer."""

    async def commit(self, definitions: Definitions) -> bool:
        """Store ``definitions`` iff no one else claimed its version; False if someone did."""


class ContactRepository(Protocol):
    async def get(self, org_id: str, contact_id: str) -> Contact | None: ...

    async def get_many(self, org_id: str, contact_ids: Sequence[str]) -> list[Contact]: ...

    async def find_by_identity(self, org_id: str, identity: Identity) -> Contact | None: ...

    async def apply(self, changes: Sequence[Sequence[ProfileChange]]) -> None:
        """Merge each group of changes (all of one contact, in order) into stored contacts."""


class CardCacheControl(Protocol):
    """What the change feed needs of a replica's contact cache (``adapters.contact_cache``)."""

    def enable(self) -> None: ...
    def disable(self) -> None: ...
    def clear(self) -> None: ...
    def invalidate(self, keys: Iterable[tuple[str, str]]) -> None: ...
