"""The conversation owner: the one writer of the conversations of the partitions it owns.

Consumes messages, conversations and routing-command events in batches. For every touched
conversation it re-folds everything known (its events, its assignees' presence timelines, the
org's setting history, the decisions already taken) and persists, in this order:
1. new journal entries (insert-only, unique per event: a redelivery is a no-op);
2. new decisions (insert-only, deterministic ids: the "facts");
3. publishes the decisions and waits for the broker, then marks them published;
4. the read model (queue, assignee, audit trail) of the conversations that changed.
Offsets are committed by the caller after ``handle`` returned, so a crash anywhere in between
redelivers the batch, which re-derives the same decisions with the same ids.

Decisions are taken on event time and only once final (``domain.progress``): a fold that finds
a decision beyond the partition's progress notes when it is due; ``release_due`` (called by a
timer, and by every batch) folds those conversations again once progress has reached it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from inbox_contracts import CloudEvent
from inbox_contracts.events import (
    AgentSweepRequested,
    AssignmentProposed,
    PresenceProgressRelayed,
)
from inbox_contracts.topics import CONVERSATIONS, MESSAGES

from routing_service.domain.model import (
    ConversationEntry,
    ConversationLog,
    Decision,
    PresenceEntry,
    SettingsHistory,
    agents_of,
    fold,
)
from routing_service.domain.progress import PresenceProgress, earliest, stream_progress
from routing_service.service_layer.auto_assign import AutoAssigner
from routing_service.service_layer.ports import (
    AgentKey,
    ConversationKey,
    ConversationView,
    DecisionPublisher,
    DecisionRow,
    JournalRow,
    OwnerStore,
    ViewSink,
)
from routing_service.service_layer.translate import conversation_entry

log = logging.getLogger(__name__)

FoldInputs = tuple[dict[AgentKey, list[PresenceEntry]], dict[str, SettingsHistory]]
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

    def until(self, partition: int, via: dict[str, str]) -> datetime | None:
        """Up to when the decisions of a conversation on ``partition`` are final, given the
        input each of its streams arrives on (``via``: source topic -> topic; default the
        source topic itself)."""
        streams = (
            self.inputs.get((via.get(source, source), partition))
            for source in (MESSAGES.name, CONVERSATIONS.name)
        )
        return earliest([self.presence, *streams])


async def never_complete(topic: str, partition: int) -> datetime | None:
    return None


@dataclass(frozen=True)
class Delivery:
    """One consumed record: its topic, partition and decoded event."""

    topic: str
    partition: int
    event: CloudEvent[Any]


@dataclass
class BatchOutcome:
    decisions: list[Decision] = field(default_factory=list)
    views_written: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class EventTime:
    """How the owner tells event time: the allowed lateness, and how complete its inputs are."""

    lateness: timedelta = timedelta(milliseconds=500)
    complete_as_of: CompleteAsOf = never_complete


class ConversationOwner:
    def __init__(
        self,
        store: OwnerStore,
        publisher: DecisionPublisher,
        views: ViewSink,
        event_time: EventTime | None = None,
        assigner: AutoAssigner | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._views = views
        #: Automatic assignment's hook (PRODUCT.md §4); None: not wired.
        self._assigner = assigner
        self._time = event_time or EventTime()
        self.logs: dict[ConversationKey, ConversationLog] = {}
        self._by_agent: dict[AgentKey, set[ConversationKey]] = defaultdict(set)
        self._written: dict[ConversationKey, str] = {}
        self.owned: set[int] = set()
        #: Latest occurred_at consumed per conversation input (topic, partition).
        self._heads: dict[tuple[str, int], datetime] = {}
        self.presence = PresenceProgress()
        #: Per conversation: the topic each of its streams arrives on, if not the source topic.
        self._via: dict[ConversationKey, dict[str, str]] = {}
        #: Conversations with a decision beyond progress, and when it is due (event time).
        self.due: dict[ConversationKey, datetime] = {}
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

        The re-fold publishes any final decision a crash left unpublished, notes the pending
        ones, and repairs stale views.
        """
        parts = sorted(set(partitions) - self.owned)
        if not parts:
            return BatchOutcome()
        started = time.perf_counter()
        self.owned.update(parts)
        journal, decisions, fingerprints = await asyncio.gather(
            self._store.load_journal(parts),
            self._store.load_decisions(parts),
            self._store.load_view_fingerprints(parts),
        )
        for row in journal:
            self._index(row.org_id, row.conversation_id, row.partition, row.entry)
            self._note_route((row.org_id, row.conversation_id), row.topic)
        unpublished: list[DecisionRow] = []
        for drow in decisions:
            d = drow.decision
            self._log_for(d.org_id, d.conversation_id, drow.partition).facts[d.decision_id] = d
            self._by_agent[(d.org_id, d.previous_assignee_id)].add((d.org_id, d.conversation_id))
            if not drow.published:
                unpublished.append(drow)
        loaded = time.perf_counter()
        self._written.update(fingerprints)
        if unpublished:
            await self._publisher.publish_decisions([r.decision for r in unpublished])
            await self._store.mark_published(unpublished)
        keys = [k for k, lg in self.logs.items() if lg.partition in parts]
        outcome = BatchOutcome()
        # the timelines and settings of all these conversations, read once (not per chunk:
        # at 50,000 conversations that was 100 rounds of point reads)
        inputs = await self._fold_inputs(keys)
        finals = await self._final_until()
        for i in range(0, len(keys), 500):
            # in chunks, yielding, so the consumer's heartbeats go on during a big take-over
            part = await self._refold(keys[i : i + 500], inputs, finals)
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
        self._views.drop(parts)
        if self._assigner is not None:
            self._assigner.forget(parts)
        self.owned -= parts
        gone = [k for k, lg in self.logs.items() if lg.partition in parts]
        for k in gone:
            del self.logs[k]
            self._written.pop(k, None)
            self.due.pop(k, None)
            self._via.pop(k, None)
        for head in [h for h in self._heads if h[1] in parts]:
            del self._heads[head]
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
        """Take a batch in, then fold what it touched and whatever became due."""
        touched: dict[ConversationKey, None] = {}
        proposals: list[CloudEvent[AssignmentProposed]] = []
        duplicates = 0
        for delivery in deliveries:
            data = delivery.event.data
            if isinstance(data, AssignmentProposed):
                proposals.append(delivery.event)
            elif isinstance(data, PresenceProgressRelayed):
                marks = {m.partition: m.progress for m in data.marks}
                self.presence.observe(data.presence_partitions, marks)
            elif isinstance(data, AgentSweepRequested):
                for key in self._by_agent.get((data.org_id, data.agent_id), ()):
                    if self.logs[key].partition == data.partition:
                        touched[key] = None
            elif (entry := conversation_entry(delivery.event)) is not None:
                key = (data.org_id, data.subject)
                self._advance_head(delivery.topic, delivery.partition, entry.occurred_at)
                self._note_route(key, delivery.topic)
                if self._index(data.org_id, data.subject, delivery.partition, entry):
                    self._unjournaled[(*key, entry.event_id)] = JournalRow(
                        data.org_id, data.subject, delivery.partition, entry, delivery.topic
                    )
                else:
                    duplicates += 1
                # duplicates are folded again too: after a crash the redelivered event is the
                # trigger to finish what the crashed attempt started.
                touched[(data.org_id, data.subject)] = None
        finals = await self._final_until()
        keys = [*touched, *(k for k in self._due_now(finals) if k not in touched)]
        # the journal is written while the fold's inputs are read (the fold uses the log in
        # memory); both are done before any decision is recorded.
        # the proposals' agents are read with the same round trip (one read phase per batch)
        extra = self._proposal_agents(proposals) if self._assigner is not None else set()
        inputs, _ = await asyncio.gather(self._fold_inputs(keys, extra), self._write_journal())
        outcome = await self._refold(keys, inputs, finals)
        outcome.duplicates = duplicates
        if proposals and self._assigner is not None:
            # reviewed against the state after this batch's other events
            more = await self._apply_proposals(proposals, finals, inputs)
            outcome.decisions += more.decisions
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
                out.update(
                    (lg.org_id, a) for a in agents_of(lg.entries.values(), lg.facts.values())
                )
        return out

    async def _apply_proposals(
        self,
        proposals: Sequence[CloudEvent[AssignmentProposed]],
        finals: Finals,
        inputs: FoldInputs,
    ) -> BatchOutcome:
        """``inputs`` hold the timelines of ``_proposal_agents(proposals)`` (read with the
        batch's): no second read phase."""
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
        await self._write_journal()
        return await self._refold(list(keys), inputs, finals)

    async def release_due(self) -> BatchOutcome:
        """Take the pending decisions whose time progress has reached (timer-driven)."""
        finals = await self._final_until()
        keys = self._due_now(finals)
        holding = self._assigner is not None and self._assigner.holding
        if not keys and not self._unrecorded and not self._unpublished and not holding:
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
            agents = agents_of(lg.entries.values(), lg.facts.values())
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
        journal = dict(self._unjournaled)
        if journal:
            await self._store.append_journal(list(journal.values()))
            for jk in journal:
                self._unjournaled.pop(jk, None)

    async def _refold(
        self,
        keys: Sequence[ConversationKey],
        inputs: FoldInputs,
        finals: Finals,
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        timelines, settings = inputs
        no_settings = SettingsHistory()
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
                final_until=self._final_for(key, finals),
            )
            for d in result.new_decisions:
                lg.facts[d.decision_id] = d
                self._unrecorded[d.decision_id] = DecisionRow(lg.partition, d)
            if self._assigner is not None:
                self._assigner.observe(lg, result, finals.presence)
            if result.pending_at is None:
                self.due.pop(key, None)
            else:
                self.due[key] = result.pending_at
            view = ConversationView(lg.partition, result.state, result.audit)
            if result.state.exists and self._written.get(key) != view.fingerprint:
                views.append(view)
        outcome.decisions = await self._record_and_publish()
        if views:
            new_keys = {v.key for v in views if v.key not in self._written}
            self._views.submit(views, new_keys)
            for v in views:
                self._written[v.key] = v.fingerprint
            outcome.views_written = len(views)
        if self._assigner is not None:
            # after the decisions: an R1/R2 unassignment is published before the dispatcher
            # can hand the conversation to someone else
            self._assigner.release(finals.presence)
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
