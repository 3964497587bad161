"""The MongoDB client. PyMongo's native async API (Motor's successor)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from inbox_kit.settings import ServiceSettings


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
