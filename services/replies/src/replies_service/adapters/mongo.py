"""MongoDB (FerretDB in development) persistence of the replies service.

Hot paths look documents up by ``_id`` only (FerretDB scans tables for anything else):
collections, replies, shortcut claims (``_id`` = claim key), org revisions (``_id`` = org)
and usage counters (``_id`` = reply id). Uniqueness comes from ``_id``, never from
read-then-write.
"""

from __future__ import annotations

import uuid
from typing import Any

from inbox_kit.mongo import insert_many, queries_use_secondary_indexes, upsert
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from replies_service.domain.model import Collection, CollectionKind, SavedReply

Doc = dict[str, Any]
RECENT_USES_KEPT = 200


class MongoReplyStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._collections = db["collections"]
        self._replies = db["replies"]
        self._shortcuts = db["shortcuts"]
        self._revisions = db["revisions"]
        self._usage = db["usage_counts"]
        self._usage_revisions = db["usage_revisions"]

    async def ensure_indexes(self) -> None:
        """The listings' indexes, on MongoDB only (FerretDB never uses a secondary index for
        a query and would maintain them on every write)."""
        if not await queries_use_secondary_indexes(self._db):
            return
        await self._collections.create_index([("org_id", ASCENDING)])
        await self._replies.create_index([("org_id", ASCENDING)])
        await self._replies.create_index([("collection_id", ASCENDING)])
        await self._usage.create_index([("org_id", ASCENDING)])

    # ------------------------------------------------------------------ collections

    async def get_collection(self, collection_id: str) -> Collection | None:
        doc = await self._collections.find_one({"_id": collection_id})
        return _collection(doc) if doc else None

    async def insert_collection(self, collection: Collection) -> None:
        await self._collections.insert_one(_collection_doc(collection))

    async def ensure_collection(self, collection: Collection) -> Collection:
        try:
            await self._collections.insert_one(_collection_doc(collection))
        except DuplicateKeyError:
            stored = await self.get_collection(collection.collection_id)
            if stored is not None:
                return stored
        return collection

    async def save_collection(self, collection: Collection) -> None:
        await self._collections.replace_one(
            {"_id": collection.collection_id}, _collection_doc(collection)
        )

    async def delete_collection(self, collection_id: str) -> None:
        await self._collections.delete_one({"_id": collection_id})

    # ------------------------------------------------------------------ replies

    async def get_reply(self, reply_id: str) -> SavedReply | None:
        doc = await self._replies.find_one({"_id": reply_id})
        return _reply(doc) if doc else None

    async def insert_reply(self, reply: SavedReply) -> None:
        await self._replies.insert_one(_reply_doc(reply))

    async def insert_replies(self, replies: list[SavedReply]) -> None:
        """Bulk insert (seeding, benchmarks)."""
        if replies:
            await insert_many(self._replies, [_reply_doc(r) for r in replies])

    async def save_reply(self, reply: SavedReply) -> None:
        await self._replies.replace_one({"_id": reply.reply_id}, _reply_doc(reply))

    async def delete_reply(self, reply_id: str) -> None:
        await self._replies.delete_one({"_id": reply_id})

    async def replies_in_collection(self, collection_id: str) -> list[SavedReply]:
        return [_reply(d) async for d in self._replies.find({"collection_id": collection_id})]

    async def load_org(self, org_id: str) -> tuple[list[Collection], list[SavedReply]]:
        collections = [_collection(d) async for d in self._collections.find({"org_id": org_id})]
        live = {c.collection_id for c in collections}
        replies = [
            reply
            async for d in self._replies.find({"org_id": org_id})
            if (reply := _reply(d)).collection_id in live
        ]
        return collections, replies

    # ------------------------------------------------------------------ shortcuts

    async def claim_shortcut(self, key: str, org_id: str, reply_id: str) -> str:
        try:
            await self._shortcuts.insert_one({"_id": key, "org_id": org_id, "reply_id": reply_id})
            return reply_id
        except DuplicateKeyError:
            doc = await self._shortcuts.find_one({"_id": key})
            if doc is None:  # released meanwhile: try again
                return await self.claim_shortcut(key, org_id, reply_id)
            return str(doc["reply_id"])

    async def release_shortcut(self, key: str, reply_id: str) -> None:
        await self._shortcuts.delete_one({"_id": key, "reply_id": reply_id})

    # ------------------------------------------------------------------ revisions

    async def get_revision(self, org_id: str) -> str | None:
        doc = await self._revisions.find_one({"_id": org_id})
        return str(doc["token"]) if doc else None

    async def bump_revision(self, org_id: str) -> None:
        await upsert(
            lambda: self._revisions.replace_one(
                {"_id": org_id}, {"_id": org_id, "token": uuid.uuid4().hex}, upsert=True
            )
        )

    # ------------------------------------------------------------------ usage

    async def usage_count(self, reply_id: str) -> int:
        doc = await self._usage.find_one({"_id": reply_id})
        return int(doc["count"]) if doc else 0

    async def usage_counts(self, org_id: str) -> dict[str, int]:
        return {
            str(d["_id"]): int(d["count"])
            async for d in self._usage.find({"org_id": org_id}, {"count": 1})
        }

    async def get_usage_revision(self, org_id: str) -> str | None:
        doc = await self._usage_revisions.find_one({"_id": org_id})
        return str(doc["token"]) if doc else None

    async def bump_usage_revision(self, org_id: str) -> None:
        await upsert(
            lambda: self._usage_revisions.replace_one(
                {"_id": org_id}, {"_id": org_id, "token": uuid.uuid4().hex}, upsert=True
            )
        )

    async def apply_use(self, reply_id: str, org_id: str, event_id: str) -> bool:
        """Count one use unless ``event_id`` was counted already.

        Called only by the consumer that owns the reply id's partition (single writer), and the
        update is conditional on the count it read, so even a rebalance overlap cannot lose
        or double a use. Redeliveries come soon after the original, so remembering the last
        200 event ids per reply is enough for idempotency.
        """
        for _ in range(10):
            doc = await self._usage.find_one({"_id": reply_id})
            if doc is None:
                try:
                    await self._usage.insert_one(
                        {"_id": reply_id, "org_id": org_id, "count": 1, "recent": [event_id]}
                    )
                    return True
                except DuplicateKeyError:
                    continue
            recent = list(doc.get("recent", []))
            if event_id in recent:
                return False
            count = int(doc["count"])
            result = await self._usage.update_one(
                {"_id": reply_id, "count": count},
                {"$set": {"count": count + 1, "recent": [*recent, event_id][-RECENT_USES_KEPT:]}},
            )
            if result.matched_count == 1:
                return True
        raise RuntimeError(f"could not count a use of reply {reply_id}: too much contention")


def _collection_doc(c: Collection) -> Doc:
    return {
        "_id": c.collection_id,
        "org_id": c.org_id,
        "kind": str(c.kind),
        "name": c.name,
        "description": c.description,
        "team_ids": list(c.team_ids),
        "channel_ids": list(c.channel_ids),
        "owner_agent_id": c.owner_agent_id,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def _collection(d: Doc) -> Collection:
    return Collection(
        collection_id=str(d["_id"]),
        org_id=d["org_id"],
        kind=CollectionKind(d["kind"]),
        name=d["name"],
        description=d.get("description", ""),
        team_ids=tuple(d.get("team_ids", ())),
        channel_ids=tuple(d.get("channel_ids", ())),
        owner_agent_id=d.get("owner_agent_id", ""),
        created_at=d["created_at"],
        updated_at=d["updated_at"],
    )


def _reply_doc(r: SavedReply) -> Doc:
    return {
        "_id": r.reply_id,
        "org_id": r.org_id,
        "collection_id": r.collection_id,
        "collection_kind": str(r.collection_kind),
        "owner_agent_id": r.owner_agent_id,
        "title": r.title,
        "body": r.body,
        "shortcut": r.shortcut,
        "tags": list(r.tags),
        "created_by": r.created_by,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


def _reply(d: Doc) -> SavedReply:
    return SavedReply(
        reply_id=str(d["_id"]),
        org_id=d["org_id"],
        collection_id=d["collection_id"],
        collection_kind=CollectionKind(d["collection_kind"]),
        owner_agent_id=d.get("owner_agent_id", ""),
        title=d["title"],
        body=d["body"],
        shortcut=d.get("shortcut", ""),
        tags=tuple(d.get("tags", ())),
        created_by=d.get("created_by", ""),
        created_at=d["created_at"],
        updated_at=d["updated_at"],
    )
