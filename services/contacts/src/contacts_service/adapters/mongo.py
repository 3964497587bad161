"""MongoDB (FerretDB-compatible) repositories.

Every hot read is an ``_id`` lookup (FerretDB's SQLite backend scans for anything else):

- ``definitions``: one document per org, ``_id`` = org → the current ordered definitions and
  their version (the card reads this, usually from the in-process cache);
- ``definition_versions``: one document per (org, version), ``_id`` = ``{org}:{version}``, with
  the full definitions of that version. Inserting it is how a change *claims* its version: the
  unique ``_id`` lets exactly one concurrent writer win, without transactions or atomic
  updates. The claim is written before the ``definitions`` pointer, so a writer that crashes in
  between is repaired by the next writer (roll-forward in ``get_for_write``);
- ``contacts``: ``_id`` = ``{org}:{contact_id}``;
- ``identities``: ``_id`` = ``{org}:{channel}:{handle}`` → contact id.

``contacts`` and ``identities`` can be hash-sharded over many collections (see
``ShardedCollections``) because FerretDB's SQLite backend turned out to scan even for ``_id``.

The org (and channel) parts of composite ids are percent-encoded so ``:`` inside an id can
never make two different (org, contact) pairs collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pymongo import InsertOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contacts_service.domain.attributes import AttributeDefinition, AttributeType, Definitions
from contacts_service.domain.contact import Contact, Entry, Identity, ProfileChange

Doc = dict[str, Any]
DUPLICATE_KEY = 11000
#: Concurrent read-modify-writes of existing contacts within one batch.
UPDATE_CONCURRENCY = 32


def _q(part: str) -> str:
    return quote(part, safe="")


def contact_doc_id(org_id: str, contact_id: str) -> str:
    return f"{_q(org_id)}:{contact_id}"


def identity_doc_id(org_id: str, identity: Identity) -> str:
    return f"{_q(org_id)}:{_q(identity.channel)}:{identity.handle}"


# -- definitions -------------------------------------------------------------------------------


def _definitions_to_doc(definitions: Definitions) -> Doc:
    return {
        "org_id": definitions.org_id,
        "version": definitions.version,
        "items": [
            {
                "key": d.key,
                "label": d.label,
                "type": str(d.type),
                "options": list(d.options),
                "enabled": d.enabled,
                "built_in": d.built_in,
            }
            for d in definitions.items
        ],
        "written_at": datetime.now(UTC),
    }


def _definitions_from_doc(doc: Doc) -> Definitions:
    return Definitions(
        org_id=doc["org_id"],
        version=int(doc["version"]),
        items=tuple(
            AttributeDefinition(
                key=i["key"],
                label=i["label"],
                type=AttributeType(i["type"]),
                options=tuple(i.get("options") or ()),
                enabled=bool(i["enabled"]),
                built_in=bool(i.get("built_in", False)),
            )
            for i in doc["items"]
        ),
    )


class MongoDefinitionsRepository:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._current: AsyncCollection[Doc] = db["definitions"]
        self._claims: AsyncCollection[Doc] = db["definition_versions"]

    async def get(self, org_id: str) -> Definitions:
        doc = await self._current.find_one({"_id": _q(org_id)})
        return Definitions.initial(org_id) if doc is None else _definitions_from_doc(doc)

    async def get_for_write(self, org_id: str) -> Definitions:
        current = await self.get(org_id)
        # Roll forward over versions claimed by writers that did not update the pointer.
        while True:
            claim = await self._claims.find_one({"_id": f"{_q(org_id)}:{current.version + 1}"})
            if claim is None:
                return current
            current = _definitions_from_doc(claim)
            await self._write_pointer(current)

    async def commit(self, definitions: Definitions) -> bool:
        doc = _definitions_to_doc(definitions)
        try:
            await self._claims.insert_one(
                {"_id": f"{_q(definitions.org_id)}:{definitions.version}", **doc}
            )
        except DuplicateKeyError:
            return False
        await self._write_pointer(definitions)
        return True

    async def _write_pointer(self, definitions: Definitions) -> None:
        doc = _definitions_to_doc(definitions)
        # Only ever move forward; an upsert on an existing newer doc is a duplicate key.
        with contextlib.suppress(DuplicateKeyError):
            await self._current.replace_one(
                {"_id": _q(definitions.org_id), "version": {"$lt": definitions.version}},
                doc,
                upsert=True,
            )


# -- contacts ------------------------------------------------------------------------------


def _contact_to_doc(contact: Contact) -> Doc:
    return {
        "_id": contact_doc_id(contact.org_id, contact.contact_id),
        "org_id": contact.org_id,
        "contact_id": contact.contact_id,
        "attrs": {k: _entry_to_doc(e) for k, e in contact.entries.items()},
        "identities": [{"channel": i.channel, "handle": i.handle} for i in contact.identities],
        "updated_us": contact.updated_micros,
    }


def _entry_to_doc(entry: Entry) -> Doc:
    return {"v": entry.value, "t": entry.stamp[0], "e": entry.stamp[1]}


def _contact_from_doc(doc: Doc) -> Contact:
    return Contact(
        org_id=doc["org_id"],
        contact_id=doc["contact_id"],
        entries={
            k: Entry(e.get("v"), (int(e["t"]), str(e["e"])))
            for k, e in (doc.get("attrs") or {}).items()
        },
        identities=tuple(
            Identity(i["channel"], i["handle"]) for i in (doc.get("identities") or ())
        ),
        updated_micros=int(doc.get("updated_us", 0)),
    )


class ShardedCollections:
    """``name`` split into ``shards`` collections by a stable hash of the document ``_id``.

    Why: on FerretDB v1 with the SQLite backend as deployed here, even ``_id`` lookups are
    table scans (``explain`` shows ``SCAN``; latency grows linearly with the collection).
    Spreading documents over many small collections bounds every lookup's scan to
    ~N/shards rows. On MongoDB use ``shards = 1`` (one plain collection named ``name``).
    The shard count is part of the data layout: changing it needs a migration.
    """

    def __init__(self, db: AsyncDatabase[Doc], name: str, shards: int) -> None:
        self._shards = shards
        self._collections: list[AsyncCollection[Doc]] = (
            [db[name]] if shards <= 1 else [db[f"{name}_{i:04d}"] for i in range(shards)]
        )

    def index(self, doc_id: str) -> int:
        return 0 if self._shards <= 1 else zlib.crc32(doc_id.encode()) % self._shards

    def of(self, doc_id: str) -> AsyncCollection[Doc]:
        return self._collections[self.index(doc_id)]

    async def insert_new(self, docs: Sequence[Doc], concurrency: int) -> list[int]:
        """Insert ``docs`` (unordered); return the positions of those whose ``_id`` existed."""
        by_shard: dict[int, list[int]] = {}
        for position, doc in enumerate(docs):
            by_shard.setdefault(self.index(doc["_id"]), []).append(position)
        limit = asyncio.Semaphore(concurrency)

        async def insert(shard: int, positions: list[int]) -> list[int]:
            async with limit:
                try:
                    await self._collections[shard].bulk_write(
                        [InsertOne(docs[p]) for p in positions], ordered=False
                    )
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    if any(e.get("code") != DUPLICATE_KEY for e in errors):
                        raise
                    return [positions[int(e["index"])] for e in errors]
                return []

        results = await asyncio.gather(*(insert(s, ps) for s, ps in by_shard.items()))
        return sorted(p for r in results for p in r)


class MongoContactRepository:
    def __init__(self, db: AsyncDatabase[Doc], *, shards: int = 1) -> None:
        self._contacts = ShardedCollections(db, "contacts", shards)
        self._identities = ShardedCollections(db, "identities", shards)

    async def get(self, org_id: str, contact_id: str) -> Contact | None:
        doc_id = contact_doc_id(org_id, contact_id)
        doc = await self._contacts.of(doc_id).find_one({"_id": doc_id})
        if doc is None or doc.get("org_id") != org_id:
            return None
        return _contact_from_doc(doc)

    async def get_many(self, org_id: str, contact_ids: Sequence[str]) -> list[Contact]:
        # One _id lookup each (an $in would scan on FerretDB's SQLite backend).
        found = await asyncio.gather(*(self.get(org_id, c) for c in contact_ids))
        return [c for c in found if c is not None]

    async def find_by_identity(self, org_id: str, identity: Identity) -> Contact | None:
        doc_id = identity_doc_id(org_id, identity)
        doc = await self._identities.of(doc_id).find_one({"_id": doc_id})
        if doc is None or doc.get("org_id") != org_id:
            return None
        return await self.get(org_id, doc["contact_id"])

    async def apply(self, changes: Sequence[Sequence[ProfileChange]]) -> None:
        """Insert-first: new contacts cost one unordered insert per collection touched; the
        contacts that already exist (duplicate ``_id``) are merged by read-modify-write (this
        partition is their only writer, and the merge is idempotent, so a redelivered batch
        is harmless)."""
        fresh: list[tuple[Contact, Sequence[ProfileChange]]] = []
        for group in changes:
            first = group[0]
            contact, _ = Contact(first.org_id, first.contact_id).apply_all(group)
            fresh.append((contact, group))
        existing = await self._contacts.insert_new(
            [_contact_to_doc(c) for c, _ in fresh], UPDATE_CONCURRENCY
        )
        if existing:
            limit = asyncio.Semaphore(UPDATE_CONCURRENCY)

            async def merge(group: Sequence[ProfileChange]) -> None:
                async with limit:
                    await self._merge_existing(group)

            await asyncio.gather(*(merge(fresh[i][1]) for i in existing))
        await self._index_identities([c for c, _ in fresh])

    async def _merge_existing(self, group: Sequence[ProfileChange]) -> None:
        first = group[0]
        doc_id = contact_doc_id(first.org_id, first.contact_id)
        collection = self._contacts.of(doc_id)
        doc = await collection.find_one({"_id": doc_id})
        if doc is None:  # vanished meanwhile (cannot happen today: contacts are never deleted)
            contact, _ = Contact(first.org_id, first.contact_id).apply_all(group)
            await collection.replace_one({"_id": doc_id}, _contact_to_doc(contact), upsert=True)
            return
        stored = _contact_from_doc(doc)
        contact, changed = stored.apply_all(group)
        update: Doc = {f"attrs.{k}": _entry_to_doc(contact.entries[k]) for k in changed}
        if contact.identities != stored.identities:
            update["identities"] = [
                {"channel": i.channel, "handle": i.handle} for i in contact.identities
            ]
        if contact.updated_micros != stored.updated_micros:
            update["updated_us"] = contact.updated_micros
        if update:
            await collection.update_one({"_id": doc_id}, {"$set": update})

    async def _index_identities(self, contacts: Sequence[Contact]) -> None:
        """Point each identity at its contact (the contact changed most recently wins)."""
        docs: dict[str, Doc] = {}
        for contact in contacts:
            for identity in contact.identities:
                doc_id = identity_doc_id(contact.org_id, identity)
                docs[doc_id] = {
                    "_id": doc_id,
                    "org_id": contact.org_id,
                    "channel": identity.channel,
                    "handle": identity.handle,
                    "contact_id": contact.contact_id,
                    "updated_us": contact.updated_micros,
                }
        if not docs:
            return
        listed = list(docs.values())
        taken = await self._identities.insert_new(listed, UPDATE_CONCURRENCY)
        limit = asyncio.Semaphore(UPDATE_CONCURRENCY)

        async def claim(doc: Doc) -> None:
            async with limit:
                await self._identities.of(doc["_id"]).update_one(
                    {
                        "_id": doc["_id"],
                        "contact_id": {"$ne": doc["contact_id"]},
                        "updated_us": {"$lt": doc["updated_us"]},
                    },
                    {"$set": {k: v for k, v in doc.items() if k != "_id"}},
                )

        await asyncio.gather(*(claim(listed[i]) for i in taken))
