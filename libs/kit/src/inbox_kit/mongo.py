"""The MongoDB client (PyMongo's native async API, Motor's successor), capped bulk writes and
batched reads by ``_id``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from pymongo import (
    AsyncMongoClient,
    DeleteMany,
    DeleteOne,
    InsertOne,
    ReplaceOne,
    UpdateMany,
    UpdateOne,
)
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from inbox_kit.settings import ServiceSettings

T = TypeVar("T")


def connect(
    settings: ServiceSettings,
) -> tuple[AsyncMongoClient[dict[str, Any]], AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        appname=settings.service_name,
    )
    return client, client[settings.mongodb_database]


async def queries_use_secondary_indexes(db: AsyncDatabase[Any]) -> bool:
    """False on FerretDB v1 (``buildInfo`` reports ``ferretdbVersion``): its backends serve only
    an exact ``_id`` filter from an index and scan for every other filter, while each secondary
    index is still maintained on every write - pure write cost. True on MongoDB."""
    info = await db.client.admin.command("buildInfo")
    return "ferretdbVersion" not in info


async def upsert(write: Callable[[], Awaitable[T]]) -> T:
    """Run an upsert of a document several writers may create at the same moment.

    When two upserts of a new ``_id`` race, the loser gets ``DuplicateKeyError`` (on MongoDB as
    on FerretDB). The document exists by then, so running the write again updates it.
    """
    try:
        return await write()
    except DuplicateKeyError:
        return await write()


#: The most operations one bulk write (or insert_many) sends in one command. FerretDB v1
#: (unpatched) keeps one pooled connection per update of a command until it ends, and its
#: SQLite pool is 100: a bulk write of >= ~100 updates hangs that database for good
#: (ENGINEERING.md §6). The devstack's FerretDB is patched, production MongoDB has no such
#: limit, but every bulk write stays capped so any MongoDB-wire backend is safe.
MAX_BULK_OPERATIONS = 64
#: Inserts hold no query open (the leak is per update), and one command per 64 inserts costs
#: FerretDB up to half its insert throughput (measured: 5,000 documents, one command vs 64s):
#: inserts go in commands of this many.
MAX_BULK_INSERTS = 1000


def chunked(items: Sequence[T], size: int = MAX_BULK_OPERATIONS) -> list[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    return [items[start : start + size] for start in range(0, len(items), size)]


#: The most ``_id``s one ``find_by_ids`` query names: the devstack's FerretDB serves an
#: ``{_id: {$in: [...]}}`` of 1-500 strings/ObjectIds from the ``_id`` index (its ``$in``
#: patch, ``libs/devstack``) and scans the collection for a longer list.
IDS_PER_QUERY = 256


async def find_by_ids(
    collection: AsyncCollection[Any],
    ids: Sequence[Any],
    projection: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The documents with these ``_id``s (any order, missing ones left out): one
    ``{_id: {$in: [...]}}`` query per ``IDS_PER_QUERY`` distinct ids (an exact ``{_id: x}``
    for a single id). An index search per id on MongoDB and on the devstack's FerretDB, so
    a batch costs one round trip instead of one per id."""
    out: list[dict[str, Any]] = []
    for part in chunked(list(dict.fromkeys(ids)), IDS_PER_QUERY):
        query = {"_id": part[0]} if len(part) == 1 else {"_id": {"$in": list(part)}}
        out += await collection.find(query, projection).to_list()
    return out


async def bulk_write(
    collection: AsyncCollection[Any],
    operations: Sequence[_WriteOp],
    *,
    ordered: bool = False,
    chunk_size: int = MAX_BULK_OPERATIONS,
) -> dict[str, int]:
    """``collection.bulk_write`` in commands of at most ``chunk_size`` (``MAX_BULK_OPERATIONS``).

    Returns the summed counts (``nInserted``, ``nMatched``, ``nModified``, ``nUpserted``,
    ``nRemoved``). Write errors of every command are raised together as one
    ``BulkWriteError`` whose ``index`` values point into ``operations`` (unordered: every
    command runs; ordered: the first failing command stops the rest), like a single call.
    """
    totals = dict.fromkeys(_COUNTS, 0)
    errors: list[dict[str, Any]] = []
    size = min(chunk_size, MAX_BULK_INSERTS)
    for start in range(0, len(operations), size):
        chunk = list(operations[start : start + size])
        details: Mapping[str, Any]
        try:
            result = await collection.bulk_write(chunk, ordered=ordered)
            details = result.bulk_api_result
        except BulkWriteError as exc:
            details = exc.details
            errors += [{**e, "index": int(e["index"]) + start} for e in details["writeErrors"]]
        for name in _COUNTS:
            totals[name] += int(details.get(name, 0))
        if errors and ordered:
            break
    if errors:
        raise BulkWriteError({**totals, "writeErrors": errors, "writeConcernErrors": []})
    return totals


async def insert_many(
    collection: AsyncCollection[Any], documents: Sequence[dict[str, Any]], *, ordered: bool = False
) -> int:
    """Insert in commands of at most ``MAX_BULK_INSERTS``; return how many were inserted.
    Errors as ``bulk_write``."""
    operations = [InsertOne(d) for d in documents]
    totals = await bulk_write(collection, operations, ordered=ordered, chunk_size=MAX_BULK_INSERTS)
    return totals["nInserted"]


_COUNTS = ("nInserted", "nMatched", "nModified", "nUpserted", "nRemoved")
_WriteOp = InsertOne[Any] | UpdateOne | UpdateMany | ReplaceOne[Any] | DeleteOne | DeleteMany
