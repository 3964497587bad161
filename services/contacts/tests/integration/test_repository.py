"""The Mongo contact repository on the real FerretDB: plain collections, exact-_id reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from contacts_service.adapters.mongo import MongoContactRepository
from contacts_service.domain.attributes import Definitions
from contacts_service.domain.contact import Identity, ProfileChange, validate_change
from pymongo.asynchronous.database import AsyncDatabase

pytestmark = pytest.mark.infra

T0 = datetime(2026, 1, 1, tzinfo=UTC)


Ids = tuple[tuple[str, str], ...]


def change(
    org: str, contact: str, event: str, at: datetime, ids: Ids = (), **v: Any
) -> ProfileChange:
    return validate_change(
        Definitions.initial(org),
        org_id=org,
        contact_id=contact,
        event_id=event,
        occurred_at=at,
        attributes=v,
        identities=ids,
    )


async def test_batch_insert_merge_and_get_many_use_plain_collections(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    repo = MongoContactRepository(mongo_db)
    await repo.apply([[change("o1", f"c{i}", f"e{i}", T0, name=f"N{i}")] for i in range(30)])
    # Existing contacts are merged (newer wins per attribute; an older value is ignored).
    await repo.apply(
        [
            [change("o1", "c1", "e1b", T0 + timedelta(seconds=1), name="New", language="de")],
            [change("o1", "c2", "e2b", T0 - timedelta(seconds=1), name="Old")],
            [change("o1", "c99", "e99", T0, name="Fresh")],
        ]
    )
    assert set(await mongo_db.list_collection_names()) == {"contacts"}  # no shards
    assert await mongo_db["contacts"].count_documents({}) == 31
    found = await repo.get_many("o1", ["c1", "c2", "c99", "missing", "c1"])
    values = {c.contact_id: {k: e.value for k, e in c.entries.items()} for c in found}
    assert values["c1"] == {"name": "New", "language": "de"}
    assert values["c2"] == {"name": "N2"}
    assert values["c99"] == {"name": "Fresh"}
    assert "missing" not in values
    assert await repo.get_many("o2", ["c1", "c2"]) == []  # another org sees nothing


async def test_an_identity_moves_only_to_the_more_recently_changed_contact(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    repo = MongoContactRepository(mongo_db)
    wa = (("whatsapp", "+4917000"),)
    identity = Identity("whatsapp", "+4917000")
    await repo.apply([[change("o1", "a", "e1", T0, wa, name="A")]])
    await repo.apply([[change("o1", "b", "e2", T0 + timedelta(seconds=5), wa, name="B")]])
    moved = await repo.find_by_identity("o1", identity)
    assert moved is not None and moved.contact_id == "b"
    # An update of "a" that is older than "b" does not take the identity back ...
    await repo.apply([[change("o1", "a", "e3", T0 + timedelta(seconds=2), wa, name="A2")]])
    still = await repo.find_by_identity("o1", identity)
    assert still is not None and still.contact_id == "b"
    # ... a newer one does; re-applying the same batch changes nothing.
    newer = [[change("o1", "a", "e4", T0 + timedelta(seconds=9), wa, name="A3")]]
    await repo.apply(newer)
    await repo.apply(newer)
    back = await repo.find_by_identity("o1", identity)
    assert back is not None and back.contact_id == "a" and back.entries["name"].value == "A3"
    assert await repo.find_by_identity("o2", identity) is None
