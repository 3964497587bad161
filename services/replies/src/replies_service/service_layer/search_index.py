"""In-process, per-org search index, kept fresh across replicas by a revision document.

FerretDB has no text index and scans whole tables for any non-``_id`` query, so searching
the database per keystroke does not scale. Instead each replica holds, per org, every
collection and reply in memory (10,000 replies ≈ a few MB). Before each read it fetches the
org's revision document **by _id** (cheap) and reloads the org when the token changed. Every
write sets a new random token *after* writing its data, so a replica can never keep serving
data older than the last completed write (see README). Usage counts (the ranking's
tie-breaker) are refreshed in the background at most every ``usage_refresh_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from replies_service.domain.model import Collection, SavedReply, Viewer
from replies_service.domain.search import Searchable
from replies_service.service_layer.ports import ReplyStore

log = logging.getLogger(__name__)

INDEX_RELOADS = Counter("replies_index_reloads_total", "Per-org search index reloads")
INDEX_LOAD_SECONDS = Histogram("replies_index_load_seconds", "Per-org search index load time")

_UNSET = object()


@dataclass
class OrgSnapshot:
    org_id: str
    revision: str | None
    collections: dict[str, Collection]
    replies_by_collection: dict[str, list[Searchable]]
    usage: dict[str, int] = field(default_factory=dict)
    usage_loaded_at: float = 0.0

    def visible_collections(self, viewer: Viewer) -> list[Collection]:
        return [c for c in self.collections.values() if c.readable_by(viewer)]

    def candidates(self, viewer: Viewer) -> list[Searchable]:
        out: list[Searchable] = []
        for collection in self.visible_collections(viewer):
            out.extend(self.replies_by_collection.get(collection.collection_id, ()))
        return out


class SearchIndex:
    def __init__(
        self, store: ReplyStore, *, max_orgs: int = 256, usage_refresh_seconds: float = 5.0
    ) -> None:
        self._store = store
        self._max_orgs = max_orgs
        self._usage_refresh = usage_refresh_seconds
        self._orgs: OrderedDict[str, OrgSnapshot] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._usage_tasks: dict[str, asyncio.Task[None]] = {}

    async def snapshot(self, org_id: str) -> OrgSnapshot:
        """The org's data, at least as fresh as the last write completed before this call."""
        revision = await self._store.get_revision(org_id)
        current = self._orgs.get(org_id)
        if current is None or current.revision != revision:
            lock = self._locks.setdefault(org_id, asyncio.Lock())
            async with lock:
                current = self._orgs.get(org_id)
                if current is None or current.revision != revision:
                    current = await self._load(org_id, revision, previous=current)
        self._orgs.move_to_end(org_id)
        self._maybe_refresh_usage(current)
        return current

    async def _load(
        self, org_id: str, revision: str | None, previous: OrgSnapshot | None
    ) -> OrgSnapshot:
        started = time.perf_counter()
        collections, replies = await self._store.load_org(org_id)
        by_collection: dict[str, list[Searchable]] = {}
        for reply in replies:
            by_collection.setdefault(reply.collection_id, []).append(Searchable.of(reply))
        snapshot = OrgSnapshot(
            org_id=org_id,
            revision=revision,
            collections={c.collection_id: c for c in collections},
            replies_by_collection=by_collection,
        )
        if previous is not None:
            snapshot.usage, snapshot.usage_loaded_at = previous.usage, previous.usage_loaded_at
        else:
            snapshot.usage = await self._store.usage_counts(org_id)
            snapshot.usage_loaded_at = time.monotonic()
        self._orgs[org_id] = snapshot
        while len(self._orgs) > self._max_orgs:
            self._orgs.popitem(last=False)
        INDEX_RELOADS.inc()
        INDEX_LOAD_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "search index loaded",
            extra={
                "org_id": org_id,
                "replies": len(replies),
                "seconds": time.perf_counter() - started,
            },
        )
        return snapshot

    def _maybe_refresh_usage(self, snapshot: OrgSnapshot) -> None:
        if time.monotonic() - snapshot.usage_loaded_at < self._usage_refresh:
            return
        task = self._usage_tasks.get(snapshot.org_id)
        if task is not None and not task.done():
            return
        self._usage_tasks[snapshot.org_id] = asyncio.create_task(self._refresh_usage(snapshot))

    async def _refresh_usage(self, snapshot: OrgSnapshot) -> None:
        try:
            usage = await self._store.usage_counts(snapshot.org_id)
        except Exception:  # a stale tie-breaker is fine; try again on a later search
            log.warning("usage refresh failed", exc_info=True)
            snapshot.usage_loaded_at = time.monotonic()
            return
        latest = self._orgs.get(snapshot.org_id, snapshot)
        for target in {id(snapshot): snapshot, id(latest): latest}.values():
            target.usage = usage
            target.usage_loaded_at = time.monotonic()

    async def close(self) -> None:
        for task in self._usage_tasks.values():
            task.cancel()
        self._usage_tasks.clear()


def reply_list(snapshot: OrgSnapshot, collection_id: str) -> list[SavedReply]:
    return [s.reply for s in snapshot.replies_by_collection.get(collection_id, ())]
