"""The MongoDB client. PyMongo's native async API (Motor's successor)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

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


async def upsert(write: Callable[[], Awaitable[T]]) -> T:
    """Run an upsert of a document several writers may create at the same moment.

    When two upserts of a new ``_id`` race, the loser gets ``DuplicateKeyError`` (on MongoDB as
    on FerretDB). The document exists by then, so running the write again updates it.
    """
    try:
        return await write()
    except DuplicateKeyError:
        return await write()
