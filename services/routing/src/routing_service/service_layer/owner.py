"""The conversation owner: the one writer of the conversations of the partitions it owns.

Consumes messages, conversations and routing-command events in batches. For every touched
conversation it re-folds everything known (its events, its assignees' presence timelines, the
org's setting history, the decisions already taken) and persists:
1. new journal entries (insert-only, unique per event: a redelivery is a no-op), while
2. new decisions are recorded (insert-only, deterministic ids: the "facts") and published
   (acks awaited); once both are done the decisions are marked published;
3. the read model (queue, assignee, audit trail) of the conversations that changed.
Offsets are committed by the caller after ``handle`` returned, so a crash anywhere in between
redelivers the batch, which re-derives the same decisions with the same ids.

Decisions are taken on event time and only once final (``domain.progress``): a fold that finds
a decision beyond the partition's progress notes when it is due; ``release_due`` (called by a
timer, and by every batch) folds those conversations again once progress has reached it.

Compaction and memory (README, "Snapshots, compaction, memory"): ``compact`` (a timer) folds
each conversation's events and facts stamped at or before its horizon
``H = progress - L - lag`` into a snapshot and deletes the folded journal entries. Only
conversations with something after their horizon, resident ones (NEW and assigned: a sweep must
find them) and a bounded cache of others stay in memory; the rest are loaded by exact ``_id``
(their snapshot) when an event, a sweep or a proposal needs them. An event stamped at or before
its conversation's horizon cannot be folded any more: it is refused (dead-lettered).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from inbox_contracts import CloudEvent
from inbox_contracts.events import (
    AgentSweepRequested,
    AssignmentProposed,
    PresenceProgressRelayed,
)
from inbox_contracts.topics import CONVERSATIONS, MESSAGES
from prometheus_client import Counter, Gauge

from routing_service.domain.audit import AuditRetention, archive_audit, archive_of
from routing_service.domain.key_filter import KeyFilter
from routing_service.domain.model import (
    ConversationEntry,
    ConversationLog,
    Decision,
    FoldResult,
    PresenceEntry,
    SettingsHistory,
    Snapshot,
    compact,
    fold,
)
from routing_service.domain.progress import PresenceProgress, earliest, stream_progress
from routing_service.domain.values import value
from routing_service.service_layer.auto_assign import AutoAssigner
from routing_service.service_layer.latency import DecisionClock, observe_step, timed
from routing_service.service_layer.ports import (
    AgentKey,
    ArchivedAuditRow,
    Compaction,
    ConversationKey,
    ConversationView,
    DecisionPublisher,
    DecisionRow,
    JournalRow,
    OwnerStore,
    SnapshotRow,
    ViewFingerprint,
    ViewSink,
)
from routing_service.service_layer.translate import CONVERSATION_EVENT_TYPES, conversation_entry
from routing_service.service_layer.views import ChunkSizer

T = TypeVar("T")
U = TypeVar("U")
log = logging.getLogger(__name__)
BEHIND_HORIZON = Counter(
    "routing_events_behind_horizon_total",
    "Conversation events refused because they are stamped at or before their conversation's "
    "compaction horizon (later than allowed lateness + compaction lag, or a duplicate of an "
    "event already compacted); dead-lettered with x-dlq-reason=refused",
)
CONVERSATION_EVENTS = Counter(
    "routing_owner_conversation_events_total",
    "Conversation events (messages and conversations topics) the owner took in, duplicates "
    "and refused ones included",
)
CONVERSATIONS_IN_MEMORY = Gauge(
    "routing_owner_conversations_in_memory", "Conversations the owner keeps in memory"
)

FoldInputs = tuple[dict[AgentKey, list[PresenceEntry]], dict[str, SettingsHistory]]
#: A settled fold whose views (the read model's, the dispatcher's) are built later.
Folded = tuple[ConversationKey, ConversationLog, FoldResult]
#: The wall time before which every record appended to (topic, partition) has been consumed
#: (None: not known yet) — ``domain.progress``.
CompleteAsOf = Callable[[str, int], Awaitable[datetime | None]]
#: The conversation inputs of a partition: each source topic and its repartition topic (records
#: a producer with another partitioner put elsewhere, forwarded by the kit), by source topic.
SOURCE_OF = {
    name: topic.name
    for topic in (MESSAGES, CONVERSATIONS)
    for name in (topic.name, topic.repartition)
}


@dataclass(frozen=True)
class Finals:
    """Progress at one instant: presence, and each conversation input (topic, partition)."""

    presence: datetime | None
    inputs: dict[tuple[str, int], datetime | None]
    #: ``until`` of the conversations whose streams come on the source topics, per partition
    #: (most of them: computed once per partition, not once per conversation).
    _direct: dict[int, datetime | None] = field(default_factory=dict, compare=False)

    def until(self, partition: int, via: dict[str, str]) -> datetime | None:
        """Up to when the decisions of a conversation on ``partition`` are final, given the
        input each of its streams arrives on (``via``: source topic -> topic; default the
        source topic itself)."""
        if not via and partition in self._direct:
            return self._direct[partition]
        streams = (
            self.inputs.get((via.get(source, source), partition))
            for source in (MESSAGES.name, CONVERSATIONS.name)
        )
        final = earliest([self.presence, *streams])
        if not via:
            self._direct[partition] = final
        return final


async def never_complete(topic: str, partition: int) -> datetime | None:
    return None


@value
class Delivery:
    """One consumed record: its topic, partition and decoded event."""

    topic: str
    partition: int
    event: CloudEvent[Any]


class BehindHorizon(ValueError):
    """The event is stamped at or before its conversation's compaction horizon."""


@dataclass
class BatchOutcome:
    decisions: list[Decision] = field(default_factory=list)
    views_written: int = 0
    duplicates: int = 0
    #: Deliveries refused (dead-lettered by the caller): events behind the horizon.
    refused: list[tuple[Delivery, Exception]] = field(default_factory=list)


@dataclass(frozen=True)
class Compacting:
    """How far behind progress the owner compacts, and how many conversations it keeps."""

    #: H = progress - allowed lateness - lag: events up to L + lag late are still folded.
    lag: timedelta = timedelta(minutes=15)
    #: Conversations kept in memory beyond those that must be (something after the
    #: horizon, resident, a decision due): the least recently used are evicted.
    max_conversations: int = 50_000
    #: Conversations compacted per run (each run writes in chunks of ``chunk``).
    per_run: int = 2_000
    chunk: int = 64
    #: Audit entries kept in snapshots and views, and how long archived ones are kept.
    audit: AuditRetention = field(default_factory=AuditRetention)
    #: With the consumer's lock, a chunk holds it for about this long (its size adapts,
    #: at most ``chunk``), then the run rests ``rest_factor`` x as long with it released.
    chunk_seconds: float = 0.025
    rest_factor: float = 1.0
    #: A background step (a compaction step, a read-model chunk) lets a decision due within
    #: about twice its expected time go first, waiting at most this long
    #: (``ConversationOwner.acquire_yielding``).
    yield_seconds: float = 1.0


@dataclass(frozen=True)
class EventTime:
    """How the owner tells event time: the allowed lateness, and how complete its inputs are."""

    lateness: timedelta = timedelta(milliseconds=500)
    complete_as_of: CompleteAsOf = never_complete


@dataclass
class Parked:
    """A revoked partition's state, kept in case the next rebalance hands it back to this
    instance (aiokafka's rebalances are eager: a survivor gives up all its partitions and
    usually gets its own back). Used only if the partition's claim is still ours, i.e. no
    other instance took it over meanwhile."""

    claim: str
    logs: dict[ConversationKey, ConversationLog]
    written: dict[ConversationKey, ViewFingerprint]
    due: dict[ConversationKey, datetime]
    via: dict[ConversationKey, dict[str, str]]
    heads: dict[tuple[str, int], datetime]
    filter: KeyFilter | None
    live: dict[ConversationKey, int]


#: Takes a lock for a background step expected to hold it about ``expected`` seconds.
Acquire = Callable[[asyncio.Lock, float], Awaitable[None]]


async def plain_acquire(lock: asyncio.Lock, expected: float) -> None:
    await lock.acquire()


class _Stepper:
    """Steps of a background run under the consumer's lock, one at a time: each takes the
    lock (through ``acquire``, told how long the previous step held it), and the next waits
    ``rest`` x as long as this one held it (lock released)."""

    def __init__(
        self, lock: asyncio.Lock | None, rest: float, acquire: Acquire = plain_acquire
    ) -> None:
        self._lock = lock
        self._rest = rest
        self._acquire = acquire
        self._held = 0.0

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
            return
        await self._acquire(self._lock, self._held)
        try:
            started = time.perf_counter()
            yield
            self._held = time.perf_counter() - started
        finally:
            self._lock.release()
        await asyncio.sleep(self._held * self._rest)


class ConversationOwner:
    def __init__(
        self,
        store: OwnerStore,
        publisher: DecisionPublisher,
        views: ViewSink,
        event_time: EventTime | None = None,
        assigner: AutoAssigner | None = None,
        compacting: Compacting | None = None,
        input_waiting: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = store
        self._publisher = publisher
        #: Are records of the owner's inputs fetched and not handed to ``handle`` yet?
        #: (``acquire_yielding``: a background step lets that batch go first.)
        self._input_waiting = input_waiting
        #: Set when a batch was handled (``acquire_yielding`` waits on it).
        self._handled = asyncio.Event()
        self._views = views
        #: Automatic assignment's hook (PRODUCT.md §4); None: not wired.
        self._assigner = assigner
        self._time = event_time or EventTime()
        self.compacting = compacting or Compacting()
        #: In least-recently-used order (``_touch`` moves a conversation to the end).
        self.logs: OrderedDict[ConversationKey, ConversationLog] = OrderedDict()
        self._by_agent: dict[AgentKey, set[ConversationKey]] = defaultdict(set)
        self._written: dict[ConversationKey, ViewFingerprint] = {}
        self.owned: set[int] = set()
        #: Latest occurred_at consumed per conversation input (topic, partition).
        self._heads: dict[tuple[str, int], datetime] = {}
        self.presence = PresenceProgress()
        #: Set when an input progressed while a decision is due: ``release_due`` waits on it
        #: (``wait_progress``) instead of only a timer.
        self._progressed = asyncio.Event()
        #: Set whenever a fold took due decisions: background steps wait on it while a
        #: decision is about to become final (``acquire_yielding``).
        self._due_taken = asyncio.Event()
        #: Chunks of decisions are recorded one after the other, each published meanwhile.
        self._recording = asyncio.Lock()
        #: Per conversation: the topic each of its streams arrives on, if not the source topic.
        self._via: dict[ConversationKey, dict[str, str]] = {}
        #: Conversations with a decision beyond progress, and when it is due (event time).
        self.due: dict[ConversationKey, datetime] = {}
        #: Known in memory but not stored yet. After a transient failure the consumer retries
        #: the batch in this process: its events are duplicates by then and its decisions
        #: facts already, so what is pending here is written by the retry (or the next
        #: batch), always before the offsets are committed.
        self._unjournaled: dict[tuple[str, str, str], JournalRow] = {}
        #: Rows of ``_unjournaled`` an insert in flight is writing (not sent again meanwhile).
        self._journaling: set[tuple[str, str, str]] = set()
        self._unrecorded: dict[str, DecisionRow] = {}
        self._unpublished: dict[str, DecisionRow] = {}
        #: Published, not marked published yet (a retry marks them, it does not publish again).
        self._unmarked: dict[str, DecisionRow] = {}
        #: The marks of published decisions being stored, off the batch's critical path
        #: (``_mark_in_background``): at most one insert in flight, awaited before anything
        #: more is published (README, "Idempotency, crash safety").
        self._marking: asyncio.Future[None] | None = None
        #: Left behind by a crash inside a compaction step: written by the next one.
        self._stale_journal: set[tuple[str, str, str]] = set()
        self._stale_decisions: dict[str, DecisionRow] = {}
        self._stale_resident: dict[ConversationKey, SnapshotRow] = {}
        #: Per owned partition: which conversations may have a snapshot (no read otherwise).
        self._filters: dict[int, KeyFilter] = {}
        self._stale_not_resident: set[ConversationKey] = set()
        #: Seconds per phase of the latest take-over (scan, snapshots, index, fold_inputs,
        #: refold), for the benchmark and the log.
        self.last_takeover: dict[str, float] = {}
        #: Conversations with a take-over copy of their snapshot stored (``live_snapshots``),
        #: copies to write (loaded on demand: a take-over would point-read them otherwise),
        #: and copies no longer needed (found at take-over).
        self._live: dict[ConversationKey, int] = {}
        self._copies_due: dict[ConversationKey, int] = {}
        self._stale_live: dict[ConversationKey, int] = {}
        #: Per owned partition, the claim this instance wrote when it took it over.
        self._claims: dict[int, str] = {}
        self._parked: dict[int, Parked] = {}
        self._compaction_chunks = ChunkSizer(
            target=self.compacting.chunk_seconds,
            initial=min(8, self.compacting.chunk),
            maximum=self.compacting.chunk,
        )
        self._instance = uuid.uuid4().hex
        self._takeovers = 0
        #: Where each decision's latency goes (``latency``): its stages, observed on publish.
        self._clock = DecisionClock()
        #: Wall time the current batch (or release of due decisions) started.
        self._batch_started = time.time()

    # -- partition ownership ----------------------------------------------------------------

    async def assign(self, partitions: Iterable[int]) -> BatchOutcome:
        """Take over partitions: load their journal and facts, then re-fold all of them.

        The re-fold publishes any final decision a crash left unpublished, notes the pending
        ones, and repairs stale views.
        """
        asked = sorted(set(partitions) - self.owned)
        if not asked:
            return BatchOutcome()
        started = time.perf_counter()
        kept = await self._unpark(asked)
        parts = [p for p in asked if p not in kept]
        phases: dict[str, float] = {}
        self.last_takeover = phases
        mark = started

        def lap(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            phases[f"{name}_s"] = round(now - mark, 3)
            mark = now

        self.owned.update(parts)
        if parts:
            # before anything is read: an instance holding a parked copy of one of these
            # partitions sees that it is no longer current
            self._takeovers += 1
            claim = f"{self._instance}:{self._takeovers}"
            await self._store.claim_partitions(parts, claim)
            self._claims.update(dict.fromkeys(parts, claim))
        # the journal holds only what is after the horizons (the rest is compacted), the
        # resident set only NEW+assigned conversations: both stay small whatever the history
        journal, resident, decisions, filters, live = (
            await asyncio.gather(
                self._store.load_journal(parts),
                self._store.load_resident(parts),
                self._store.load_decisions(parts),
                self._store.load_snapshot_filters(parts),
                self._store.load_live_snapshots(parts),
            )
            if parts
            else ([], [], [], {}, [])
        )
        lap("scan")
        for p in parts:
            self._filters[p] = KeyFilter(filters.get(p))
        wanted: dict[ConversationKey, int] = {}
        for row in journal:
            wanted.setdefault((row.org_id, row.conversation_id), row.partition)
        for key, partition in resident:
            wanted.setdefault(key, partition)
        for drow in decisions:
            if not drow.compacted or not drow.published:
                wanted.setdefault(
                    (drow.decision.org_id, drow.decision.conversation_id), drow.partition
                )
        # their snapshots: the take-over copies (one query by partition), then exact-_id
        # reads of those without a copy that may have a snapshot (the key filter); no scan
        # of the snapshots or the read model (their size is all history). Their views are
        # written again by the re-fold below (in the background), which repairs any view
        # write a crash lost.
        copies = {r.key: r for r in live}
        self._live.update((k, r.partition) for k, r in copies.items())
        self._stale_live.update((k, r.partition) for k, r in copies.items() if k not in wanted)
        unread = {
            k: p
            for k, p in wanted.items()
            if k not in copies and f"{k[0]}|{k[1]}" in self._filters[p]
        }
        snapshots = {k: r for k, r in copies.items() if k in wanted}
        snapshots.update(await self._store.load_snapshots(unread) if unread else {})
        phases["copies"] = len(snapshots) - len(unread)
        phases["point_reads"] = len(unread)
        lap("snapshots")
        for key, partition in wanted.items():
            self._adopt(key, partition, snapshots.get(key))
            if key in snapshots:
                self._written.setdefault(key, ())  # stored: its view exists (replace it)
        self._repair_resident(dict(resident), snapshots)
        for row in journal:
            key = (row.org_id, row.conversation_id)
            if self.logs[key].behind_horizon(row.entry.occurred_at):
                self._stale_journal.add((*key, row.entry.event_id))  # compacted before a crash
                continue
            self._index(row.org_id, row.conversation_id, row.partition, row.entry)
            self._note_route(key, row.topic)
        unpublished: list[DecisionRow] = []
        for drow in decisions:
            d = drow.decision
            if not drow.published:
                unpublished.append(drow)
            if drow.compacted:
                continue
            lg = self.logs[(d.org_id, d.conversation_id)]
            if lg.behind_horizon(d.occurred_at):
                self._stale_decisions[d.decision_id] = drow
                continue
            lg.add_fact(d)
            self._by_agent[(d.org_id, d.previous_assignee_id)].add((d.org_id, d.conversation_id))
        lap("index")
        loaded = time.perf_counter()
        if unpublished:
            await self._publisher.publish_decisions([r.decision for r in unpublished])
            await self._store.mark_published(unpublished)
        keys = [k for k, lg in self.logs.items() if lg.partition in parts or lg.partition in kept]
        phases["kept_partitions"] = len(kept)
        outcome = BatchOutcome()
        # the timelines and settings of all these conversations, read once (not per chunk:
        # at 50,000 conversations that was 100 rounds of point reads)
        inputs = await self._fold_inputs(keys)
        finals = await self._final_until()
        lap("fold_inputs")
        self._batch_started = time.time()
        for i in range(0, len(keys), 500):
            # in chunks, yielding, so the consumer's heartbeats go on during a big take-over
            part = await self._refold(keys[i : i + 500], inputs, finals)
            outcome.decisions += part.decisions
            outcome.views_written += part.views_written
            await asyncio.sleep(0)
        lap("refold")
        log.info(
            "partitions assigned",
            extra={
                "seconds_loading": round(loaded - started, 2),
                "seconds_refold": round(time.perf_counter() - loaded, 2),
                "partitions": parts,
                "conversations": len(keys),
                "republished": len(unpublished),
                "decisions": len(outcome.decisions),
                "phases": phases,
            },
        )
        return outcome

    async def revoke(self, partitions: Iterable[int]) -> None:
        # the marks of what was published land first (bounded): the next owner then has
        # nothing to publish again, and the partition can be parked
        await self.settle_marks(MARKS_ON_REVOKE_SECONDS)
        parts = set(partitions)
        self._park(parts)
        await self._views.drop(parts)
        if self._assigner is not None:
            self._assigner.forget(parts)
        self.owned -= parts
        for p in parts:
            self._filters.pop(p, None)
        gone = [k for k, lg in self.logs.items() if lg.partition in parts]
        self._clock.forget(gone)
        for k in gone:
            del self.logs[k]
            self._written.pop(k, None)
            self.due.pop(k, None)
            self._via.pop(k, None)
        for jk in [jk for jk in self._stale_journal if (jk[0], jk[1]) in set(gone)]:
            self._stale_journal.discard(jk)
        for did in [d for d, r in self._stale_decisions.items() if r.partition in parts]:
            del self._stale_decisions[did]
        for rk in [k for k, r in self._stale_resident.items() if r.partition in parts]:
            del self._stale_resident[rk]
        self._stale_not_resident.difference_update(gone)
        for copies in (self._live, self._copies_due, self._stale_live):
            for k in [k for k, p in copies.items() if p in parts]:
                del copies[k]
        CONVERSATIONS_IN_MEMORY.set(len(self.logs))
        for head in [h for h in self._heads if h[1] in parts]:
            del self._heads[head]
        # the next owner re-derives these from the redelivered (uncommitted) records
        for jk in [k for k, row in self._unjournaled.items() if row.partition in parts]:
            del self._unjournaled[jk]
        for pending in (self._unrecorded, self._unpublished, self._unmarked):
            for dk in [k for k, drow in pending.items() if drow.partition in parts]:
                del pending[dk]
        for agent, keys in list(self._by_agent.items()):
            keys.difference_update(gone)
            if not keys:
                del self._by_agent[agent]

    def _park(self, parts: set[int]) -> None:
        """Keep the state of partitions being revoked that has nothing unwritten (what a
        crash-free handback needs); the rest is dropped as before."""
        self._parked = {}
        for p in parts:
            claim = self._claims.pop(p, None)
            if claim is None or self._unwritten_in(p):
                continue
            logs = {k: lg for k, lg in self.logs.items() if lg.partition == p}
            self._parked[p] = Parked(
                claim,
                logs,
                # a view still pending is dropped below: written again after the handback
                {k: f for k in logs if (f := self._written.get(k)) and not self._views.pending(k)},
                {k: self.due[k] for k in logs if k in self.due},
                {k: self._via[k] for k in logs if k in self._via},
                {h: at for h, at in self._heads.items() if h[1] == p},
                self._filters.get(p),
                {k: q for k, q in self._live.items() if q == p},
            )

    def _unwritten_in(self, p: int) -> bool:
        return (
            any(r.partition == p for r in self._unjournaled.values())
            or any(r.partition == p for r in self._unrecorded.values())
            or any(r.partition == p for r in self._unpublished.values())
            or any(r.partition == p for r in self._unmarked.values())
            or any(r.partition == p for r in self._stale_decisions.values())
            or any(r.partition == p for r in self._stale_resident.values())
            or any(
                self.logs.get(jk[:2], None) is not None and self.logs[jk[:2]].partition == p
                for jk in self._stale_journal
            )
            or any(q == p for q in (*self._copies_due.values(), *self._stale_live.values()))
            or any(
                self.logs.get(k) is not None and self.logs[k].partition == p
                for k in self._stale_not_resident
            )
        )

    async def _unpark(self, parts: Sequence[int]) -> set[int]:
        """Restore the parked partitions among ``parts`` whose claim is still ours."""
        parked, self._parked = self._parked, {}
        candidates = [p for p in parts if p in parked]
        if not candidates:
            return set()
        claims = await self._store.partition_claims(candidates)
        kept = {p for p in candidates if claims.get(p) == parked[p].claim}
        for p in kept:
            bundle = parked[p]
            self.owned.add(p)
            self._claims[p] = bundle.claim
            for key, lg in bundle.logs.items():
                self.logs[key] = lg
                for agent in lg.agents():
                    self._by_agent[(lg.org_id, agent)].add(key)
            self._written.update(bundle.written)
            self.due.update(bundle.due)
            self._via.update(bundle.via)
            self._heads.update(bundle.heads)
            if bundle.filter is not None:
                self._filters[p] = bundle.filter
            self._live.update(bundle.live)
        CONVERSATIONS_IN_MEMORY.set(len(self.logs))
        return kept

    # -- handling -----------------------------------------------------------------------------

    async def handle(self, deliveries: Sequence[Delivery]) -> BatchOutcome:
        """Take a batch in, then fold what it touched and whatever became due."""
        self._batch_started = time.time()
        touched: dict[ConversationKey, None] = {}
        proposals: list[CloudEvent[AssignmentProposed]] = []
        refused: list[tuple[Delivery, Exception]] = []
        duplicates = 0
        taken_in = 0
        # conversations not in memory: their snapshot, by exact _id (proposals' ones are folded
        # in this batch, so the review sees their current dispatch view)
        touched.update(dict.fromkeys(await self._load_missing(deliveries)))
        for delivery in deliveries:
            data = delivery.event.data
            if isinstance(data, AssignmentProposed):
                proposals.append(delivery.event)
            elif isinstance(data, PresenceProgressRelayed):
                marks = {m.partition: m.progress for m in data.marks}
                self.presence.observe(data.presence_partitions, marks)
            elif isinstance(data, AgentSweepRequested):
                for key in self._by_agent.get((data.org_id, data.agent_id), ()):
                    swept = self.logs.get(key)  # evicted ones are not NEW+assigned
                    if swept is not None and swept.partition == data.partition:
                        touched[key] = None
            elif (entry := conversation_entry(delivery.event)) is not None:
                taken_in += 1
                # the envelope's subject is the conversation id (checked when decoded): one
                # attribute read, not ``data.subject``'s lookup by field name, per use
                subject = delivery.event.subject
                key = (data.org_id, subject)
                self._advance_head(delivery.topic, delivery.partition, entry.occurred_at)
                lg = self.logs[key]
                if lg.behind_horizon(entry.occurred_at):
                    BEHIND_HORIZON.inc()
                    horizon = lg.snapshot.horizon  # type: ignore[union-attr]
                    refused.append(
                        (
                            delivery,
                            BehindHorizon(
                                f"occurred_at {entry.occurred_at.isoformat()} is at or before "
                                f"the conversation's compaction horizon {horizon.isoformat()}"
                            ),
                        )
                    )
                    continue
                self._note_route(key, delivery.topic)
                if self._index(data.org_id, subject, delivery.partition, entry):
                    self._unjournaled[(*key, entry.event_id)] = JournalRow(
                        data.org_id, subject, delivery.partition, entry, delivery.topic
                    )
                else:
                    duplicates += 1
                # duplicates are folded again too: after a crash the redelivered event is the
                # trigger to finish what the crashed attempt started.
                touched[key] = None
        CONVERSATION_EVENTS.inc(taken_in)  # once a batch: a counter's lock costs ~1 us a call
        finals = await self._final_until()
        keys = [*touched, *(k for k in self._due_now(finals) if k not in touched)]
        # the journal is written while the fold's inputs are read, the batch is folded (the
        # fold uses the log in memory) and its decisions are recorded and published
        # the proposals' agents are read with the same round trip (one read phase per batch)
        extra = self._proposal_agents(proposals) if self._assigner is not None else set()
        journal = asyncio.ensure_future(self._write_journal())
        later: list[Folded] = []
        try:
            with timed("inputs"):
                inputs = await self._fold_inputs(keys, extra)
            views = self._fold_all(keys, inputs, finals, later=later)
            if proposals and self._assigner is not None:
                # reviewed against the state after this batch's other events (the assigner's
                # counts included); one write-out for both (one decision record, one publish
                # round trip, one flush of the assigner)
                self._settle(later, finals, views)
                later.clear()
                await self._apply_proposals(proposals, finals, inputs, views)
        except BaseException:
            await asyncio.gather(journal, return_exceptions=True)
            raise
        outcome = await self._persist(views, journal, later=later, finals=finals)
        self._handled.set()
        outcome.duplicates = duplicates
        outcome.refused = refused
        self._evict()
        return outcome

    def _proposal_agents(
        self, proposals: Sequence[CloudEvent[AssignmentProposed]]
    ) -> set[AgentKey]:
        """Every agent reviewing and re-folding these proposals needs: the proposed one and
        the conversation's earlier assignees."""
        out: set[AgentKey] = set()
        for event in proposals:
            p = event.data
            out.add((p.org_id, p.agent_id))
            lg = self.logs.get((p.org_id, p.conversation_id))
            if lg is not None:
                out.update((lg.org_id, a) for a in lg.agents())
        return out

    async def _apply_proposals(
        self,
        proposals: Sequence[CloudEvent[AssignmentProposed]],
        finals: Finals,
        inputs: FoldInputs,
        views: dict[ConversationKey, ConversationView],
    ) -> None:
        """Review, journal the accepted ones and fold their conversations into ``views``
        (written out with the batch's, ``_persist``). ``inputs`` hold the timelines of
        ``_proposal_agents(proposals)`` (read with the batch's): no second read phase."""
        assert self._assigner is not None
        accepted, again = await self._assigner.review(proposals, self.logs, known=inputs[0])
        keys: dict[ConversationKey, None] = dict.fromkeys(again)
        for lg, entry in accepted:
            key = (lg.org_id, lg.conversation_id)
            if self._index(lg.org_id, lg.conversation_id, lg.partition, entry):
                self._unjournaled[(*key, entry.event_id)] = JournalRow(
                    lg.org_id, lg.conversation_id, lg.partition, entry
                )
            keys[key] = None
        # journaled before anything derived from them is recorded or published
        await self._write_journal()
        self._fold_all(list(keys), inputs, finals, views)

    def observe_presence(self, presence_partitions: int, marks: dict[int, datetime]) -> None:
        """Presence progress known in this process before its relay arrives (the presence
        consumer of the same instance noted it after recording the transitions it covers, as
        for a relayed mark): wakes ``wait_progress`` if it moved while a decision is due."""
        before = self.presence.value()
        self.presence.observe(presence_partitions, marks)
        after = self.presence.value()
        if self.due and after is not None and (before is None or after > before):
            self._progressed.set()

    async def wait_progress(self, timeout: float) -> None:
        """Until presence progressed while a decision is due, or ``timeout`` seconds (the
        conversation inputs' completeness moves with fetch responses, seen on the next call)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progressed.wait(), timeout)
        self._progressed.clear()

    async def release_due(self) -> BatchOutcome:
        """Take the pending decisions whose time progress has reached (timer-driven)."""
        self._batch_started = time.time()
        finals = await self._final_until()
        keys = self._due_now(finals)
        if not keys and not self._unrecorded and not self._unpublished:
            self._mark_in_background()  # what a failed mark left, if none is in flight
            return BatchOutcome()
        return await self._refold(keys, await self._fold_inputs(keys), finals)

    # -- event time -----------------------------------------------------------------------------

    def _advance_head(self, topic: str, partition: int, at: datetime) -> None:
        if SOURCE_OF.get(topic) != topic:
            # a repartition topic interleaves records forwarded from several partitions: its
            # order is no event-time order, so only "caught up" counts for it
            return
        head = self._heads.get((topic, partition))
        if head is None or head < at:
            self._heads[(topic, partition)] = at

    def _note_route(self, key: ConversationKey, topic: str) -> None:
        source = SOURCE_OF.get(topic)
        if source is None or topic == source:
            return
        self._via.setdefault(key, {})[source] = topic

    async def _final_until(self) -> Finals:
        """Progress of every input of the owned partitions, now."""
        inputs: dict[tuple[str, int], datetime | None] = {}
        for p in self.owned:
            for topic in SOURCE_OF:
                inputs[(topic, p)] = stream_progress(
                    self._heads.get((topic, p)),
                    complete_as_of=await self._time.complete_as_of(topic, p),
                    lateness=self._time.lateness,
                )
        return Finals(self.presence.value(), inputs)

    def _final_for(self, key: ConversationKey, finals: Finals) -> datetime | None:
        return finals.until(self.logs[key].partition, self._via.get(key, {}))

    def _due_now(self, finals: Finals) -> list[ConversationKey]:
        out = []
        for key, at in self.due.items():
            final = self._final_for(key, finals)
            if final is not None and at <= final:
                out.append(key)
        return out

    # -- folding --------------------------------------------------------------------------------

    async def _fold_inputs(
        self, keys: Sequence[ConversationKey], extra: set[AgentKey] | None = None
    ) -> FoldInputs:
        """Presence timelines of every agent these conversations involve (and ``extra``
        agents), and the settings of their orgs."""
        agent_keys: set[AgentKey] = set(extra or ())
        orgs: set[str] = {org for org, _ in agent_keys}
        for key in keys:
            lg = self.logs[key]
            agents = lg.agents()
            if agents:
                orgs.add(lg.org_id)
                agent_keys.update((lg.org_id, a) for a in agents)
        if not agent_keys:
            return {}, {}
        timelines, settings = await asyncio.gather(
            self._store.timelines(agent_keys), self._store.settings(orgs)
        )
        return timelines, settings

    async def _write_journal(self) -> None:
        """Insert what is not journaled yet and not being inserted already: the batch's
        insert is often still in flight when its accepted proposals are journaled, and sending
        its rows again cost a duplicate-key insert each (on the client and the database)."""
        journal = {k: r for k, r in self._unjournaled.items() if k not in self._journaling}
        if not journal:
            return
        self._journaling.update(journal)
        try:
            with timed("journal"):
                await self._store.append_journal(list(journal.values()))
        finally:
            self._journaling.difference_update(journal)
        for jk in journal:
            self._unjournaled.pop(jk, None)

    async def _refold(
        self,
        keys: Sequence[ConversationKey],
        inputs: FoldInputs,
        finals: Finals,
        journal: asyncio.Future[None] | None = None,
    ) -> BatchOutcome:
        """Fold ``keys`` again, then record, publish and mark their new decisions, submit the
        changed views and tell the dispatcher.

        Many conversations at once (a sweep's 1,000 R1): folded in slices, and each slice's
        decisions recorded and published while the next slice is folded (the store and the
        broker work meanwhile); a conversation's decisions are all in its slice. Not with
        decisions left by a failed attempt: those go first (``_record_and_publish``)."""
        views: dict[ConversationKey, ConversationView] = {}
        later: list[Folded] = []
        if len(keys) <= FIRST_SLICE or self._unrecorded or self._unpublished:
            self._fold_all(keys, inputs, finals, views, later)
            return await self._persist(views, later=later, finals=finals)
        await self._marks_landed()
        sent: set[str] = set()
        sends: list[asyncio.Future[list[DecisionRow]]] = []
        published: list[DecisionRow] = []
        try:
            # a small first slice: its insert starts after a short fold; the rest in slices
            # folded while the previous one is stored and published
            bounds = [0, *range(FIRST_SLICE, len(keys), FOLD_SLICE), len(keys)]
            for start, end in itertools.pairwise(bounds):
                self._fold_all(keys[start:end], inputs, finals, views, later)
                fresh = [r for did, r in self._unrecorded.items() if did not in sent]
                if fresh:
                    sent.update(r.decision.decision_id for r in fresh)
                    sends.append(asyncio.ensure_future(self._record_then_publish(fresh)))
                    await asyncio.sleep(0)  # its insert is sent before the next slice folds
        finally:
            published = await _all_sent(sends)
        # the read model's and the dispatcher's views once the decisions are published: neither
        # is needed before, and their CPU would hold up the replies of the inserts in flight.
        # In slices, yielding: the process's other consumers (and the decisions' readers, in a
        # benchmark) go on meanwhile
        for i in range(0, len(later), FIRST_SLICE):
            self._settle(later[i : i + FIRST_SLICE], finals, views)
            await asyncio.sleep(0)
        outcome = await self._persist(views)
        outcome.decisions[:0] = [r.decision for r in published]
        return outcome

    def _fold_all(
        self,
        keys: Sequence[ConversationKey],
        inputs: FoldInputs,
        finals: Finals,
        views: dict[ConversationKey, ConversationView] | None = None,
        later: list[Folded] | None = None,
    ) -> dict[ConversationKey, ConversationView]:
        """Fold each conversation (in memory); returns ``views`` (or a new map) with the
        views that changed since last written, for ``_persist`` (which records and publishes
        what the folds decided). A conversation folded again in the same batch keeps only
        its latest view. With ``later``, what the dispatcher and the read model learn of the
        settled folds is left there, for ``_settle`` once the decisions are on their way."""
        timelines, settings = inputs
        no_settings = SettingsHistory()
        views = {} if views is None else views
        started = self._batch_started
        fold_started = time.perf_counter()
        for key in keys:
            lg = self.logs[key]
            self._touch(key)
            result = fold(
                lg.org_id,
                lg.conversation_id,
                lg.entries.values(),
                timelines={a: timelines.get((lg.org_id, a), []) for a in lg.agents()},
                settings=settings.get(lg.org_id, no_settings),
                facts=lg.facts.values(),
                final_until=self._final_for(key, finals),
                snapshot=lg.snapshot,
                resume=lg.point,
            )
            lg.point = result.point
            for d in result.new_decisions:
                lg.add_fact(d)  # after the horizon: the fold took it there
                self._unrecorded[d.decision_id] = DecisionRow(lg.partition, d)
                self._clock.taken(key, d.decision_id, d.occurred_at, started)
            if result.pending_at is not None:
                self._clock.pending(key, started)
                self.due[key] = result.pending_at
                # its state changes once the decision is final (an R2 one presence mark
                # later, an R1 about L later): the read model and the dispatcher learn the
                # state then, not the one in between (a view and a dispatch input less)
                views.pop(key, None)
                continue
            if self.due.pop(key, None) is not None:
                self._due_taken.set()
                self._clock.settled(key)
            if later is not None:
                later.append((key, lg, result))
                views.pop(key, None)  # a pending view of an earlier fold: replaced then
            else:
                self._settle_one(key, lg, result, finals, views)
        observe_step("fold", time.perf_counter() - fold_started)
        return views

    def _settle(
        self,
        later: list[Folded],
        finals: Finals,
        views: dict[ConversationKey, ConversationView],
    ) -> None:
        """What the dispatcher and the read model learn of folds left in ``later`` (in fold
        order: a conversation folded twice ends with its latest view)."""
        for key, lg, result in later:
            if key not in self.due:  # else folded again since, and pending: its view waits
                self._settle_one(key, lg, result, finals, views)

    def _settle_one(
        self,
        key: ConversationKey,
        lg: ConversationLog,
        result: FoldResult,
        finals: Finals,
        views: dict[ConversationKey, ConversationView],
    ) -> None:
        if self._assigner is not None:
            self._assigner.observe(lg, result, finals.presence)
        view = ConversationView(lg.partition, result.state, result.audit, archive_of(lg.snapshot))
        if result.state.exists and self._written.get(key) != view.fingerprint:
            views[key] = view
        else:
            views.pop(key, None)

    async def _persist(
        self,
        changed: dict[ConversationKey, ConversationView],
        journal: asyncio.Future[None] | None = None,
        *,
        later: list[Folded] | None = None,
        finals: Finals | None = None,
    ) -> BatchOutcome:
        """Record and publish the decisions the folds took, while ``journal`` (the batch's
        journal insert) goes on (a crash in between redelivers the batch: the journal gets
        its events, the recorded decisions are facts); their marks are stored in the
        background, while the next batch is handled (``_mark_in_background``). Then submit
        the changed views and tell the dispatcher. ``later`` (folds whose views are not built
        yet, ``_fold_all``): built while the decisions are recorded (``finals``: the folds')."""
        outcome = BatchOutcome()
        # nothing of this batch reaches a topic before the previous batch's marks are stored:
        # a take-over publishes again only decisions of the last batch before a crash
        await self._marks_landed()
        deciding = bool(self._unrecorded or self._unpublished)
        recording = asyncio.ensure_future(self._record_and_publish(journal))
        if later:
            assert finals is not None
            try:
                # the decisions' insert is sent first; the views are built while it runs
                await _sent()
                self._settle(later, finals, changed)
            except BaseException:
                await asyncio.gather(recording, return_exceptions=True)
                raise
        views = list(changed.values())
        if deciding and self._assigner is not None and not self._assigner.assigning:
            # One round trip for the decisions and the dispatcher's inputs. Their order does
            # not matter: the dispatcher's answer (a proposal) is handled by a later batch,
            # which starts only once this one's decisions are acknowledged (a failed publish
            # retries this batch first; a take-over republishes unpublished decisions before
            # it handles anything). Not with ConversationAutoAssigned pending: they share
            # inbox.routing.v1 (and the partition) with the decisions and must follow them.
            published, _ = await _both(recording, self._flush_assigner(after=journal))
        else:
            published = await recording
            # the dispatcher sees a sign-out before the conversations its R1 frees (routing's
            # presence consumer forwards it before it publishes the sweeps)
            await self._flush_assigner()
        self._mark_in_background()
        outcome.decisions = [r.decision for r in published]
        if views:
            new_keys = {v.key for v in views if v.key not in self._written}
            self._views.submit(views, new_keys)
            for v in views:
                self._written[v.key] = v.fingerprint
            outcome.views_written = len(views)
        self._clock.flush()
        return outcome

    async def _record_and_publish(
        self, journal: asyncio.Future[None] | None = None
    ) -> list[DecisionRow]:
        """Record, publish (acks awaited): every decision not done yet, while ``journal`` goes
        on (awaited too). Returns the decisions this call published (a failed attempt's
        unpublished ones included); they are marked published by ``_mark_in_background``."""
        stored = [journal] if journal is not None else []
        rows = list(self._unpublished.values())
        if rows:  # left by a failed attempt: first, so a conversation's decisions keep order
            try:
                with timed("publish"):
                    await self._publisher.publish_decisions([r.decision for r in rows])
            except BaseException:
                await asyncio.gather(*stored, return_exceptions=True)
                raise
            self._published(rows)
        chunks = _by_conversation_chunks(list(self._unrecorded.values()))
        sent = await _all_sent(
            [*(asyncio.ensure_future(self._record_then_publish(c)) for c in chunks), *stored]
        )
        return [*rows, *sent]

    def _published(self, rows: Sequence[DecisionRow]) -> None:
        self._clock.published(r.decision.decision_id for r in rows)
        for r in rows:
            self._unpublished.pop(r.decision.decision_id, None)
            self._unmarked[r.decision.decision_id] = r

    async def _record_then_publish(self, rows: list[DecisionRow]) -> list[DecisionRow]:
        async with self._recording:  # one insert at a time (concurrent ones were slower)
            with timed("record"):
                await self._store.record_decisions(rows)
        for r in rows:
            self._unpublished[r.decision.decision_id] = r
            self._unrecorded.pop(r.decision.decision_id, None)
        with timed("publish"):
            await self._publisher.publish_decisions([r.decision for r in rows])
        self._published(rows)
        return rows

    async def _mark_published(self, rows: Sequence[DecisionRow]) -> None:
        if rows:
            await self._store.mark_published(rows)
            for r in rows:
                self._unmarked.pop(r.decision.decision_id, None)

    def _mark_in_background(self) -> None:
        """Store the marks of the published decisions without holding up the batch: its
        offsets may be committed before they land. Safe because a decision is recorded before
        it is published, and a take-over publishes again (same id) every recorded decision
        without a mark; the next batch publishes nothing before they landed
        (``_marks_landed``). At most one insert in flight; it takes whatever is unmarked
        when it starts, again until nothing is left."""
        if self._unmarked and (self._marking is None or self._marking.done()):
            self._marking = asyncio.ensure_future(self._mark_all())

    async def _mark_all(self) -> None:
        while self._unmarked:
            try:
                await self._mark_published(list(self._unmarked.values()))
            except Exception:
                # they stay unmarked: the next batch or the owner's timer tries again
                log.warning("marking decisions published failed; retrying later", exc_info=True)
                return

    async def _marks_landed(self) -> None:
        """Until the marks in flight are stored (or failed: then left for a retry)."""
        if self._marking is not None and not self._marking.done():
            with timed("marks_wait"):
                await asyncio.gather(asyncio.shield(self._marking), return_exceptions=True)

    async def settle_marks(self, timeout: float) -> None:
        """Store every mark still pending, for at most ``timeout`` seconds (a revoke, a stop:
        what is left then is published again by the next owner, with the same ids)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._settle_marks(), timeout)

    def abandon_marks(self) -> None:
        """What a crash does to the marks not stored yet: they never land (tests)."""
        if self._marking is not None:
            self._marking.cancel()

    async def _settle_marks(self) -> None:
        await self._marks_landed()
        await self._mark_published(list(self._unmarked.values()))

    async def _flush_assigner(self, after: asyncio.Future[None] | None = None) -> None:
        if after is not None:
            await after  # the batch's journal insert: its inputs are stored first
        if self._assigner is not None:
            # after the decisions are published: an R1/R2 unassignment is on the topic before
            # the dispatcher can hand the conversation to someone else
            with timed("dispatcher"):
                await self._assigner.flush()

    def _index(
        self, org_id: str, conversation_id: str, partition: int, entry: ConversationEntry
    ) -> bool:
        """Add an event to the conversation's log (False: known already, a duplicate)."""
        if not self._log_for(org_id, conversation_id, partition).add(entry):
            return False
        if entry.assignee_id is not None:
            self._by_agent[(org_id, entry.assignee_id)].add((org_id, conversation_id))
        return True

    def _log_for(self, org_id: str, conversation_id: str, partition: int) -> ConversationLog:
        key = (org_id, conversation_id)
        lg = self.logs.get(key)
        if lg is None:
            lg = self.logs[key] = ConversationLog(org_id, conversation_id, partition)
        return lg

    # -- snapshots, compaction, memory ------------------------------------------------------

    def _adopt(self, key: ConversationKey, partition: int, row: SnapshotRow | None) -> None:
        """Keep a conversation in memory, starting from its snapshot (if it has one)."""
        lg = self._log_for(key[0], key[1], partition)
        if row is not None and lg.snapshot is None:
            lg.snapshot = row.snapshot
            if row.snapshot.state.assignee_id is not None:
                self._by_agent[(key[0], row.snapshot.state.assignee_id)].add(key)

    def _repair_resident(
        self, resident: dict[ConversationKey, int], snapshots: dict[ConversationKey, SnapshotRow]
    ) -> None:
        """A crash inside a compaction step can leave the resident set behind its snapshots."""
        for key, row in snapshots.items():
            if row.snapshot.resident and key not in resident:
                self._stale_resident[key] = row
        for key in resident:
            found = snapshots.get(key)
            if found is None or not found.snapshot.resident:
                self._stale_not_resident.add(key)

    def _repairs(self) -> Compaction:
        return Compaction(
            resident=list(self._stale_resident.values()),
            not_resident=sorted(self._stale_not_resident),
            decisions=list(self._stale_decisions.values()),
            journal=sorted(self._stale_journal),
        )

    def _repaired(self) -> None:
        self._stale_journal.clear()
        self._stale_decisions.clear()
        self._stale_resident.clear()
        self._stale_not_resident.clear()

    def _filter(self, partition: int) -> KeyFilter:
        return self._filters.setdefault(partition, KeyFilter())

    def _touch(self, key: ConversationKey) -> None:
        self.logs.move_to_end(key)

    async def _load_missing(self, deliveries: Sequence[Delivery]) -> list[ConversationKey]:
        """Load the conversations these deliveries need that are not in memory (an evicted
        one is settled: its snapshot is all of it). Returns the keys of proposals loaded."""
        missing: dict[ConversationKey, int] = {}
        proposed: list[ConversationKey] = []
        for delivery in deliveries:
            data = delivery.event.data
            if isinstance(data, AssignmentProposed):
                key, partition = (data.org_id, data.conversation_id), data.partition
                if key not in self.logs and partition in self.owned:
                    missing.setdefault(key, partition)
                    proposed.append(key)
            elif isinstance(data, AgentSweepRequested | PresenceProgressRelayed):
                continue
            elif isinstance(data, CONVERSATION_EVENT_TYPES):
                key = (data.org_id, delivery.event.subject)
                if key not in self.logs:
                    missing.setdefault(key, delivery.partition)
        maybe = {
            k: p
            for k, p in missing.items()
            if p not in self._filters or f"{k[0]}|{k[1]}" in self._filters[p]
        }
        snapshots = await self._store.load_snapshots(maybe) if maybe else {}
        for key, partition in missing.items():
            self._adopt(key, partition, snapshots.get(key))
            if key in snapshots:
                self._written.setdefault(key, ())  # stored: its view exists (replace it)
                if key not in self._live:
                    self._copies_due[key] = partition
        return [k for k in proposed if k in snapshots]

    def _horizon(self, lg: ConversationLog, finals: Finals) -> datetime | None:
        final = finals.until(lg.partition, self._via.get((lg.org_id, lg.conversation_id), {}))
        if final is None:
            return None
        return final - self._time.lateness - self.compacting.lag

    def _compactable(self, key: ConversationKey, lg: ConversationLog, h: datetime) -> bool:
        oldest = lg.oldest_at
        if oldest is None or oldest > h:
            return False
        if self._views.pending(key):
            # a crash would lose that view write, and a settled conversation is not re-folded
            # on take-over: compact once its view is stored
            return False
        return not any(
            r.decision.org_id == lg.org_id and r.decision.conversation_id == lg.conversation_id
            for r in (
                *self._unrecorded.values(),
                *self._unpublished.values(),
                *self._unmarked.values(),
            )
        ) and not any(jk[:2] == key for jk in self._unjournaled)

    async def compact(self, lock: asyncio.Lock | None = None) -> int:
        """Fold what is behind each conversation's horizon into its snapshot (timer-driven;
        bounded per run). Returns how many conversations were compacted.

        With ``lock`` (the consumer's: a batch and a revoke hold it) the
        run takes it for one step at a time (the choice, each chunk of conversations, the
        repairs) and rests in between with it released, so a batch waits behind one chunk
        at most, never the whole run (asyncio locks are FIFO: a batch that queued meanwhile
        goes first). Chunks are sized so one holds the lock for about
        ``Compacting.chunk_seconds``. Each chunk re-checks its conversations against the
        state and progress of that moment: a batch in between may have added events or
        decisions, a pending view, or revoked the partition. Without ``lock`` the caller
        holds whatever must be held (tests)."""
        step = _Stepper(lock, self.compacting.rest_factor, self.acquire_yielding)
        async with step():
            chosen = self._choose(await self._final_until())
            # the filters learn every chosen key before any of their snapshots exist (a
            # crash or a conversation not compacted after all leaves a false "maybe", never a
            # false "no"): one write per partition a run (256 KiB), not one per chunk
            learnt = self._learn_keys(chosen)
        async with step():
            await self._write_copies()
        for p in learnt:
            async with step():
                if p in self._filters:  # still owned
                    await self._store.write_snapshot_filter(p, self._filters[p].to_bytes())
        done = 0
        i = 0
        while i < len(chosen):
            async with step():
                size = self._compaction_chunks.size
                part, i = chosen[i : i + size], i + size
                started = time.perf_counter()
                finals = await self._final_until()
                ready = [
                    (key, h)
                    for key in part
                    if (lg := self.logs.get(key)) is not None
                    and (h := self._horizon(lg, finals)) is not None
                    and self._compactable(key, lg, h)
                ]
                if ready:
                    done += await self._compact_chunk(ready, finals)
                    self._compaction_chunks.observe(len(part), time.perf_counter() - started)
        async with step():
            repairs = self._repairs()
            if repairs.resident or repairs.not_resident or repairs.decisions or repairs.journal:
                await self._store.compact(repairs)
                self._repaired()
            self._evict()
        return done

    async def acquire_yielding(self, lock: asyncio.Lock, expected: float) -> None:
        """Take ``lock`` for a background step expected to take about ``expected`` seconds
        (its previous step's time): the consumer's lock for a compaction step, the view
        writer's own for a read-model chunk (which then holds up no batch, but shares the
        database's write turn with it) — unless a decision is due that may become final
        within about twice that (it would wait behind the step: a sweep's R1 is final L
        after the sign-out, and a step is one or more store round trips, up to hundreds of
        ms on a loaded machine). Then the step lets the lock go and waits until a fold takes
        due decisions, once, at most ``Compacting.yield_seconds``: decisions first,
        background work never starved. Likewise while the owner's inputs hold records not
        handled yet: the step waits for the batch that takes them (once, at most as long),
        so a batch waits behind no background step while the loop has work. Checked with
        the lock held, so a step that queued for the lock early still yields."""
        await lock.acquire()
        if self.due and await self._due_within(max(2 * expected, 0.05)):
            event = self._due_taken
        elif self._input_waiting():
            event = self._handled
        else:
            return
        lock.release()
        event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.compacting.yield_seconds)
        await lock.acquire()

    async def _due_within(self, seconds: float) -> bool:
        """Is a decision due whose inputs' progress is within ``seconds`` of it (or past it)?
        Decisions whose progress is unknown do not count."""
        finals = await self._final_until()
        window = timedelta(seconds=seconds)
        for key, at in self.due.items():
            final = self._final_for(key, finals)
            if final is not None and at - final <= window:
                return True
        return False

    def _choose(self, finals: Finals) -> list[ConversationKey]:
        """Conversations with something behind their horizon, up to ``per_run``, grouped by
        partition (a chunk then touches few partitions' filters and documents)."""
        chosen: list[tuple[int, ConversationKey]] = []
        if finals.presence is None:
            return []  # no horizon anywhere: every conversation's progress includes presence
        # no conversation's horizon is later (its progress is at most presence's): most are
        # passed over on one comparison with what they hold (fresh work: all of a backlog)
        latest_horizon = finals.presence - self._time.lateness - self.compacting.lag
        for key, lg in self.logs.items():
            oldest = lg.oldest_at
            if oldest is None or oldest > latest_horizon:
                continue  # nothing to fold in (settled: most of the memory cache), or too new
            h = self._horizon(lg, finals)
            if h is not None and self._compactable(key, lg, h):
                chosen.append((lg.partition, key))
                if len(chosen) >= self.compacting.per_run:
                    break
        chosen.sort(key=lambda c: c[0])
        return [key for _, key in chosen]

    def _learn_keys(self, keys: Sequence[ConversationKey]) -> list[int]:
        """Add these keys to their partitions' filters; returns the partitions whose filter
        changed (to write before any of these snapshots)."""
        changed: set[int] = set()
        for key in keys:
            lg = self.logs.get(key)
            if lg is not None and self._filter(lg.partition).add(f"{key[0]}|{key[1]}"):
                changed.add(lg.partition)
        return sorted(changed)

    async def _write_copies(self) -> None:
        """Write the take-over copies of conversations loaded on demand that are still live
        (events after the horizon, or resident) and delete the stale ones found at take-over.
        Written from memory, which holds the stored snapshot (this owner is its one writer)."""
        live = [
            SnapshotRow(lg.org_id, lg.conversation_id, lg.partition, lg.snapshot)
            for key in sorted(self._copies_due)
            if (lg := self.logs.get(key)) is not None
            and lg.snapshot is not None
            and (not lg.settled or lg.snapshot.resident)
        ]
        stale = sorted(self._stale_live)
        if live or stale:
            await self._store.compact(Compaction(live=live, not_live=stale))
        self._live.update((r.key, r.partition) for r in live)
        for key in stale:
            self._live.pop(key, None)
        self._copies_due.clear()
        self._stale_live.clear()

    async def _compact_chunk(
        self, chosen: Sequence[tuple[ConversationKey, datetime]], finals: Finals
    ) -> int:
        timelines, settings = await self._fold_inputs([k for k, _ in chosen])
        rows: list[SnapshotRow] = []
        resident: list[SnapshotRow] = []
        not_resident: list[ConversationKey] = []
        decisions: list[DecisionRow] = []
        journal: list[tuple[str, str, str]] = []
        archived: list[ArchivedAuditRow] = []
        live: list[SnapshotRow] = []
        not_live: list[ConversationKey] = []
        new: dict[ConversationKey, Snapshot] = {}
        for key, h in chosen:
            lg = self.logs[key]
            snap = compact(
                lg,
                h,
                timelines={a: timelines.get((lg.org_id, a), []) for a in lg.agents()},
                settings=settings.get(lg.org_id, SettingsHistory()),
            )
            if snap is None:
                continue
            snap, moved = archive_audit(snap, self.compacting.audit)
            if moved is not None:
                archived.append(ArchivedAuditRow(lg.org_id, lg.conversation_id, moved))
            new[key] = snap
            row = SnapshotRow(lg.org_id, lg.conversation_id, lg.partition, snap)
            rows.append(row)
            was = lg.snapshot is not None and lg.snapshot.resident
            if snap.resident:
                resident.append(row)
            elif was:
                not_resident.append(key)
            later = any(e.occurred_at > h for e in lg.entries.values()) or any(
                f.occurred_at > h for f in lg.facts.values()
            )
            if later or snap.resident:
                live.append(row)  # a take-over loads it: its copy follows the snapshot
            elif key in self._live:
                not_live.append(key)
            journal += [(*key, e.event_id) for e in lg.entries.values() if e.occurred_at <= h]
            decisions += [
                DecisionRow(lg.partition, f, published=True)
                for f in lg.facts.values()
                if f.occurred_at <= h
            ]
        if not rows:
            return 0
        # ``compact`` put every key of the run in its partition's filter and stored it; a
        # partition revoked and taken over again between the steps reloaded its filter from
        # the store, which may lack them: add what is missing (usually nothing to write)
        changed: set[int] = set()
        for r in rows:
            if self._filter(r.partition).add(f"{r.org_id}|{r.conversation_id}"):
                changed.add(r.partition)
        for p in sorted(changed):
            await self._store.write_snapshot_filter(p, self._filters[p].to_bytes())
        await self._store.compact(
            Compaction(rows, resident, not_resident, decisions, journal, archived, live, not_live)
        )
        self._live.update((r.key, r.partition) for r in live)
        for key in not_live:
            self._live.pop(key, None)
        for key, snap in new.items():
            lg = self.logs[key]
            before = lg.agents()
            lg.advance(snap)
            for agent in before - lg.agents():
                keys = self._by_agent.get((lg.org_id, agent))
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_agent[(lg.org_id, agent)]
        if archived:
            # their views still hold the entries just archived: rewrite them bounded
            rewrite = [(r.org_id, r.conversation_id) for r in archived]
            await self._refold(rewrite, (timelines, settings), finals)
        return len(rows)

    def _evict(self) -> None:
        """Forget the least recently used settled conversations beyond the memory bound."""
        excess = len(self.logs) - self.compacting.max_conversations
        if excess > 0:
            gone: list[ConversationKey] = []
            for key, lg in self.logs.items():
                if len(gone) >= excess:
                    break
                if (
                    lg.settled
                    and (lg.snapshot is None or not lg.snapshot.resident)
                    and key not in self.due
                    and not self._views.pending(key)
                ):
                    gone.append(key)
            for key in gone:
                lg = self.logs.pop(key)
                self._written.pop(key, None)
                self._via.pop(key, None)
                for agent in lg.agents():
                    keys = self._by_agent.get((lg.org_id, agent))
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del self._by_agent[(lg.org_id, agent)]
            if gone and self._assigner is not None:
                self._assigner.forget_keys(gone)
        CONVERSATIONS_IN_MEMORY.set(len(self.logs))


#: How long a revoke waits for the marks of published decisions to be stored.
MARKS_ON_REVOKE_SECONDS = 2.0
#: Decisions per store write when many are taken at once (each chunk published while the
#: next is recorded), and conversations folded per slice of a large re-fold.
DECISION_CHUNK = 250
FOLD_SLICE = 250
#: The first slice of a large re-fold: its decisions' insert starts after a short fold.
FIRST_SLICE = 64


async def _sent() -> None:
    """Let a task just started run up to its first round trip (its request is sent before
    the caller goes on with work of its own): one turn for the task, one for the chunk it
    starts."""
    for _ in range(2):
        await asyncio.sleep(0)


async def _all_sent(sends: Sequence[asyncio.Future[Any]]) -> list[DecisionRow]:
    """Await every send started (a failed record leaves its rows unrecorded, a failed publish
    leaves them unpublished, for the retry); the published rows, or the first failure."""
    done = await asyncio.gather(*sends, return_exceptions=True)
    for result in done:
        if isinstance(result, BaseException):
            raise result
    return [row for rows in done if isinstance(rows, list) for row in rows]


def _by_conversation_chunks(
    rows: Sequence[DecisionRow], size: int = DECISION_CHUNK
) -> list[list[DecisionRow]]:
    """``rows`` in chunks of about ``size``, the decisions of a conversation in one chunk (in
    their order: they reach the topic in the order they were taken)."""
    groups: dict[tuple[str, str], list[DecisionRow]] = {}
    for r in rows:
        groups.setdefault((r.decision.org_id, r.decision.conversation_id), []).append(r)
    chunks: list[list[DecisionRow]] = []
    for group in groups.values():
        if not chunks or len(chunks[-1]) >= size:
            chunks.append([])
        chunks[-1] += group
    return chunks


#: See ``release_when_final``.
BUSY_SKIPS = 5


async def _both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Await both; if either failed, raise its error once both have ended (a failed batch is
    retried: nothing of its attempt may still be running then)."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    for outcome in (a, b):
        if isinstance(outcome, BaseException):
            raise outcome
    return cast(T, a), cast(U, b)


async def release_when_final(owner: ConversationOwner, lock: asyncio.Lock, tick: float) -> None:
    """Take the decisions that became final: as soon as presence progress moves (the
    presence consumer of this process tells the owner directly), else every ``tick`` (the
    conversation inputs' completeness moves with the consumer's fetch responses).

    Not while the owner is busy (a batch or a compaction step holds ``lock``): every batch
    takes what became final by its start, so under load the due decisions ride along with
    the batches (one round trip per step for both) instead of costing round trips of their
    own between them; an idle owner takes them at once. After ``BUSY_SKIPS`` wake-ups in a
    row found it busy, it waits for the lock (a long compaction run holds it often)."""
    skipped = 0
    while True:
        await owner.wait_progress(tick)
        if lock.locked() and skipped < BUSY_SKIPS:
            skipped += 1
            continue
        skipped = 0
        async with lock:
            try:
                await owner.release_due()
            except Exception:
                log.warning("taking due decisions failed; retrying", exc_info=True)
