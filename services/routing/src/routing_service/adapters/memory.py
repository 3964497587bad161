"""In-memory implementations of the ports, for unit and property tests."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from inbox_contracts import CloudEvent, EncodedEvent, decode
from inbox_contracts.events import (
    AssignmentProposed,
    ConversationAutoAssigned,
    PresenceProgressRelayed,
)
from inbox_contracts.topics import MESSAGES, PRESENCE, ROUTING_DISPATCH

from routing_service.domain.audit import ArchivedEntries
from routing_service.domain.model import (
    AuditEntry,
    Decision,
    PresenceEntry,
    SettingChange,
    SettingsHistory,
)
from routing_service.domain.timeline import expired_changes, expired_entries
from routing_service.service_layer.dispatcher import decoded_proposals
from routing_service.service_layer.ports import (
    AgentKey,
    Command,
    Compaction,
    ConversationKey,
    ConversationView,
    DecisionRow,
    JournalRow,
    Page,
    SnapshotRow,
)


class InMemoryStore:
    def __init__(
        self,
        *,
        decision_retention: timedelta = timedelta(days=7),
        timeline_retention: timedelta = timedelta(hours=24),
        settings_retention: timedelta = timedelta(hours=24),
    ) -> None:
        self.decision_retention = decision_retention
        self.timeline_retention = timeline_retention
        self.settings_retention = settings_retention
        self.journal: dict[tuple[str, str, str], JournalRow] = {}
        self.decisions: dict[str, DecisionRow] = {}
        self.published: set[str] = set()
        self.compacted: set[str] = set()
        self.snapshots: dict[ConversationKey, SnapshotRow] = {}
        self.resident: dict[ConversationKey, int] = {}
        self.snapshot_filters: dict[int, bytes] = {}
        self.snapshot_reads = 0
        self.audit_segments_by_key: dict[tuple[str, str, int], ArchivedEntries] = {}
        self.live: dict[ConversationKey, SnapshotRow] = {}
        self.claims: dict[int, str] = {}
        #: Optional fault injection: called before each write of a compaction step.
        self.before_write: Callable[[str], None] | None = None
        self.views: dict[ConversationKey, ConversationView] = {}
        self.presence: dict[AgentKey, dict[str, PresenceEntry]] = {}
        self.settings_by_org: dict[str, SettingsHistory] = {}

    async def ensure_indexes(self) -> None:
        """Dictionaries need no indexes."""

    async def prune(self, now: datetime, *, limit: int = 640) -> int:
        """Forget up to ``limit`` compacted decisions whose retention ended."""
        expired = [
            i
            for i, r in self.decisions.items()
            if i in self.compacted and r.decision.occurred_at + self.decision_retention < now
        ][:limit]
        for i in expired:
            del self.decisions[i]
            self.published.discard(i)
            self.compacted.discard(i)
        return len(expired)

    async def load_journal(self, partitions: Sequence[int]) -> list[JournalRow]:
        return [r for r in self.journal.values() if r.partition in partitions]

    async def append_journal(self, rows: Sequence[JournalRow]) -> None:
        for r in rows:
            self.journal.setdefault((r.org_id, r.conversation_id, r.entry.event_id), r)

    async def load_decisions(self, partitions: Sequence[int]) -> list[DecisionRow]:
        return [
            DecisionRow(
                r.partition,
                r.decision,
                r.decision.decision_id in self.published,
                r.decision.decision_id in self.compacted,
            )
            for r in self.decisions.values()
            if r.partition in partitions
        ]

    async def record_decisions(self, rows: Sequence[DecisionRow]) -> None:
        for r in rows:
            self.decisions.setdefault(r.decision.decision_id, r)

    async def mark_published(self, rows: Sequence[DecisionRow]) -> None:
        self.published.update(r.decision.decision_id for r in rows)

    async def claim_partitions(self, partitions: Sequence[int], claim: str) -> None:
        self.claims.update(dict.fromkeys(partitions, claim))

    async def partition_claims(self, partitions: Sequence[int]) -> dict[int, str]:
        return {p: self.claims[p] for p in partitions if p in self.claims}

    async def load_live_snapshots(self, partitions: Sequence[int]) -> list[SnapshotRow]:
        return [r for r in self.live.values() if r.partition in partitions]

    async def load_resident(self, partitions: Sequence[int]) -> list[tuple[ConversationKey, int]]:
        return [(k, p) for k, p in self.resident.items() if p in partitions]

    async def load_snapshots(
        self, keys: Iterable[ConversationKey]
    ) -> dict[ConversationKey, SnapshotRow]:
        keys = list(keys)
        self.snapshot_reads += len(keys)
        return {k: self.snapshots[k] for k in keys if k in self.snapshots}

    async def load_snapshot_filters(self, partitions: Sequence[int]) -> dict[int, bytes]:
        return {p: self.snapshot_filters[p] for p in partitions if p in self.snapshot_filters}

    async def write_snapshot_filter(self, partition: int, data: bytes) -> None:
        self._before("filter")
        self.snapshot_filters[partition] = data

    async def compact(self, step: Compaction) -> None:
        if step.audit:
            self._before("audit")
        for a in step.audit:
            at = (a.org_id, a.conversation_id, a.archived.segment.first)
            self.audit_segments_by_key[at] = a.archived
        self._before("snapshots")
        for row in step.snapshots:
            self.snapshots[row.key] = row
        if step.live or step.not_live:
            self._before("live")
        for row in step.live:
            self.live[row.key] = row
        for key in step.not_live:
            self.live.pop(key, None)
        self._before("resident")
        for row in step.resident:
            self.resident[row.key] = row.partition
        for key in step.not_resident:
            self.resident.pop(key, None)
        self._before("decisions")
        self.compacted.update(r.decision.decision_id for r in step.decisions)
        self._before("journal")
        for jk in step.journal:
            self.journal.pop(jk, None)

    def _before(self, write: str) -> None:
        if self.before_write is not None:
            self.before_write(write)

    async def write_views(
        self, views: Sequence[ConversationView], *, new_keys: set[ConversationKey]
    ) -> None:
        for v in views:
            self.views[(v.state.org_id, v.state.conversation_id)] = v

    async def record_presence(self, org_id: str, agent_id: str, entry: PresenceEntry) -> None:
        timeline = self.presence.setdefault((org_id, agent_id), {})
        timeline[entry.event_id] = entry
        for event_id in expired_entries(timeline.values(), self.timeline_retention):
            del timeline[event_id]

    async def timelines(self, agents: Iterable[AgentKey]) -> dict[AgentKey, list[PresenceEntry]]:
        return {
            a: sorted(self.presence[a].values(), key=lambda p: p.sort_key)
            for a in agents
            if a in self.presence
        }

    async def settings(self, org_ids: Iterable[str]) -> dict[str, SettingsHistory]:
        return {o: self.settings_by_org[o] for o in org_ids if o in self.settings_by_org}

    async def append_setting(self, org_id: str, change: SettingChange) -> SettingsHistory:
        history = self.settings_by_org.get(org_id, SettingsHistory()).with_change(change)
        expired = expired_changes(history.changes, self.settings_retention)
        history = SettingsHistory(
            tuple(c for i, c in enumerate(history.changes) if i not in expired)
        )
        self.settings_by_org[org_id] = history
        return history

    async def get_view(self, org_id: str, conversation_id: str) -> ConversationView | None:
        return self.views.get((org_id, conversation_id))

    async def audit_segments(
        self, org_id: str, conversation_id: str, firsts: Sequence[int]
    ) -> dict[int, tuple[AuditEntry, ...]]:
        found = {f: self.audit_segments_by_key.get((org_id, conversation_id, f)) for f in firsts}
        return {f: a.entries for f, a in found.items() if a is not None}

    async def prune_audit(self, now: datetime, *, limit: int = 640) -> int:
        """Delete up to ``limit`` archived audit segments expired at ``now``."""
        gone = [k for k, a in self.audit_segments_by_key.items() if a.segment.expire_at < now]
        gone = gone[:limit]
        for k in gone:
            del self.audit_segments_by_key[k]
        return len(gone)

    async def list_views(
        self,
        org_id: str,
        *,
        queue: str | None,
        assignee_id: str | None,
        page_size: int,
        page_token: str,
    ) -> Page:
        keys = sorted(
            k
            for k, v in self.views.items()
            if k[0] == org_id
            and (queue is None or v.state.queue == queue)
            and (assignee_id is None or v.state.assignee_id == assignee_id)
        )
        start = bisect.bisect_right([k[1] for k in keys], page_token) if page_token else 0
        chosen = keys[start : start + page_size]
        more = start + page_size < len(keys)
        return Page([self.views[k] for k in chosen], chosen[-1][1] if more and chosen else "")


class InMemoryViews:
    """Writes the owner's views into the in-memory store at once (no background writer)."""

    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def submit(self, views: Iterable[ConversationView], new_keys: set[ConversationKey]) -> None:
        for v in views:
            self._store.views[v.key] = v

    async def drop(self, partitions: set[int]) -> None:
        return None

    def pending(self, key: ConversationKey) -> bool:
        return False


class RecordingDecisionPublisher:
    def __init__(self) -> None:
        self.published: list[Decision] = []

    async def publish_decisions(self, decisions: Sequence[Decision]) -> None:
        self.published.extend(decisions)


class QueueingCommandPublisher:
    def __init__(self) -> None:
        self.pending: list[Command] = []

    async def publish_commands(self, commands: Sequence[Command]) -> None:
        self.pending.extend(commands)


class InMemoryPublisher(RecordingDecisionPublisher, QueueingCommandPublisher):
    """Every routing publication kept in lists (``bootstrap``'s producer in unit tests)."""

    def __init__(self, partitions: int = 3, presence_partitions: int = 1) -> None:
        RecordingDecisionPublisher.__init__(self)
        QueueingCommandPublisher.__init__(self)
        self.partition_counts = {
            MESSAGES.name: partitions,
            PRESENCE.name: presence_partitions,
            ROUTING_DISPATCH.name: partitions,
        }
        self.dispatch_inputs: list[CloudEvent[Any]] = []
        self.dispatch_progress: list[CloudEvent[PresenceProgressRelayed]] = []
        self.auto_assigned: list[CloudEvent[ConversationAutoAssigned]] = []
        self.proposals: list[CloudEvent[AssignmentProposed]] = []
        self.raw: list[tuple[str, bytes]] = []

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    async def partition_count(self, topic: str) -> int:
        return self.partition_counts[topic]

    async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
        self.dispatch_inputs.extend(events)

    async def publish_dispatch_progress(
        self, events: Sequence[CloudEvent[PresenceProgressRelayed]]
    ) -> None:
        self.dispatch_progress.extend(events)

    async def publish_auto_assigned(self, events: Sequence[EncodedEvent]) -> None:
        """Kept decoded, as a consumer reads them."""
        self.auto_assigned.extend(
            cast("CloudEvent[ConversationAutoAssigned]", decode(e.to_json_bytes())) for e in events
        )

    async def publish_proposals(self, proposals: Sequence[EncodedEvent]) -> None:
        """Kept decoded, as the owner consumes them."""
        self.proposals.extend(decoded_proposals(proposals))

    async def publish_raw(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: dict[str, str],
        partition: int | None = None,
    ) -> None:
        self.raw.append((topic, value))
