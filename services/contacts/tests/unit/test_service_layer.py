"""The contacts service built by ``bootstrap`` over in-memory fakes: ingestion, reads and the
definitions cache, with a manual clock instead of waiting for the cache to expire."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from contacts_service.bootstrap import Contacts
from contacts_service.domain.attributes import AttributeType, Definitions
from contacts_service.service_layer.contacts import RawProfile
from inbox_kit.auth import Principal, Role
from inbox_kit.errors import NotFound

from .conftest import FakeContacts, FakeDefinitions, ManualClock

ORG = "org-1"
ADMIN = Principal(ORG, "admin-1", Role.ADMIN)
AGENT = Principal(ORG, "agent-1", Role.AGENT)


def profile(event_id: str, contact_id: str, at: int, **attributes: object) -> RawProfile:
    return RawProfile(
        event_id=event_id,
        org_id=ORG,
        contact_id=contact_id,
        occurred_at=datetime(2026, 1, 1, 12, 0, at, tzinfo=UTC),
        attributes=attributes,
        identities=(("email", f"{contact_id}@example.com"),),
    )


async def test_an_ingested_profile_is_read_back_by_id_and_by_identity(
    service: Contacts, contacts_repo: FakeContacts
) -> None:
    result = await service.ingestion.ingest(
        [profile("e1", "c1", 1, name="Ada"), profile("e2", "c1", 0, name="older")]
    )
    assert result.rejected == {}
    assert result.changed == {ORG: ["c1"]}
    contact, _ = await service.contacts.get(AGENT, "c1")
    assert contact.entries["name"].value == "Ada"  # the later event wins, whatever the order
    found, _ = await service.contacts.find_by_identity(AGENT, "email", " c1@example.com ")
    assert found.contact_id == "c1"
    with pytest.raises(NotFound):
        await service.contacts.get(AGENT, "c2")


async def test_a_profile_with_an_undefined_attribute_is_refused_and_changes_nothing(
    service: Contacts, contacts_repo: FakeContacts
) -> None:
    result = await service.ingestion.ingest([profile("e1", "c1", 1, no_such_attribute="x")])
    assert list(result.rejected) == [0]
    assert result.changed == {}
    assert contacts_repo.stored == {}


async def test_an_attribute_created_here_is_known_at_once_and_elsewhere_after_the_ttl(
    service: Contacts, definitions_repo: FakeDefinitions, clock: ManualClock
) -> None:
    before = await service.definitions.list(AGENT)
    created, _ = await service.definitions.create(
        ADMIN, key="tier", label="Tier", type_=AttributeType.TEXT, options=(), enabled=True
    )
    assert created.version == before.version + 1
    assert "tier" in (await service.definitions.list(AGENT)).keys  # written through the cache

    # another replica changes the definitions: this one serves its cached copy until the TTL
    elsewhere = Definitions(ORG, created.version + 1, created.items[:-1])
    definitions_repo.stored[ORG] = elsewhere
    clock.advance(0.5)
    assert "tier" in (await service.definitions.list(AGENT)).keys
    clock.advance(0.6)  # past the 1 s default TTL
    assert (await service.definitions.list(AGENT)).version == elsewhere.version
