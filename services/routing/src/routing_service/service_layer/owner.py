"""The conversation owner: the one writer of the conversations of the partitions it owns.

Consumes messages, conversations and routing-command events in batches. For every touched
conversation it re-folds everything known (its events, its assignees' presence timelines, the
org's setting history, the decisions already published) and persists, in this order:
1. new journal entries (insert-only, unique per event: a redelivery is a no-op);
2. new decisions (insert-only, deterministic ids: the "facts");
3. publishes the decisions and waits for the broker, then marks them published;
4. the read model (queue, assignee, audit trail) of the conversations that changed.
Offsets are committed by the caller after ``handle`` returned, so a crash anywhere in between
redelivers the batch, which re-derives the same decisions with the same ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from inbox_contracts import CloudEvent
from inbox_contracts.events import AgentSweepRequested, AssignmentProposed

from routing_service.domain.model import (
    ConversationLog,
    Decision,
    PresenceEntry,
    SettingsHistory,
    agents_of,
    fold,
)
from routing_service.service_layer.auto_assign import AutoAssigner
from routing_service.service_layer.ports import (
    AgentKey,
    ConversationKey,
    ConversationView,
    DecisionPublisher,
    DecisionRow,
    JournalRow,
    RoutingStore,
    SweepRow,
)
from routing_service.service_layer.translate import conversation_entry
from routing_service.service_layer.views import ViewWriter

log = logging.getLogger(__name__)


async def _nothing() -> dict[Any, Any]:
    return {}


FoldInputs = tuple[dict[AgentKey, list[PresenceEntry]], dict[str, SettingsHistory]]


@dataclass(frozen=True)
class Delivery:
    """One consumed record: its partition and decoded event."""

    partition: int
    event: CloudEvent[Any]


@dataclass
class BatchOutcome:
    decisions: list[Decision] = field(default_factory=list)
    views_written: int = 0
    duplicates: int = 0


class ConversationOwner:
    def __init__(
        self,
        store: RoutingStore,
        publisher: DecisionPublisher,
        views: ViewWriter | None = None,
        assigner: AutoAssigner | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        #: Automatic assignment's hook (PRODUCT.md §4); None: not wired (older tests).
        self._assigner = assigner
        #: None: write the read model inline (tests); else asynchronously.
        self._views = views
        self.logs: dict[ConversationKey, ConversationLog] = {}
        self._by_agent: dict[AgentKey, set[ConversationKey]] = defaultdict(set)
        self._written: dict[ConversationKey, str] = {}
        self.owned: set[int] = set()
        #: (partition, org, agent) -> latest sign-out whose sweep this owner handled.
        self._swept: dict[tuple[int, str, str], datetime] = {}
        #: Known in memory but not stored yet. After a transient failure the consumer retries
        #: the batch in this process: its events are duplicates by then and its decisions
        #: facts already, so what is pending here is written by the retry (or the next
        #: batch), always before the offsets are committed.
        self._unjournaled: dict[tuple[str, str, str], JournalRow] = {}
        self._unrecorded: dict[str, DecisionRow] = {}
        self._unpublished: dict[str, DecisionRow] = {}

    # -- partition ownership ----------------------------------------------------------------

    async def assign(self, partitions: Iterable[int]) -> BatchOutcome:
        """Take over partitions: load their journal and facts, then re-fold all of them.

        The re-fold publishes any decision a crash left unpublished and repairs stale views.
        """
        parts = sorted(set(partitions) - self.owned)
        if not parts:
            return BatchOutcome()
        started = time.perf_counter()
        self.owned.update(parts)
        journal, decisions, sweeps, fingerprints_loaded = await asyncio.gather(
            self._store.load_journal(parts),
            self._store.load_decisions(parts),
            self._store.load_sweeps(parts),
            self._store.load_view_fingerprints(parts),
        )
        for row in journal:
            self._log_for(row.org_id, row.conversation_id, row.partition).add(row.entry)
            if row.entry.assignee_id is not None:
                self._by_agent[(row.org_id, row.entry.assignee_id)].add(
                    (row.org_id, row.conversation_id)
                )
        unpublished: list[DecisionRow] = []
        for drow in decisions:
            d = drow.decision
            self._log_for(d.org_id, d.conversation_id, drow.partition).facts[d.decision_id] = d
            self._by_agent[(d.org_id, d.previous_assignee_id)].add((d.org_id, d.conversation_id))
            if not drow.published:
                unpublished.append(drow)
        for srow in sweeps:
            self._note_sweep(srow.partition, srow.org_id, srow.agent_id, srow.occurred_at)
        loaded = time.perf_counter()
        self._written.update(fingerprints_loaded)
        if unpublished:
            await self._publisher.publish_decisions([r.decision for r in unpublished])
            await self._store.mark_published(unpublished)
        keys = [k for k, lg in self.logs.items() if lg.partition in parts]
        outcome = BatchOutcome()
        # the timelines and settings of all these conversations, read once (not per chunk:
        # at 50,000 conversations that was 100 rounds of point reads)
        inputs = await self._fold_inputs(keys)
        for i in range(0, len(keys), 500):
            # in chunks, yielding, so the consumer's heartbeats go on during a big take-over
            part = await self._refold(keys[i : i + 500], inputs=inputs)
            outcome.decisions += part.decisions
            outcome.views_written += part.views_written
            await asyncio.sleep(0)
        log.info(
            "partitions assigned",
            extra={
                "seconds_loading": round(loaded - started, 2),
                "seconds_refold": round(time.perf_counter() - loaded, 2),
                "partitions": parts,
                "conversations": len(keys),
                "republished": len(unpublished),
                "decisions": len(outcome.decisions),
            },
        )
        return outcome

    async def revoke(self, partitions: Iterable[int]) -> None:
        parts = set(partitions)
        if self._views is not None:
            self._views.drop(parts)
        if self._assigner is not None:
            self._assigner.forget(parts)
        self.owned -= parts
        gone = [k for k, lg in self.logs.items() if lg.partition in parts]
        for k in gone:
            del self.logs[k]
            self._written.pop(k, None)
        for sk in [k for k in self._swept if k[0] in parts]:
            del self._swept[sk]
        # the next owner re-derives these from the redelivered (uncommitted) records
        for jk in [k for k, row in self._unjournaled.items() if row.partition in parts]:
            del self._unjournaled[jk]
        for pending in (self._unrecorded, self._unpublished):
            for dk in [k for k, drow in pending.items() if drow.partition in parts]:
                del pending[dk]
        for agent, keys in list(self._by_agent.items()):
            keys.difference_update(gone)
            if not keys:
                del self._by_agent[agent]

    # -- handling -----------------------------------------------------------------------------

    async def handle(self, deliveries: Sequence[Delivery]) -> BatchOutcome:
        touched: dict[ConversationKey, None] = {}
        sweeps: list[SweepRow] = []
        proposals: list[CloudEvent[AssignmentProposed]] = []
        duplicates = 0
        for delivery in deliveries:
            event = delivery.event
            data = event.data
            if isinstance(data, AssignmentProposed):
                proposals.append(event)
                continue
            if isinstance(data, AgentSweepRequested):
                sweeps.append(
                    SweepRow(event.id, data.partition, data.org_id, data.agent_id, data.occurred_at)
                )
                self._note_sweep(data.partition, data.org_id, data.agent_id, data.occurred_at)
                for key in self._by_agent.get((data.org_id, data.agent_id), ()):
                    if self.logs[key].partition == data.partition:
                        touched[key] = None
                continue
            entry = conversation_entry(event)
            if entry is None:
                continue
            cid = data.subject
            lg = self._log_for(data.org_id, cid, delivery.partition)
            if lg.add(entry):
                row = JournalRow(data.org_id, cid, delivery.partition, entry)
                self._unjournaled[(data.org_id, cid, entry.event_id)] = row
                if entry.assignee_id is not None:
                    self._by_agent[(data.org_id, entry.assignee_id)].add((data.org_id, cid))
            else:
                duplicates += 1
            # duplicates are re-folded too: after a crash the redelivered event is the
            # trigger to finish what the crashed attempt started.
            touched[(data.org_id, cid)] = None
        # the journal and sweep marks are written while the fold's inputs are read (the fold
        # uses the in-memory log); both are stored before any decision is recorded.
        outcome = await self._refold(list(touched), persist=self._persist_inputs(sweeps))
        outcome.duplicates = duplicates
        if proposals and self._assigner is not None:
            # reviewed against the state after this batch's other events
            outcome.decisions += (await self._apply_proposals(proposals)).decisions
        return outcome

    async def _apply_proposals(
        self, proposals: Sequence[CloudEvent[AssignmentProposed]]
    ) -> BatchOutcome:
        assert self._assigner is not None
        accepted, again = await self._assigner.review(proposals, self.logs)
        keys: dict[ConversationKey, None] = dict.fromkeys(again)
        for lg, entry in accepted:
            key = (lg.org_id, lg.conversation_id)
            if lg.add(entry):
                row = JournalRow(lg.org_id, lg.conversation_id, lg.partition, entry)
                self._unjournaled[(lg.org_id, lg.conversation_id, entry.event_id)] = row
                assert entry.assignee_id is not None
                self._by_agent[(lg.org_id, entry.assignee_id)].add(key)
            keys[key] = None
        return await self._refold(list(keys), persist=self._persist_inputs([]))

    async def _fold_inputs(self, keys: Sequence[ConversationKey]) -> FoldInputs:
        """Presence timelines of every agent these conversations involve, and org settings."""
        agent_keys: set[AgentKey] = set()
        orgs: set[str] = set()
        for key in keys:
            lg = self.logs[key]
            agents = agents_of(lg.entries.values(), lg.facts.values())
            if agents:
                orgs.add(lg.org_id)
                agent_keys.update((lg.org_id, a) for a in agents)
        timelines, settings = await asyncio.gather(
            self._store.timelines(agent_keys) if agent_keys else _nothing(),
            self._store.settings(orgs) if orgs else _nothing(),
        )
        return timelines, settings

    async def _persist_inputs(self, sweeps: list[SweepRow]) -> None:
        journal = dict(self._unjournaled)
        if journal:
            await self._store.append_journal(list(journal.values()))
            for jk in journal:
                self._unjournaled.pop(jk, None)
        if sweeps:
            await self._store.record_sweeps(sweeps)

    async def _refold(
        self,
        keys: Sequence[ConversationKey],
        persist: Coroutine[Any, Any, None] | None = None,
        inputs: FoldInputs | None = None,
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        if not keys:
            if persist is not None:
                await persist
            outcome.decisions = await self._record_and_publish()
            if self._assigner is not None:
                await self._assigner.flush()
            return outcome
        if inputs is None:
            inputs, _ = await asyncio.gather(
                self._fold_inputs(keys), persist if persist is not None else _nothing()
            )
        elif persist is not None:
            await persist
        timelines, settings = inputs
        no_settings = SettingsHistory()
        new_rows: list[DecisionRow] = []
        views: list[ConversationView] = []
        for key in keys:
            lg = self.logs[key]
            agents = agents_of(lg.entries.values(), lg.facts.values())
            result = fold(
                lg.org_id,
                lg.conversation_id,
                lg.entries.values(),
                timelines={a: timelines.get((lg.org_id, a), []) for a in agents},
                settings=settings.get(lg.org_id, no_settings),
                facts=lg.facts.values(),
                presence_horizon=self._horizon(lg, agents),
            )
            for d in result.new_decisions:
                lg.facts[d.decision_id] = d
                new_rows.append(DecisionRow(lg.partition, d))
            if self._assigner is not None:
                self._assigner.observe(lg, result)
            view = ConversationView(lg.partition, result.state, result.audit)
            if result.state.exists and self._written.get(key) != view.fingerprint:
                views.append(view)
        for r in new_rows:
            self._unrecorded[r.decision.decision_id] = r
        outcome.decisions = await self._record_and_publish()
        if views:
            new_keys = {
                (v.state.org_id, v.state.conversation_id)
                for v in views
                if (v.state.org_id, v.state.conversation_id) not in self._written
            }
            if self._views is not None:
                self._views.submit(views, new_keys)
            else:
                await self._store.write_views(views, new_keys=new_keys)
            for v in views:
                self._written[(v.state.org_id, v.state.conversation_id)] = v.fingerprint
            outcome.views_written = len(views)
        if self._assigner is not None:
            # after the decisions: an R1/R2 unassignment is published before the dispatcher
            # can hand the conversation to someone else
            await self._assigner.flush()
        return outcome

    async def _record_and_publish(self) -> list[Decision]:
        """Record, publish (acks awaited), mark published: every decision not done yet."""
        if self._unrecorded:
            rows = list(self._unrecorded.values())
            await self._store.record_decisions(rows)
            for r in rows:
                self._unpublished[r.decision.decision_id] = r
                self._unrecorded.pop(r.decision.decision_id, None)
        if not self._unpublished:
            return []
        rows = list(self._unpublished.values())
        await self._publisher.publish_decisions([r.decision for r in rows])
        await self._store.mark_published(rows)
        for r in rows:
            self._unpublished.pop(r.decision.decision_id, None)
        return [r.decision for r in rows]

    def _note_sweep(self, partition: int, org_id: str, agent_id: str, at: datetime) -> None:
        key = (partition, org_id, agent_id)
        if key not in self._swept or self._swept[key] < at:
            self._swept[key] = at

    def _horizon(self, lg: ConversationLog, agents: set[str]) -> datetime | None:
        times = [self._swept.get((lg.partition, lg.org_id, a)) for a in agents]
        times.append(lg.stream_time())
        return max((t for t in times if t is not None), default=None)

    def _log_for(self, org_id: str, conversation_id: str, partition: int) -> ConversationLog:
        key = (org_id, conversation_id)
        lg = self.logs.get(key)
        if lg is None:
            lg = self.logs[key] = ConversationLog(org_id, conversation_id, partition)
        return lg
