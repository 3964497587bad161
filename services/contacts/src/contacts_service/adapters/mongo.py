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

Every read and write of a contact or identity filters on the exact ``_id`` alone (or inserts
by it): that is an index seek on MongoDB and, with the devstack's patched FerretDB, on its
SQLite backend too (``_id`` ``$in`` as well, since its ``$in`` patch); ``_id`` plus other
fields, and any other field are full scans there. The one exception is the rare move of an
identity to another contact (a conditional update, kept for atomicity on MongoDB).

The org (and channel) parts of composite ids are percent-encoded so ``:`` inside an id can
never make two different (org, contact) pairs collide.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from inbox_kit.mongo import insert_many
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contacts_service.adapters.contact_cache import ContactCache
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


async def insert_new(collection: AsyncCollection[Doc], docs: Sequence[Doc]) -> list[int]:
    """Insert ``docs`` (unordered, capped bulk inserts); return the positions of those whose
    ``_id`` already existed (the only write errors tolerated)."""
    if not docs:
        return []
    try:
        await insert_many(collection, docs)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return sorted(int(e["index"]) for e in errors)
    return []


class MongoContactRepository:
    """Contacts and identities. Reads of contacts go through ``cache`` (off when omitted)."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        *,
        cache: ContactCache | None = None,
        read_concurrency: int = 16,
    ) -> None:
        self._contacts: AsyncCollection[Doc] = db["contacts"]
        self._raw_contacts = cast(
            AsyncCollection[RawBSONDocument],
            db.get_collection("contacts", codec_options=CodecOptions(RawBSONDocument)),
        )
        self._identities: AsyncCollection[Doc] = db["identities"]
        self._cache = cache if cache is not None else ContactCache(max_entries=0, max_age=0)
        self._read_concurrency = read_concurrency

    async def get(self, org_id: str, contact_id: str) -> Contact | None:
        raw = await self._cache.get(
            (org_id, contact_id), lambda: self._read_raw(org_id, contact_id)
        )
        if raw is None:
            return None
        doc = bson.decode(raw)
        if doc.get("org_id") != org_id:
            return None
        return _contact_from_doc(doc)

    async def _read_raw(self, org_id: str, contact_id: str) -> bytes | None:
        doc = await self._raw_contacts.find_one({"_id": contact_doc_id(org_id, contact_id)})
        return None if doc is None else bytes(doc.raw)

    async def get_many(self, org_id: str, contact_ids: Sequence[str]) -> list[Contact]:
        # Exact _id finds through the cache, a bounded number in flight (one ``$in`` would
        # be one round trip, but would bypass the cache's single-flight reads).
        limit = asyncio.Semaphore(self._read_concurrency)

        async def one(contact_id: str) -> Contact | None:
            async with limit:
                return await self.get(org_id, contact_id)

        found = await asyncio.gather(*(one(c) for c in contact_ids))
        return [c for c in found if c is not None]

    async def find_by_identity(self, org_id: str, identity: Identity) -> Contact | None:
        doc = await self._identities.find_one({"_id": identity_doc_id(org_id, identity)})
        if doc is None or doc.get("org_id") != org_id:
            return None
        return await self.get(org_id, doc["contact_id"])

    async def apply(self, changes: Sequence[Sequence[ProfileChange]]) -> None:
        """Insert-first: new contacts cost one unordered bulk insert for the whole batch; the
        contacts that already exist (duplicate ``_id``) are merged by read-modify-write on
        their exact ``_id`` (this partition is their only writer, and the merge is
        idempotent, so a redelivered batch is harmless)."""
        fresh: list[tuple[Contact, Sequence[ProfileChange]]] = []
        for group in changes:
            first = group[0]
            contact, _ = Contact(first.org_id, first.contact_id).apply_all(group)
            fresh.append((contact, group))
        existing = await insert_new(self._contacts, [_contact_to_doc(c) for c, _ in fresh])
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
        doc = await self._contacts.find_one({"_id": doc_id})
        if doc is None:  # vanished meanwhile (cannot happen today: contacts are never deleted)
            contact, _ = Contact(first.org_id, first.contact_id).apply_all(group)
            await self._contacts.replace_one({"_id": doc_id}, _contact_to_doc(contact), upsert=True)
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
            await self._contacts.update_one({"_id": doc_id}, {"$set": update})

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
        taken = await insert_new(self._identities, listed)
        limit = asyncio.Semaphore(UPDATE_CONCURRENCY)

        async def claim(doc: Doc) -> None:
            async with limit:
                # Common case (identity already points here, or at a newer contact): one exact
                # _id read and no write. Only an actual move pays for the conditional update,
                # which keeps "most recent wins" atomic on MongoDB (a scan on FerretDB; rare).
                stored = await self._identities.find_one({"_id": doc["_id"]})
                if stored is not None and (
                    stored.get("contact_id") == doc["contact_id"]
                    or int(stored.get("updated_us", 0)) >= doc["updated_us"]
                ):
                    return
                await self._identities.update_one(
                    {
                        "_id": doc["_id"],
                        "contact_id": {"$ne": doc["contact_id"]},
                        "updated_us": {"$lt": doc["updated_us"]},
                    },
                    {"$set": {k: v for k, v in doc.items() if k != "_id"}},
                    upsert=False,
                )

        await asyncio.gather(*(claim(listed[i]) for i in taken))
