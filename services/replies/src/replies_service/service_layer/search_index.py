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
import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from replies_service.domain.model import Collection, SavedReply, Viewer
from replies_service.domain.search import CollectionEntries, Searchable
from replies_service.service_layer.ports import ReplyStore

log = logging.getLogger(__name__)

INDEX_RELOADS = Counter("replies_index_reloads_total", "Per-org search index reloads")
USAGE_SCANS = Counter("replies_usage_scans_total", "Full reads of an org's usage counters")
VISIBLE_CACHE_MAX = 4096  # distinct (agent, teams, channel) viewers cached per org snapshot
INDEX_LOAD_SECONDS = Histogram("replies_index_load_seconds", "Per-org search index load time")


@dataclass
class OrgSnapshot:
    org_id: str
    revision: str | None
    collections: dict[str, Collection]
    replies_by_collection: dict[str, list[Searchable]]
    entries: dict[str, CollectionEntries] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    usage_loaded_at: float = 0.0  # last check of the usage revision
    usage_revision: str | None = None  # the token read before ``usage`` was read
    usage_scanned_at: float = 0.0  # last full read of the counters
    # viewer → its visible collections' entries; the snapshot is immutable, so never stale
    _visible: dict[Viewer, tuple[CollectionEntries, ...]] = field(default_factory=dict)

    def visible_collections(self, viewer: Viewer) -> list[Collection]:
        return [c for c in self.collections.values() if c.readable_by(viewer)]

    def visible_entries(self, viewer: Viewer) -> tuple[CollectionEntries, ...]:
        cached = self._visible.get(viewer)
        if cached is None:
            cached = tuple(
                self.entries[c.collection_id]
                for c in self.visible_collections(viewer)
                if c.collection_id in self.entries
            )
            if len(self._visible) >= VISIBLE_CACHE_MAX:
                self._visible.clear()
            self._visible[viewer] = cached
        return cached

    def candidates(self, viewer: Viewer) -> list[Searchable]:
        out: list[Searchable] = []
        for collection in self.visible_collections(viewer):
            out.extend(self.replies_by_collection.get(collection.collection_id, ()))
        return out


class RevisionReader:
    """Coalesces concurrent revision reads of one org without ever returning a stale one.

    A caller arriving while a read is in flight cannot use it (it may have been sent before
    the caller's preceding write completed); it joins the *next* read, which starts as soon as
    the in-flight one returns. So at most two reads per org are outstanding whatever the
    concurrency, and every caller sees a revision read after it arrived.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[str | None]],
        *,
        max_age_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age_seconds
        self._clock = clock
        self._current: dict[str, asyncio.Future[str | None]] = {}
        self._pending: dict[str, asyncio.Future[str | None]] = {}
        self._recent: dict[str, tuple[float, str | None]] = {}  # org → (sent at, revision)
        self._written_at: dict[str, float] = {}

    def forget(self, org_id: str) -> None:
        """A write of this replica completed: reuse only reads sent after it."""
        self._written_at[org_id] = self._clock()

    async def read(self, org_id: str) -> str | None:
        if self._max_age > 0 and (recent := self._recent.get(org_id)) is not None:
            sent_at, revision = recent
            age = self._clock() - sent_at
            if age <= self._max_age and sent_at > self._written_at.get(org_id, float("-inf")):
                if age > self._max_age / 4 and org_id not in self._current:
                    # refresh ahead: under steady load searches never wait for the database
                    # unless a revision read takes longer than 3/4 of the max age
                    self._start(org_id).add_done_callback(_consume_error)
                return revision
        if org_id not in self._current:
            return await asyncio.shield(self._start(org_id))
        pending = self._pending.get(org_id)
        if pending is None:
            pending = self._pending[org_id] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(pending)

    def _start(self, org_id: str) -> asyncio.Future[str | None]:
        future = self._current[org_id] = asyncio.ensure_future(self._run(org_id))
        return future

    async def _run(self, org_id: str) -> str | None:
        sent_at = self._clock()
        try:
            revision = await self._fetch(org_id)
            self._recent[org_id] = (sent_at, revision)
            return revision
        finally:
            pending = self._pending.pop(org_id, None)
            if pending is None:
                del self._current[org_id]
            else:
                nxt = self._current[org_id] = asyncio.ensure_future(self._run(org_id))
                nxt.add_done_callback(lambda f: _copy_outcome(f, pending))


def _consume_error(future: asyncio.Future[str | None]) -> None:
    """A refresh-ahead read nobody awaits: a failure only means the next search reads itself."""
    if not future.cancelled() and future.exception() is not None:
        log.warning("revision refresh failed", exc_info=future.exception())


def _copy_outcome(source: asyncio.Future[str | None], target: asyncio.Future[str | None]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


class SearchIndex:
    def __init__(
        self,
        store: ReplyStore,
        *,
        max_orgs: int = 256,
        usage_refresh_seconds: float = 5.0,
        usage_full_refresh_seconds: float = 60.0,
        revision_max_age_seconds: float = 0.0,
        freeze_gc: bool = True,
    ) -> None:
        self._store = store
        self._freeze_gc = freeze_gc
        self._max_orgs = max_orgs
        self._usage_refresh = usage_refresh_seconds
        self._usage_full_refresh = usage_full_refresh_seconds
        self._orgs: OrderedDict[str, OrgSnapshot] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._usage_tasks: dict[str, asyncio.Task[None]] = {}
        self._revisions = RevisionReader(
            store.get_revision, max_age_seconds=revision_max_age_seconds
        )

    def note_write(self, org_id: str) -> None:
        """Called after a write of this replica (and its revision bump) completed."""
        self._revisions.forget(org_id)

    async def snapshot(self, org_id: str) -> OrgSnapshot:
        """The org's data, at least as fresh as the last write completed before this call."""
        revision = await self._revisions.read(org_id)
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
            entries={
                c.collection_id: CollectionEntries.of(
                    c.kind, by_collection.get(c.collection_id, ())
                )
                for c in collections
            },
        )
        if previous is not None:
            snapshot.usage, snapshot.usage_loaded_at = previous.usage, previous.usage_loaded_at
            snapshot.usage_revision = previous.usage_revision
            snapshot.usage_scanned_at = previous.usage_scanned_at
        else:
            snapshot.usage_revision = await self._store.get_usage_revision(org_id)
            snapshot.usage = await self._store.usage_counts(org_id)
            snapshot.usage_loaded_at = snapshot.usage_scanned_at = time.monotonic()
        self._orgs[org_id] = snapshot
        while len(self._orgs) > self._max_orgs:
            self._orgs.popitem(last=False)
        if self._freeze_gc:
            # the index is long-lived and acyclic: keep the cyclic GC from re-scanning its
            # ~10^5 objects in every full collection (a multi-ms pause on the event loop);
            # refcounting still frees a replaced snapshot
            gc.freeze()
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
        """Re-read the counters only when the org's usage revision moved (one ``_id`` read).

        The consumer bumps that token after every counted use, so an unchanged token means
        no counter changed since the last full read. A full read still happens at least
        every ``usage_full_refresh_seconds``, as a safety net (e.g. counters written by
        something that does not bump the token).
        """
        org_id = snapshot.org_id
        try:
            revision = await self._store.get_usage_revision(org_id)
            now = time.monotonic()
            unchanged = revision == snapshot.usage_revision
            if unchanged and now - snapshot.usage_scanned_at < self._usage_full_refresh:
                usage, scanned_at = snapshot.usage, snapshot.usage_scanned_at
            else:
                usage, scanned_at = await self._store.usage_counts(org_id), now
                USAGE_SCANS.inc()
        except Exception:  # a stale tie-breaker is fine; try again on a later search
            log.warning("usage refresh failed", exc_info=True)
            snapshot.usage_loaded_at = time.monotonic()
            return
        latest = self._orgs.get(org_id, snapshot)
        for target in {id(snapshot): snapshot, id(latest): latest}.values():
            if target.usage is not usage:  # a new mapping restarts the search memos
                target.usage = usage
            target.usage_revision = revision
            target.usage_scanned_at = scanned_at
            target.usage_loaded_at = time.monotonic()

    async def close(self) -> None:
        for task in self._usage_tasks.values():
            task.cancel()
        self._usage_tasks.clear()


def reply_list(snapshot: OrgSnapshot, collection_id: str) -> list[SavedReply]:
    return [s.reply for s in snapshot.replies_by_collection.get(collection_id, ())]
