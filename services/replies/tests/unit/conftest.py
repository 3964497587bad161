"""In-memory fakes of the replies service's ports (unit tests only)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from inbox_contracts import CloudEvent
from inbox_contracts.events import SavedReplyUsed
from inbox_kit.auth import Principal
from replies_service.domain.model import Collection, SavedReply
from replies_service.service_layer.handlers import Deps
from replies_service.service_layer.search_index import SearchIndex


@dataclass
class FakeStore:
    collections: dict[str, Collection] = field(default_factory=dict)
    replies: dict[str, SavedReply] = field(default_factory=dict)
    shortcuts: dict[str, str] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)
    usage: dict[str, tuple[str, int, list[str]]] = field(default_factory=dict)
    usage_revisions: dict[str, str] = field(default_factory=dict)
    loads: int = 0

    async def get_collection(self, collection_id: str) -> Collection | None:
        return self.collections.get(collection_id)

    async def insert_collection(self, collection: Collection) -> None:
        assert collection.collection_id not in self.collections
        self.collections[collection.collection_id] = collection

    async def ensure_collection(self, collection: Collection) -> Collection:
        return self.collections.setdefault(collection.collection_id, collection)

    async def save_collection(self, collection: Collection) -> None:
        self.collections[collection.collection_id] = collection

    async def delete_collection(self, collection_id: str) -> None:
        self.collections.pop(collection_id, None)

    async def get_reply(self, reply_id: str) -> SavedReply | None:
        return self.replies.get(reply_id)

    async def insert_reply(self, reply: SavedReply) -> None:
        self.replies[reply.reply_id] = reply

    async def save_reply(self, reply: SavedReply) -> None:
        self.replies[reply.reply_id] = reply

    async def delete_reply(self, reply_id: str) -> None:
        self.replies.pop(reply_id, None)

    async def replies_in_collection(self, collection_id: str) -> list[SavedReply]:
        return [r for r in self.replies.values() if r.collection_id == collection_id]

    async def load_org(self, org_id: str) -> tuple[list[Collection], list[SavedReply]]:
        self.loads += 1
        cs = [c for c in self.collections.values() if c.org_id == org_id]
        live = {c.collection_id for c in cs}
        rs = [r for r in self.replies.values() if r.org_id == org_id and r.collection_id in live]
        return cs, rs

    async def claim_shortcut(self, key: str, org_id: str, reply_id: str) -> str:
        return self.shortcuts.setdefault(key, reply_id)

    async def release_shortcut(self, key: str, reply_id: str) -> None:
        if self.shortcuts.get(key) == reply_id:
            del self.shortcuts[key]

    async def get_revision(self, org_id: str) -> str | None:
        return self.revisions.get(org_id)

    async def bump_revision(self, org_id: str) -> None:
        self.revisions[org_id] = uuid.uuid4().hex

    async def usage_count(self, reply_id: str) -> int:
        return self.usage.get(reply_id, ("", 0, []))[1]

    async def usage_counts(self, org_id: str) -> dict[str, int]:
        return {k: v[1] for k, v in self.usage.items() if v[0] == org_id}

    async def get_usage_revision(self, org_id: str) -> str | None:
        return self.usage_revisions.get(org_id)

    async def bump_usage_revision(self, org_id: str) -> None:
        self.usage_revisions[org_id] = uuid.uuid4().hex

    async def apply_use(self, reply_id: str, org_id: str, event_id: str) -> bool:
        org, count, recent = self.usage.get(reply_id, (org_id, 0, []))
        if event_id in recent:
            return False
        self.usage[reply_id] = (org, count + 1, [*recent, event_id])
        return True


@dataclass
class FakeContacts:
    contacts: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    org_of_token: dict[str, str] = field(default_factory=dict)

    async def get_contact(self, contact_id: str, *, caller: Principal) -> Mapping[str, str] | None:
        self.calls.append((contact_id, caller.bearer_token))
        org = self.org_of_token.get(caller.bearer_token, "")
        return self.contacts.get((org, contact_id))


@dataclass
class FakePublisher:
    events: list[CloudEvent[SavedReplyUsed]] = field(default_factory=list)

    async def publish_used(self, event: CloudEvent[SavedReplyUsed]) -> None:
        self.events.append(event)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def contacts() -> FakeContacts:
    return FakeContacts()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def deps(store: FakeStore, contacts: FakeContacts, publisher: FakePublisher) -> Deps:
    ticks = itertools.count()
    ids = itertools.count(1)
    return Deps(
        store=store,
        index=SearchIndex(store, usage_refresh_seconds=0),
        contacts=contacts,
        publisher=publisher,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC).replace(microsecond=next(ticks) % 10**6),
        new_id=lambda: f"id{next(ids)}",
    )
