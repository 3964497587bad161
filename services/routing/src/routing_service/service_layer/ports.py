"""Ports of the routing service layer: what the handlers need from storage and the broker."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from inbox_contracts import CloudEvent
from inbox_contracts.events import AgentSweepRequested, PresenceProgressRelayed

from routing_service.domain.audit import NO_ARCHIVE, ArchivedEntries, AuditArchive
from routing_service.domain.model import (
    AuditEntry,
    ConversationEntry,
    ConversationState,
    Decision,
    PresenceEntry,
    SettingChange,
    SettingsHistory,
    Snapshot,
)
from routing_service.domain.values import value

ConversationKey = tuple[str, str]  # (org_id, conversation_id)
AgentKey = tuple[str, str]  # (org_id, agent_id)


@value
class JournalRow:
    org_id: str
    conversation_id: str
    partition: int
    entry: ConversationEntry
    #: The topic it was consumed from (a source topic or its repartition topic).
    topic: str = ""


@value
class DecisionRow:
    partition: int
    decision: Decision
    published: bool = False
    #: Folded into the conversation's snapshot (no longer a fact to load).
    compacted: bool = False


@dataclass(frozen=True)
class SnapshotRow:
    org_id: str
    conversation_id: str
    partition: int
    snapshot: Snapshot

    @property
    def key(self) -> ConversationKey:
        return (self.org_id, self.conversation_id)


@dataclass(frozen=True)
class ArchivedAuditRow:
    """Audit entries a snapshot no longer holds (``domain.audit``)."""

    org_id: str
    conversation_id: str
    archived: ArchivedEntries


@dataclass(frozen=True)
class Compaction:
    """One compaction step, written in this order (each write idempotent, so a crash in
    between only leaves work for the next one): the archived audit entries, the snapshots,
    the take-over copies, the resident set, the decisions marked folded, the folded journal
    entries deleted."""

    snapshots: Sequence[SnapshotRow] = ()
    #: Conversations that became / stopped being resident (NEW and assigned).
    resident: Sequence[SnapshotRow] = ()
    not_resident: Sequence[ConversationKey] = ()
    decisions: Sequence[DecisionRow] = ()
    journal: Sequence[tuple[str, str, str]] = ()
    audit: Sequence[ArchivedAuditRow] = ()
    #: Take-over copies of snapshots (conversations a take-over loads) written / deleted.
    live: Sequence[SnapshotRow] = ()
    not_live: Sequence[ConversationKey] = ()


#: What a view shows, in short (``ConversationView.fingerprint``).
ViewFingerprint = tuple[object, ...]


@value
class ConversationView:
    """The materialised read model of one conversation (what gRPC serves)."""

    partition: int
    state: ConversationState
    #: The most recent audit entries (the first at absolute position ``archive.base``).
    audit: tuple[AuditEntry, ...]
    #: Where the older entries are (``domain.audit``).
    archive: AuditArchive = NO_ARCHIVE

    @property
    def key(self) -> ConversationKey:
        return (self.state.org_id, self.state.conversation_id)

    @property
    def fingerprint(self) -> ViewFingerprint:
        """Changes whenever what the view shows changes: the owner compares it with the one
        of the view it last wrote at every fold. A tuple of what it is made of (no text
        formatting: well under a microsecond, against ~10 us for the text it was)."""
        s = self.state
        return (
            s.queue,
            s.assignee_id,
            s.assignment_id,
            self.archive.base,
            len(self.audit),
            s.updated_at,
        )


@dataclass(frozen=True)
class Page:
    views: list[ConversationView]
    next_token: str


class OwnerStore(Protocol):
    """What the conversation owner reads and writes (one writer per conversation)."""

    async def load_journal(self, partitions: Sequence[int]) -> list[JournalRow]: ...
    async def append_journal(self, rows: Sequence[JournalRow]) -> None:
        """Insert; rows whose event was stored before are ignored (idempotent)."""

    async def load_decisions(self, partitions: Sequence[int]) -> list[DecisionRow]: ...
    async def record_decisions(self, rows: Sequence[DecisionRow]) -> None: ...
    async def mark_published(self, rows: Sequence[DecisionRow]) -> None: ...
    async def load_resident(self, partitions: Sequence[int]) -> list[tuple[ConversationKey, int]]:
        """Conversations whose snapshot is resident (NEW and assigned), with their partition."""

    async def load_snapshots(
        self, keys: Iterable[ConversationKey]
    ) -> dict[ConversationKey, SnapshotRow]:
        """Snapshots of these conversations (exact-``_id`` reads; absent: none yet)."""

    async def load_live_snapshots(self, partitions: Sequence[int]) -> list[SnapshotRow]:
        """The take-over copies of these partitions' snapshots (one query by partition).

        A copy is written after its snapshot (never newer than it); an older one only
        after a crash in between, and then the journal still holds what the newer snapshot
        folded in, so the copy plus the journal tail is still the whole conversation."""

    async def compact(self, step: Compaction) -> None: ...
    async def claim_partitions(self, partitions: Sequence[int], claim: str) -> None:
        """Note that ``claim`` (an instance's take-over) now owns these partitions."""

    async def partition_claims(self, partitions: Sequence[int]) -> dict[int, str]:
        """The latest claim of each partition (absent: never claimed)."""

    async def load_snapshot_filters(self, partitions: Sequence[int]) -> dict[int, bytes]:
        """Per partition, the ``KeyFilter`` of conversations that may have a snapshot."""

    async def write_snapshot_filter(self, partition: int, data: bytes) -> None: ...
    async def timelines(self, agents: Iterable[AgentKey]) -> dict[AgentKey, list[PresenceEntry]]:
        """Sorted presence of each agent (agents never seen are absent)."""

    async def settings(self, org_ids: Iterable[str]) -> dict[str, SettingsHistory]: ...


class ViewStore(Protocol):
    """Where the read model is written (by the owner's view writer)."""

    async def write_views(
        self, views: Sequence[ConversationView], *, new_keys: set[ConversationKey]
    ) -> None: ...


class ViewSink(Protocol):
    """Takes the owner's changed views (written asynchronously in production)."""

    def submit(self, views: Iterable[ConversationView], new_keys: set[ConversationKey]) -> None: ...

    async def drop(self, partitions: set[int]) -> None:
        """Forget pending views of partitions given up (after any write of them in flight)."""

    def pending(self, key: ConversationKey) -> bool:
        """Is a view of this conversation still to be written?"""


class PresenceStore(Protocol):
    """Presence timelines (one writer per agent: the owner of its presence partition)."""

    async def record_presence(self, org_id: str, agent_id: str, entry: PresenceEntry) -> None: ...


class ReadStore(Protocol):
    """What the gRPC API reads and the settings it writes."""

    async def settings(self, org_ids: Iterable[str]) -> dict[str, SettingsHistory]: ...
    async def append_setting(self, org_id: str, change: SettingChange) -> SettingsHistory: ...
    async def get_view(self, org_id: str, conversation_id: str) -> ConversationView | None: ...
    async def audit_segments(
        self, org_id: str, conversation_id: str, firsts: Sequence[int]
    ) -> dict[int, tuple[AuditEntry, ...]]:
        """Archived audit segments by their first position (exact-``_id`` reads; absent:
        expired and deleted)."""

    async def list_views(
        self,
        org_id: str,
        *,
        queue: str | None,
        assignee_id: str | None,
        page_size: int,
        page_token: str,
    ) -> Page: ...


class DecisionPublisher(Protocol):
    async def publish_decisions(self, decisions: Sequence[Decision]) -> None:
        """Publish on inbox.routing.v1 and wait for the broker's acknowledgement."""


Command = CloudEvent[AgentSweepRequested] | CloudEvent[PresenceProgressRelayed]


class CommandPublisher(Protocol):
    async def publish_commands(self, commands: Sequence[Command]) -> None:
        """Publish each command to ``data.partition`` of inbox.routing.commands.v1."""
