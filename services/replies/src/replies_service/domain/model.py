"""Collections, saved replies and who may see or change them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from inbox_kit.errors import InvalidArgument

TITLE_MAX = 500
BODY_MAX = 2000
NAME_MAX = 200
DESCRIPTION_MAX = 2000
TAG_MAX = 50
TAGS_MAX = 20
SHARING_IDS_MAX = 100
SHORTCUT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

PERSONAL_COLLECTION_NAME = "Personal"


class CollectionKind(StrEnum):
    PERSONAL = "personal"
    SHARED = "shared"


@dataclass(frozen=True)
class Viewer:
    """Who is looking, in which context: the inputs of every visibility decision."""

    org_id: str
    agent_id: str
    is_admin: bool
    teams: frozenset[str]
    channel_id: str = ""

    @property
    def personal_collection_id(self) -> str:
        return personal_collection_id(self.org_id, self.agent_id)


def usable_channel(requested: str, granted: Iterable[str]) -> str:
    """The channel a viewer answers on: ``requested`` if their token grants it, else none —
    so a channel the caller may not use behaves as if nothing were shared with it."""
    return requested if requested and requested in granted else ""


def personal_collection_id(org_id: str, agent_id: str) -> str:
    return f"{org_id}:personal:{agent_id}"


@dataclass(frozen=True)
class Collection:
    collection_id: str
    org_id: str
    kind: CollectionKind
    name: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    team_ids: tuple[str, ...] = ()
    channel_ids: tuple[str, ...] = ()
    owner_agent_id: str = ""

    @classmethod
    def personal(cls, org_id: str, agent_id: str, now: datetime) -> Collection:
        return cls(
            collection_id=personal_collection_id(org_id, agent_id),
            org_id=org_id,
            kind=CollectionKind.PERSONAL,
            name=PERSONAL_COLLECTION_NAME,
            owner_agent_id=agent_id,
            created_at=now,
            updated_at=now,
        )

    def visible_to(self, viewer: Viewer) -> bool:
        if self.org_id != viewer.org_id:
            return False
        if self.kind is CollectionKind.PERSONAL:
            return self.owner_agent_id == viewer.agent_id
        if viewer.teams.intersection(self.team_ids):
            return True
        return bool(viewer.channel_id) and viewer.channel_id in self.channel_ids

    def writable_by(self, viewer: Viewer) -> bool:
        """Personal: its owner only. Shared: admins of the org (even if not shared with them)."""
        if self.org_id != viewer.org_id:
            return False
        if self.kind is CollectionKind.PERSONAL:
            return self.owner_agent_id == viewer.agent_id
        return viewer.is_admin

    def readable_by(self, viewer: Viewer) -> bool:
        """Visible, or an admin managing the org's shared collections."""
        return self.visible_to(viewer) or (
            self.kind is CollectionKind.SHARED and self.writable_by(viewer)
        )


@dataclass(frozen=True)
class SavedReply:
    reply_id: str
    org_id: str
    collection_id: str
    collection_kind: CollectionKind
    owner_agent_id: str  # owner of the personal collection; "" for shared
    title: str
    body: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    shortcut: str = ""
    tags: tuple[str, ...] = ()

    def edited(
        self, *, title: str, body: str, shortcut: str, tags: tuple[str, ...], now: datetime
    ) -> SavedReply:
        return replace(self, title=title, body=body, shortcut=shortcut, tags=tags, updated_at=now)

    @property
    def shortcut_key(self) -> str | None:
        return shortcut_key(self.org_id, self.collection_kind, self.owner_agent_id, self.shortcut)


def shortcut_key(
    org_id: str, kind: CollectionKind, owner_agent_id: str, shortcut: str
) -> str | None:
    """The uniqueness scope of a shortcut, as a claim key.

    Shared replies share one namespace per org; each agent's personal collection is its own
    namespace. A personal shortcut may equal a shared one: it shadows it for its owner.
    """
    if not shortcut:
        return None
    if kind is CollectionKind.SHARED:
        return f"{org_id}:shared:{shortcut}"
    return f"{org_id}:personal:{owner_agent_id}:{shortcut}"


@dataclass(frozen=True)
class ReplyDraft:
    """Validated writable fields of a reply."""

    title: str
    body: str
    shortcut: str
    tags: tuple[str, ...] = field(default=())


def normalize_shortcut(raw: str, field_name: str = "shortcut") -> str:
    text = raw.strip()
    if text.startswith("/"):
        text = text[1:]
    if not text:
        return ""
    if not SHORTCUT_RE.match(text):
        raise InvalidArgument(
            field_name,
            "must be 1-32 chars of a-z, 0-9, '_' or '-', starting with a letter or digit "
            "(an optional leading '/' is ignored)",
        )
    return text


def normalize_tags(raw: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in raw:
        text = tag.strip().lower()
        if not text:
            raise InvalidArgument("tags", "a tag must not be empty")
        if len(text) > TAG_MAX:
            raise InvalidArgument("tags", f"a tag must be at most {TAG_MAX} chars")
        seen[text] = None
    if len(seen) > TAGS_MAX:
        raise InvalidArgument("tags", f"at most {TAGS_MAX} tags")
    return tuple(seen)


def require_text(field_name: str, value: str, max_len: int, *, allow_empty: bool = False) -> str:
    if not allow_empty and not value.strip():
        raise InvalidArgument(field_name, "must not be empty")
    if len(value) > max_len:
        raise InvalidArgument(
            field_name, f"must be at most {max_len} characters (got {len(value)})"
        )
    return value
