"""In-memory fakes of the contacts service's ports and a manual clock (unit tests only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from contacts_service.bootstrap import Contacts, bootstrap
from contacts_service.domain.attributes import Definitions
from contacts_service.domain.contact import Contact, Identity, ProfileChange
from contacts_service.settings import ContactsSettings
from inbox_testing.plugin import TEST_JWT_SECRET


@dataclass
class FakeDefinitions:
    stored: dict[str, Definitions] = field(default_factory=dict)
    reads: int = 0

    async def get(self, org_id: str) -> Definitions:
        self.reads += 1
        return self.stored.get(org_id) or Definitions.initial(org_id)

    async def get_for_write(self, org_id: str) -> Definitions:
        return await self.get(org_id)

    async def commit(self, definitions: Definitions) -> bool:
        current = self.stored.get(definitions.org_id) or Definitions.initial(definitions.org_id)
        if definitions.version != current.version + 1:
            return False
        self.stored[definitions.org_id] = definitions
        return True


@dataclass
class FakeContacts:
    stored: dict[tuple[str, str], Contact] = field(default_factory=dict)

    async def get(self, org_id: str, contact_id: str) -> Contact | None:
        return self.stored.get((org_id, contact_id))

    async def get_many(self, org_id: str, contact_ids: Sequence[str]) -> list[Contact]:
        return [c for i in contact_ids if (c := self.stored.get((org_id, i))) is not None]

    async def find_by_identity(self, org_id: str, identity: Identity) -> Contact | None:
        for (org, _), contact in self.stored.items():
            if org == org_id and identity in contact.identities:
                return contact
        return None

    async def apply(self, changes: Sequence[Sequence[ProfileChange]]) -> None:
        for group in changes:
            key = (group[0].org_id, group[0].contact_id)
            contact = self.stored.get(key) or Contact(*key)
            self.stored[key], _ = contact.apply_all(group)


@dataclass
class ManualClock:
    """A monotonic clock that moves only when told."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def definitions_repo() -> FakeDefinitions:
    return FakeDefinitions()


@pytest.fixture
def contacts_repo() -> FakeContacts:
    return FakeContacts()


@pytest.fixture
async def service(
    contacts_repo: FakeContacts, definitions_repo: FakeDefinitions, clock: ManualClock
) -> Contacts:
    """The whole service built by ``bootstrap`` over the fakes (never started: no I/O), inside
    the running loop as in production (grpc.aio binds its server to it)."""
    settings = ContactsSettings(grpc_port=0, metrics_port=0, jwt_secret=TEST_JWT_SECRET)
    return bootstrap(
        settings, contacts_repo=contacts_repo, definitions_repo=definitions_repo, clock=clock
    )
