"""Use cases of the replies service, as plain async functions over ports.

Visibility rules live in ``domain.model``; these handlers load, check, write, and bump the
org revision after every write (so every replica's search index reloads).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from inbox_contracts import CloudEvent, utc_now
from inbox_contracts.events import SavedReplyUsed
from inbox_kit.auth import Principal
from inbox_kit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from inbox_kit.ids import name_based_id
from inbox_kit.validation import (
    MAX_ID_LENGTH,
    PageTokens,
    optional_id,
    require_id,
    require_ids,
)
from inbox_kit.validation import page_size as kit_page_size

from replies_service.domain import template
from replies_service.domain.model import (
    BODY_MAX,
    DESCRIPTION_MAX,
    NAME_MAX,
    SHARING_IDS_MAX,
    TITLE_MAX,
    Collection,
    CollectionKind,
    ReplyDraft,
    SavedReply,
    Viewer,
    normalize_shortcut,
    normalize_tags,
    require_text,
)
from replies_service.domain.search import Match, Query, top_matches
from replies_service.service_layer.ports import ContactDirectory, ReplyStore, UsagePublisher
from replies_service.service_layer.search_index import SearchIndex, reply_list

EVENT_SOURCE = "/inbox/replies"
PAGE_MAX = 100
#: ``{org_id}:personal:{agent_id}`` of two ids at their longest.
COLLECTION_ID_MAX = 2 * MAX_ID_LENGTH + 16
REPLY_PAGES = PageTokens("replies.list", 2)
SEARCH_PAGES = PageTokens("replies.search", 1)


@dataclass
class Deps:
    store: ReplyStore
    index: SearchIndex
    contacts: ContactDirectory
    publisher: UsagePublisher
    clock: Callable[[], datetime] = utc_now
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex


async def _committed(deps: Deps, org_id: str) -> None:
    """After every write: new org revision (all replicas reload), and no cached revision here."""
    await deps.store.bump_revision(org_id)
    deps.index.note_write(org_id)


# --------------------------------------------------------------------------- collections


def _sharing(team_ids: Sequence[str], channel_ids: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    return _sharing_ids("team_ids", team_ids), _sharing_ids("channel_ids", channel_ids)


def _sharing_ids(field: str, values: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(require_ids(field, values, max_count=SHARING_IDS_MAX))))


async def create_collection(
    deps: Deps,
    viewer: Viewer,
    *,
    name: str,
    description: str,
    team_ids: Sequence[str],
    channel_ids: Sequence[str],
) -> Collection:
    _require_admin(viewer)
    require_text("name", name, NAME_MAX)
    require_text("description", description, DESCRIPTION_MAX, allow_empty=True)
    teams, channels = _sharing(team_ids, channel_ids)
    now = deps.clock()
    collection = Collection(
        collection_id=f"{viewer.org_id}:shared:{deps.new_id()}",
        org_id=viewer.org_id,
        kind=CollectionKind.SHARED,
        name=name.strip(),
        description=description,
        team_ids=teams,
        channel_ids=channels,
        created_at=now,
        updated_at=now,
    )
    await deps.store.insert_collection(collection)
    await _committed(deps, viewer.org_id)
    return collection


async def update_collection(
    deps: Deps,
    viewer: Viewer,
    *,
    collection_id: str,
    name: str,
    description: str,
    team_ids: Sequence[str],
    channel_ids: Sequence[str],
) -> Collection:
    collection = await _writable_collection(deps, viewer, collection_id)
    if collection.kind is CollectionKind.PERSONAL:
        raise PermissionDenied(
            "a personal collection cannot be renamed or shared", reason="PERSONAL_COLLECTION_FIXED"
        )
    require_text("name", name, NAME_MAX)
    require_text("description", description, DESCRIPTION_MAX, allow_empty=True)
    teams, channels = _sharing(team_ids, channel_ids)
    updated = replace(
        collection,
        name=name.strip(),
        description=description,
        team_ids=teams,
        channel_ids=channels,
        updated_at=deps.clock(),
    )
    await deps.store.save_collection(updated)
    await _committed(deps, viewer.org_id)
    return updated


async def delete_collection(deps: Deps, viewer: Viewer, collection_id: str) -> int:
    collection = await _writable_collection(deps, viewer, collection_id)
    if collection.kind is CollectionKind.PERSONAL:
        raise PermissionDenied(
            "a personal collection cannot be deleted", reason="PERSONAL_COLLECTION_FIXED"
        )
    replies = await deps.store.replies_in_collection(collection.collection_id)
    # Collection first: its replies become invisible at once, even if we crash mid-way
    # (orphans are never shown; stale shortcut claims are taken over, see _claim).
    await deps.store.delete_collection(collection.collection_id)
    for reply in replies:
        await deps.store.delete_reply(reply.reply_id)
        if key := reply.shortcut_key:
            await deps.store.release_shortcut(key, reply.reply_id)
    await _committed(deps, viewer.org_id)
    return len(replies)


async def list_collections(deps: Deps, viewer: Viewer) -> list[Collection]:
    personal = await _personal_collection(deps, viewer)
    snapshot = await deps.index.snapshot(viewer.org_id)
    shared = [c for c in snapshot.visible_collections(viewer) if c.kind is CollectionKind.SHARED]
    shared.sort(key=lambda c: (c.name.lower(), c.collection_id))
    return [personal, *shared]


async def _personal_collection(deps: Deps, viewer: Viewer) -> Collection:
    existing = await deps.store.get_collection(viewer.personal_collection_id)
    if existing is not None:
        return existing
    stored = await deps.store.ensure_collection(
        Collection.personal(viewer.org_id, viewer.agent_id, deps.clock())
    )
    await _committed(deps, viewer.org_id)
    return stored


async def _visible_collection(deps: Deps, viewer: Viewer, collection_id: str) -> Collection:
    require_id("collection_id", collection_id, max_length=COLLECTION_ID_MAX)
    if collection_id == viewer.personal_collection_id:
        return await _personal_collection(deps, viewer)
    collection = await deps.store.get_collection(collection_id)
    if collection is None or not collection.readable_by(viewer):
        raise NotFound(f"collection {collection_id} not found", reason="COLLECTION_NOT_FOUND")
    return collection


async def _writable_collection(deps: Deps, viewer: Viewer, collection_id: str) -> Collection:
    collection = await _visible_collection(deps, viewer, collection_id)
    if not collection.writable_by(viewer):
        raise PermissionDenied(
            "only admins manage shared collections and their replies", reason="ADMIN_REQUIRED"
        )
    return collection


def _require_admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise PermissionDenied("this operation needs the admin role", reason="ADMIN_REQUIRED")


# --------------------------------------------------------------------------- replies


def validate_draft(title: str, body: str, shortcut: str, tags: Sequence[str]) -> ReplyDraft:
    require_text("title", title, TITLE_MAX)
    require_text("body", body, BODY_MAX)
    template.validate(body, "body")
    return ReplyDraft(
        title=title.strip(),
        body=body,
        shortcut=normalize_shortcut(shortcut),
        tags=normalize_tags(tags),
    )


async def create_reply(
    deps: Deps,
    viewer: Viewer,
    *,
    collection_id: str,
    title: str,
    body: str,
    shortcut: str,
    tags: Sequence[str],
) -> SavedReply:
    draft = validate_draft(title, body, shortcut, tags)
    collection = await _writable_collection(
        deps, viewer, collection_id or viewer.personal_collection_id
    )
    now = deps.clock()
    reply = SavedReply(
        reply_id=deps.new_id(),
        org_id=viewer.org_id,
        collection_id=collection.collection_id,
        collection_kind=collection.kind,
        owner_agent_id=collection.owner_agent_id,
        title=draft.title,
        body=draft.body,
        shortcut=draft.shortcut,
        tags=draft.tags,
        created_by=viewer.agent_id,
        created_at=now,
        updated_at=now,
    )
    if key := reply.shortcut_key:
        await _claim(deps, key, reply)
    try:
        await deps.store.insert_reply(reply)
    except BaseException:
        if key:
            await deps.store.release_shortcut(key, reply.reply_id)
        raise
    await _committed(deps, viewer.org_id)
    return reply


async def update_reply(
    deps: Deps,
    viewer: Viewer,
    *,
    reply_id: str,
    title: str,
    body: str,
    shortcut: str,
    tags: Sequence[str],
) -> SavedReply:
    draft = validate_draft(title, body, shortcut, tags)
    reply, _ = await _writable_reply(deps, viewer, reply_id)
    updated = reply.edited(
        title=draft.title,
        body=draft.body,
        shortcut=draft.shortcut,
        tags=draft.tags,
        now=deps.clock(),
    )
    old_key, new_key = reply.shortcut_key, updated.shortcut_key
    if new_key and new_key != old_key:
        await _claim(deps, new_key, updated)
    await deps.store.save_reply(updated)
    if old_key and old_key != new_key:
        await deps.store.release_shortcut(old_key, reply.reply_id)
    await _committed(deps, viewer.org_id)
    return updated


async def delete_reply(deps: Deps, viewer: Viewer, reply_id: str) -> None:
    reply, _ = await _writable_reply(deps, viewer, reply_id)
    await deps.store.delete_reply(reply.reply_id)
    if key := reply.shortcut_key:
        await deps.store.release_shortcut(key, reply.reply_id)
    await _committed(deps, viewer.org_id)


async def _claim(deps: Deps, key: str, reply: SavedReply) -> None:
    """Claim a shortcut through the unique ``_id`` of its claim document.

    A claim whose holder no longer exists (a crash between steps) is taken over.
    """
    for _ in range(3):
        holder = await deps.store.claim_shortcut(key, reply.org_id, reply.reply_id)
        if holder == reply.reply_id:
            return
        current = await deps.store.get_reply(holder)
        if current is not None and current.shortcut_key == key:
            raise AlreadyExists(
                f"shortcut /{reply.shortcut} is already used by another reply "
                f"({_scope_text(reply.collection_kind)})",
                reason="SHORTCUT_TAKEN",
            )
        await deps.store.release_shortcut(key, holder)
    raise AlreadyExists(
        f"shortcut /{reply.shortcut} is being claimed concurrently; retry", reason="SHORTCUT_TAKEN"
    )


def _scope_text(kind: CollectionKind) -> str:
    if kind is CollectionKind.SHARED:
        return "shortcuts are unique among the org's shared collections"
    return "shortcuts are unique within your personal collection"


async def _visible_reply(
    deps: Deps, viewer: Viewer, reply_id: str
) -> tuple[SavedReply, Collection]:
    require_id("reply_id", reply_id)
    reply = await deps.store.get_reply(reply_id)
    if reply is not None and reply.org_id == viewer.org_id:
        collection = await deps.store.get_collection(reply.collection_id)
        if collection is not None and collection.readable_by(viewer):
            return reply, collection
    raise NotFound(f"reply {reply_id} not found", reason="REPLY_NOT_FOUND")


async def _writable_reply(
    deps: Deps, viewer: Viewer, reply_id: str
) -> tuple[SavedReply, Collection]:
    reply, collection = await _visible_reply(deps, viewer, reply_id)
    if not collection.writable_by(viewer):
        raise PermissionDenied(
            "only admins manage shared collections and their replies", reason="ADMIN_REQUIRED"
        )
    return reply, collection


@dataclass(frozen=True)
class ReplyView:
    reply: SavedReply
    usage_count: int


async def get_reply(deps: Deps, viewer: Viewer, reply_id: str) -> ReplyView:
    reply, _ = await _visible_reply(deps, viewer, reply_id)
    return ReplyView(reply, await deps.store.usage_count(reply.reply_id))


# --------------------------------------------------------------------------- paging


@dataclass(frozen=True)
class Page:
    items: list[ReplyView]
    next_page_token: str


async def list_replies(
    deps: Deps, viewer: Viewer, *, collection_id: str, page_size: int, page_token: str
) -> Page:
    size = kit_page_size(page_size, default=50, maximum=PAGE_MAX)
    after = REPLY_PAGES.decode(page_token)
    collection = await _visible_collection(deps, viewer, collection_id)
    snapshot = await deps.index.snapshot(viewer.org_id)
    replies = sorted(
        reply_list(snapshot, collection.collection_id),
        key=lambda r: (r.title.lower(), r.reply_id),
    )
    if after:
        last = (after.text(0), after.text(1))
        replies = [r for r in replies if (r.title.lower(), r.reply_id) > last]
    page = replies[:size]
    token = ""
    if len(replies) > size:
        token = REPLY_PAGES.encode([page[-1].title.lower(), page[-1].reply_id])
    return Page([ReplyView(r, snapshot.usage.get(r.reply_id, 0)) for r in page], token)


@dataclass(frozen=True)
class SearchHit:
    view: ReplyView
    match: Match


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_page_token: str


async def search_replies(
    deps: Deps, viewer: Viewer, *, query: str, page_size: int, page_token: str
) -> SearchPage:
    parsed = Query.parse(query)
    size = kit_page_size(page_size, default=20, maximum=PAGE_MAX)
    cursor = SEARCH_PAGES.decode(page_token)
    offset_raw = cursor.offset(0) if cursor else 0
    snapshot = await deps.index.snapshot(viewer.org_id)
    ranked, total = top_matches(
        snapshot.visible_entries(viewer), parsed, snapshot.usage, offset_raw + size
    )
    page = ranked[offset_raw : offset_raw + size]
    token = SEARCH_PAGES.encode([offset_raw + size]) if total > offset_raw + size else ""
    hits = [
        SearchHit(ReplyView(item.reply, snapshot.usage.get(item.reply.reply_id, 0)), kind)
        for item, kind in page
    ]
    return SearchPage(hits, token)


# --------------------------------------------------------------------------- render & usage


@dataclass(frozen=True)
class RenderResult:
    rendered: template.Rendered
    contact_found: bool


async def render_reply(
    deps: Deps,
    viewer: Viewer,
    caller: Principal,
    *,
    reply_id: str,
    contact_id: str,
) -> RenderResult:
    """``caller`` is the verified principal: contacts are read on its behalf."""
    optional_id("contact_id", contact_id)
    reply, _ = await _visible_reply(deps, viewer, reply_id)
    parts = template.parse(reply.body)
    needs_contact = any(
        isinstance(p, template.Placeholder) and p.namespace == "contact" for p in parts
    )
    attributes: dict[str, str] = {}
    found = False
    if contact_id and needs_contact:
        contact = await deps.contacts.get_contact(contact_id, caller=caller)
        if contact is not None:
            found = True
            attributes = dict(contact)
    elif contact_id:
        found = True  # not looked up: the template reads no contact field
    agent = {"name": caller.name or viewer.agent_id, "id": viewer.agent_id}
    rendered = template.render(parts, contact=template.contact_values(attributes), agent=agent)
    return RenderResult(rendered, found)


async def record_reply_used(
    deps: Deps,
    viewer: Viewer,
    *,
    reply_id: str,
    use_id: str,
    conversation_id: str,
) -> str:
    if len(use_id) > 100:
        raise InvalidArgument("use_id", "must be at most 100 characters")
    optional_id("conversation_id", conversation_id)
    reply, _ = await _visible_reply(deps, viewer, reply_id)
    event_id = (
        name_based_id(uuid.NAMESPACE_URL, f"{viewer.org_id}/{viewer.agent_id}/{use_id}")
        if use_id
        else str(uuid.uuid4())
    )
    event = CloudEvent.wrap(
        SavedReplyUsed(
            org_id=viewer.org_id,
            occurred_at=deps.clock(),
            reply_id=reply.reply_id,
            collection_id=reply.collection_id,
            agent_id=viewer.agent_id,
            conversation_id=conversation_id or None,
        ),
        source=EVENT_SOURCE,
        event_id=event_id,
    )
    await deps.publisher.publish_used(event)
    return event_id


async def count_use(deps: Deps, event: SavedReplyUsed, event_id: str) -> bool:
    """Consumer side of RecordReplyUsed: one writer per reply id (its Kafka partition)."""
    counted = await deps.store.apply_use(event.reply_id, event.org_id, event_id)
    # bumped even for a duplicate: a crash between counting and bumping is redelivered
    await deps.store.bump_usage_revision(event.org_id)
    return counted
