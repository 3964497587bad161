"""Automatic assignment (PRODUCT.md §4): the pure dispatcher of one organization.

The dispatcher sees the org through a single ordered stream of inputs (conversation state
changes published by the conversation owners, presence re-keyed by org, settings changes) and
answers each input with the assignment proposals it makes possible. Its decisions are a pure
function of that sequence: replaying the same records from a snapshot re-derives the same
proposals with the same ids, so a crash, a take-over or even a zombie instance can only repeat
a proposal, never make a different one.

Rules:
- a conversation *waits* while it is NEW and unassigned; it waits for the team its channel is
  mapped to (unmapped: the whole org);
- an agent is *eligible* for a team while signed in, Available, a member of the team (any
  agent for the whole org) and holding fewer conversations (NEW + PENDING assigned to them,
  plus proposals not answered yet) than the capacity of that team (org default, per-team
  override, unlimited if neither is set);
- oldest waiting first (``waiting_since``, then conversation id), across teams; among eligible
  agents the fewest held, ties to the oldest last automatic assignment (never assigned first),
  then agent id.

A proposal counts against the agent until the owner answers it (a state change naming it):
accepted, it becomes the assignment; refused, the slot is free at once. A refusal because the
owner saw the agent signed out is applied as a sign-out of that agent as of that time.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from inbox_kit.ids import name_based_id

PROPOSAL_NAMESPACE = uuid.UUID("3d1b6a52-0c55-4f57-8a0c-6f0b2b8e9a41")
ORG_WIDE = ""
"""Team key of conversations on unmapped channels: every agent of the org may take them."""
HOLDING_QUEUES = ("NEW", "PENDING")


class PresenceKind(StrEnum):
    SIGNED_IN = "signed_in"
    SIGNED_OUT = "signed_out"
    AVAILABLE = "available"
    AWAY = "away"


class AssignReason(StrEnum):
    CONVERSATION_WAITING = "conversation_waiting"
    """The conversation started waiting and an eligible agent had room."""
    AGENT_AVAILABLE = "agent_available"
    """An agent became eligible (sign-in, Available, capacity freed or raised, setting on)."""


class Refusal(StrEnum):
    NOT_WAITING = "not_waiting"
    """The conversation had stopped waiting (or started waiting anew) meanwhile."""
    AGENT_SIGNED_OUT = "agent_signed_out"
    """The owner's presence timeline shows the agent signed out."""
    AGENT_AT_CAPACITY = "agent_at_capacity"
    """The owner's conversations held by the agent already reach the capacity (a hand
    assignment the dispatcher had not seen yet)."""


@dataclass(frozen=True)
class AssignmentSettings:
    """The org's "Automatic assignment" settings (off by default)."""

    enabled: bool = False
    default_capacity: int | None = None
    team_capacity: Mapping[str, int] = field(default_factory=dict)
    channel_teams: Mapping[str, str] = field(default_factory=dict)

    def team_of(self, channel_id: str | None) -> str:
        if channel_id is None:
            return ORG_WIDE
        return self.channel_teams.get(channel_id, ORG_WIDE)

    def capacity(self, team: str) -> int | None:
        return self.team_capacity.get(team, self.default_capacity)


@dataclass(frozen=True, slots=True)
class Cause:
    event_id: str
    event_type: str


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationChanged:
    """What the owner of a conversation knows about it now (dispatch-relevant part)."""

    conversation_id: str
    partition: int
    #: Grows with everything the owner knows (events + decisions): older ones are stale.
    version: int
    queue: str
    assignee_id: str | None
    channel_id: str | None
    #: Set while waiting: when the waiting started, and what started it.
    waiting_since: datetime | None
    waiting_cause: str | None
    occurred_at: datetime
    cause: Cause
    #: The proposal this change answers, and why it was refused (None: accepted).
    proposal_id: str | None = None
    refusal: Refusal | None = None
    refused_agent_id: str | None = None
    agent_signed_out_at: datetime | None = None
    #: Waiting, but not to be judged before the presence progress reaches this time (the
    #: presence events up to it may still be on their way to this stream).
    presence_until: datetime | None = None

    @property
    def waiting(self) -> bool:
        return self.queue == "NEW" and self.assignee_id is None and self.waiting_since is not None


@dataclass(frozen=True, slots=True)
class PresenceProgressed:
    """Every presence event with ``occurred_at`` <= ``progress`` is ahead of this input."""

    progress: datetime


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    agent_id: str
    kind: PresenceKind
    occurred_at: datetime
    cause: Cause
    teams: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    settings: AssignmentSettings
    occurred_at: datetime
    cause: Cause


DispatchInput = ConversationChanged | PresenceChanged | SettingsChanged | PresenceProgressed


# -- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    proposal_id: str
    org_id: str
    conversation_id: str
    partition: int
    agent_id: str
    #: The waiting period it is for: the owner accepts only while that very period lasts,
    #: on the channel it was judged for (the team follows the channel).
    waiting_cause: str
    channel_id: str | None
    team: str
    waiting_since: datetime
    reason: AssignReason
    cause: Cause
    occurred_at: datetime
    #: The capacity applied (None: unlimited): the owner checks it against what it holds.
    capacity: int | None = None


def proposal_id(
    org_id: str, conversation_id: str, waiting_cause: str, agent_id: str, seq: int
) -> str:
    """Unique per proposal (``seq``: the dispatcher's input count, the same on a replay): an
    answer to an earlier proposal must never be taken for the answer to a later one."""
    return name_based_id(
        PROPOSAL_NAMESPACE, f"{org_id}|{conversation_id}|{waiting_cause}|{agent_id}|{seq}"
    )


# -- state -----------------------------------------------------------------------------------


@dataclass(slots=True)
class AgentSlot:
    agent_id: str
    signed_in: bool = False
    #: (occurred_at, event id) of the sign-in/out and availability applied: later ones win.
    session_key: tuple[datetime, str] | None = None
    available: bool = True
    availability_key: tuple[datetime, str] | None = None
    teams: frozenset[str] = frozenset()
    #: Input sequence number of the last automatic assignment (0: never).
    last_auto: int = 0
    #: What last made the agent eligible (the cause of an AGENT_AVAILABLE proposal).
    became_eligible: tuple[int, Cause] | None = None

    def present(self) -> bool:
        return self.signed_in and self.available

    def in_team(self, team: str) -> bool:
        return team == ORG_WIDE or team in self.teams


@dataclass(slots=True)
class ConversationSlot:
    conversation_id: str
    partition: int
    version: int
    queue: str
    assignee_id: str | None
    channel_id: str | None
    waiting_since: datetime | None
    waiting_cause: str | None
    #: (input sequence, cause) of the input that made it wait.
    started_waiting: tuple[int, Cause] | None = None
    pending: Proposal | None = None
    #: Not judged before the presence progress reaches it (see ``ConversationChanged``).
    presence_until: datetime | None = None

    @property
    def waiting(self) -> bool:
        return self.queue == "NEW" and self.assignee_id is None and self.waiting_since is not None

    def holder(self) -> str | None:
        """The agent this conversation counts against."""
        if self.pending is not None:
            return self.pending.agent_id
        if self.assignee_id is not None and self.queue in HOLDING_QUEUES:
            return self.assignee_id
        return None


@dataclass(frozen=True, slots=True)
class WaitReason:
    """Why a conversation waits: counts over the agents that could have taken it."""

    team: str
    at_capacity: int = 0
    away: int = 0
    signed_out: int = 0
    proposed: bool = False
    disabled: bool = False

    def describe(self) -> str:
        if self.disabled:
            return "automatic assignment is off"
        if self.proposed:
            return "proposed to an agent, awaiting confirmation"
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.at_capacity, "at capacity"),
                (self.away, "away"),
                (self.signed_out, "signed out"),
            )
            if n
        ]
        return "no eligible agent: " + (", ".join(parts) if parts else "no agent in the team")


class OrgDispatcher:
    """The dispatcher of one org: apply inputs in stream order, each returns its proposals."""

    def __init__(self, org_id: str) -> None:
        self.org_id = org_id
        self.settings = AssignmentSettings()
        self.settings_key: tuple[datetime, str] | None = None
        self.agents: dict[str, AgentSlot] = {}
        self.conversations: dict[str, ConversationSlot] = {}
        #: Conversations forgotten (neither waiting nor held) -> their last version.
        self.retired: dict[str, int] = {}
        self.load: dict[str, int] = {}
        #: team -> heap of (waiting_since, conversation id) (lazy: re-checked when popped)
        self._queues: dict[str, list[tuple[datetime, str]]] = {}
        #: team -> heap of (held, last automatic assignment, agent id) of present members
        #: (lazy: an entry is stale once the agent's rank changed)
        self._ranked: dict[str, list[tuple[int, int, str]]] = {}
        #: Teams whose head may have become assignable since the last dispatch (a conversation
        #: queued, an agent's rank or presence changed, the settings changed); every other
        #: team ended that dispatch empty or without an agent with room, and still is.
        self._dirty: set[str] = set()
        self.seq = 0
        self.clock: datetime | None = None
        #: How far the presence events ahead in the stream are complete (None: unknown).
        self.presence: datetime | None = None
        #: Waiting conversations held until ``presence`` reaches their ``presence_until``.
        self._held: set[str] = set()

    @property
    def holding(self) -> bool:
        return bool(self._held)

    # -- inputs ------------------------------------------------------------------------------

    def apply(self, event: DispatchInput) -> list[Proposal]:
        self.seq += 1
        if isinstance(event, PresenceProgressed):
            self._progressed(event.progress)
            return self._dispatch()
        if self.clock is None or event.occurred_at > self.clock:
            self.clock = event.occurred_at
        if isinstance(event, ConversationChanged):
            self._conversation(event)
        elif isinstance(event, PresenceChanged):
            self._presence(event.agent_id, event.kind, event.occurred_at, event.cause, event.teams)
        else:
            self._settings(event)
        return self._dispatch()

    def _conversation(self, e: ConversationChanged) -> None:
        slot = self.conversations.get(e.conversation_id)
        if (
            slot is not None
            and slot.pending is not None
            and e.proposal_id == slot.pending.proposal_id
        ):
            self._set_pending(slot, None, e.cause)
        if e.refusal is Refusal.AGENT_SIGNED_OUT and e.refused_agent_id and e.agent_signed_out_at:
            self._presence(
                e.refused_agent_id, PresenceKind.SIGNED_OUT, e.agent_signed_out_at, e.cause
            )
        known = slot.version if slot is not None else self.retired.get(e.conversation_id)
        if known is not None and e.version < known:
            return  # stale: the owner has told us something newer already
        was_waiting = slot is not None and slot.waiting
        before = (
            (slot.waiting_cause, slot.waiting_since, slot.channel_id) if slot is not None else None
        )
        holder = slot.holder() if slot is not None else None
        if slot is None:
            slot = ConversationSlot(
                e.conversation_id,
                e.partition,
                e.version,
                e.queue,
                e.assignee_id,
                e.channel_id,
                e.waiting_since,
                e.waiting_cause,
            )
            self.conversations[e.conversation_id] = slot
            self.retired.pop(e.conversation_id, None)
        else:
            slot.partition = e.partition
            slot.version = e.version
            slot.queue = e.queue
            slot.assignee_id = e.assignee_id
            slot.channel_id = e.channel_id
            slot.waiting_since = e.waiting_since
            slot.waiting_cause = e.waiting_cause
        slot.presence_until = e.presence_until if slot.waiting else None
        if self._holds(slot):
            self._held.add(slot.conversation_id)
        self._moved(holder, slot.holder(), e.cause)
        if slot.pending is not None and not _still_for(slot, slot.pending):
            # that waiting period is over: the owner can only refuse the proposal now
            self._set_pending(slot, None, e.cause)
        if slot.waiting and (
            not was_waiting or before != (slot.waiting_cause, slot.waiting_since, slot.channel_id)
        ):
            if not was_waiting or before is None or before[0] != slot.waiting_cause:
                slot.started_waiting = (self.seq, e.cause)
            self._enqueue(slot)
        elif not slot.waiting and slot.holder() is None:
            # nothing about it matters to assignment any more; remember only its version
            del self.conversations[slot.conversation_id]
            self.retired[slot.conversation_id] = slot.version
            self._held.discard(slot.conversation_id)

    def note_presence(self, progress: datetime) -> None:
        """Presence progress while nothing is held (nothing to judge: not an input)."""
        assert not self._held
        if self.presence is None or progress > self.presence:
            self.presence = progress

    def _holds(self, slot: ConversationSlot) -> bool:
        """Waiting for presence progress (not judged yet)."""
        until = slot.presence_until
        return until is not None and (self.presence is None or self.presence < until)

    def _progressed(self, progress: datetime) -> None:
        if self.presence is not None and progress <= self.presence:
            return
        self.presence = progress
        for cid in list(self._held):
            slot = self.conversations.get(cid)
            if slot is None or not slot.waiting:
                self._held.discard(cid)
            elif not self._holds(slot):
                self._held.discard(cid)
                self._enqueue(slot)

    def _presence(
        self,
        agent_id: str,
        kind: PresenceKind,
        at: datetime,
        cause: Cause,
        teams: frozenset[str] = frozenset(),
    ) -> None:
        a = self.agents.get(agent_id)
        if a is None:
            a = self.agents[agent_id] = AgentSlot(agent_id)
        key = (at, cause.event_id)
        before = a.present()
        if kind in (PresenceKind.SIGNED_IN, PresenceKind.SIGNED_OUT):
            if a.session_key is not None and key <= a.session_key:
                return
            a.session_key = key
            a.signed_in = kind is PresenceKind.SIGNED_IN
            if a.signed_in:
                a.teams = teams
        else:
            if a.availability_key is not None and key <= a.availability_key:
                return
            a.availability_key = key
            a.available = kind is PresenceKind.AVAILABLE
        if a.present() and (not before or kind is PresenceKind.SIGNED_IN):
            a.became_eligible = (self.seq, cause)
        self._touch(agent_id)

    def _settings(self, e: SettingsChanged) -> None:
        key = (e.occurred_at, e.cause.event_id)
        if self.settings_key is not None and key <= self.settings_key:
            return
        old = self.settings
        self.settings_key = key
        self.settings = e.settings
        if old.channel_teams != e.settings.channel_teams:
            self._queues.clear()
            for slot in self.conversations.values():
                if slot.waiting:
                    self._enqueue(slot)
        for a in self.agents.values():
            if a.present():
                a.became_eligible = (self.seq, e.cause)
        # capacities (or the setting itself) may have changed for any team
        self._dirty.update(self._queues)

    def _moved(self, before: str | None, after: str | None, cause: Cause) -> None:
        if before == after:
            return
        if before is not None:
            self.load[before] -= 1
            a = self.agents.get(before)
            if a is not None and a.present():
                a.became_eligible = (self.seq, cause)
            self._touch(before)
        if after is not None:
            self.load[after] = self.load.get(after, 0) + 1
            self._touch(after)

    def _touch(self, agent_id: str) -> None:
        """The agent's rank changed: index it again (older index entries go stale)."""
        a = self.agents.get(agent_id)
        if a is None or not a.present():
            return
        key = (self.held(agent_id), a.last_auto, agent_id)
        for team in (ORG_WIDE, *a.teams):
            self._dirty.add(team)
            heap = self._ranked.get(team)
            if heap is None:
                continue  # indexed in full when first needed
            heapq.heappush(heap, key)
            if len(heap) > 4 * len(self.agents) + 64:
                self._reindex(team)

    def _reindex(self, team: str) -> None:
        self._ranked[team] = [
            (self.held(a.agent_id), a.last_auto, a.agent_id)
            for a in self.agents.values()
            if a.present() and a.in_team(team)
        ]
        heapq.heapify(self._ranked[team])

    def _set_pending(self, slot: ConversationSlot, proposal: Proposal | None, cause: Cause) -> None:
        holder = slot.holder()
        slot.pending = proposal
        self._moved(holder, slot.holder(), cause)
        if proposal is None and slot.waiting:
            self._enqueue(slot)

    def _enqueue(self, slot: ConversationSlot) -> None:
        assert slot.waiting_since is not None
        team = self.settings.team_of(slot.channel_id)
        heapq.heappush(
            self._queues.setdefault(team, []), (slot.waiting_since, slot.conversation_id)
        )
        self._dirty.add(team)

    # -- decisions ---------------------------------------------------------------------------

    def _queued(self, conversation_id: str, team: str) -> ConversationSlot | None:
        slot = self.conversations.get(conversation_id)
        if (
            slot is None
            or not slot.waiting
            or slot.pending is not None
            or self.settings.team_of(slot.channel_id) != team
            or self._holds(slot)
        ):
            return None
        return slot

    def held(self, agent_id: str) -> int:
        return self.load.get(agent_id, 0)

    def has_room(self, a: AgentSlot, team: str) -> bool:
        cap = self.settings.capacity(team)
        return cap is None or self.held(a.agent_id) < cap

    def best_agent(self, team: str) -> AgentSlot | None:
        """The eligible agent with the fewest held, then the oldest last automatic
        assignment, then the id. Agents are ranked in a heap per team (stale entries dropped
        as they surface); all of a team's agents share its capacity, so if the best ranked
        has no room, nobody has."""
        if team not in self._ranked:
            self._reindex(team)
        heap = self._ranked[team]
        while heap:
            held, last, agent_id = heap[0]
            a = self.agents.get(agent_id)
            if (
                a is None
                or not a.present()
                or not a.in_team(team)
                or self.held(agent_id) != held
                or a.last_auto != last
            ):
                heapq.heappop(heap)
                continue
            cap = self.settings.capacity(team)
            return a if cap is None or held < cap else None
        return None

    def _dispatch(self) -> list[Proposal]:
        if not self.settings.enabled or not self._dirty:
            return []  # (when off, the marks wait: turning it on marks every team anyway)
        out: list[Proposal] = []
        heads: list[tuple[datetime, str, str]] = []
        dirty, self._dirty = self._dirty, set()
        for team in dirty:
            if team not in self._queues:
                continue
            head = self._head(team)
            if head is not None:
                heads.append((*head, team))
        heapq.heapify(heads)
        while heads:
            since, cid, team = heapq.heappop(heads)
            head = self._head(team)
            if head is None:
                continue
            if head != (since, cid):
                heapq.heappush(heads, (*head, team))
                continue
            agent = self.best_agent(team)
            if agent is None:
                continue  # no one in this team has room: its later conversations wait too
            heapq.heappop(self._queues[team])
            out.append(self._propose(self.conversations[cid], agent, team))
            nxt = self._head(team)
            if nxt is not None:
                heapq.heappush(heads, (*nxt, team))
        # a proposal only takes room (it touches its agent, marking the agent's teams): what
        # this pass left blocked stays blocked until another change marks it
        self._dirty.clear()
        return out

    def _head(self, team: str) -> tuple[datetime, str] | None:
        """The oldest conversation waiting for ``team`` (dropping stale heap entries)."""
        queue = self._queues[team]
        while queue:
            since, cid = queue[0]
            slot = self._queued(cid, team)
            if slot is not None and slot.waiting_since == since:
                return since, cid
            heapq.heappop(queue)
        return None

    def _propose(self, slot: ConversationSlot, agent: AgentSlot, team: str) -> Proposal:
        assert slot.waiting_cause is not None and slot.started_waiting is not None
        assert slot.waiting_since is not None
        assert self.clock is not None
        conv_seq, conv_cause = slot.started_waiting
        if agent.became_eligible is not None and agent.became_eligible[0] > conv_seq:
            reason, cause = AssignReason.AGENT_AVAILABLE, agent.became_eligible[1]
        else:
            reason, cause = AssignReason.CONVERSATION_WAITING, conv_cause
        p = Proposal(
            proposal_id(
                self.org_id, slot.conversation_id, slot.waiting_cause, agent.agent_id, self.seq
            ),
            self.org_id,
            slot.conversation_id,
            slot.partition,
            agent.agent_id,
            slot.waiting_cause,
            slot.channel_id,
            team,
            slot.waiting_since,
            reason,
            cause,
            self.clock,
            self.settings.capacity(team),
        )
        agent.last_auto = self.seq
        self._set_pending(slot, p, cause)
        self._touch(agent.agent_id)
        return p

    # -- reads -------------------------------------------------------------------------------

    def waiting(self, limit: int | None = None) -> list[tuple[ConversationSlot, WaitReason]]:
        """Waiting conversations, oldest first, each with why it waits."""
        return self.waiting_and_total(limit)[0]

    def waiting_and_total(
        self, limit: int | None = None
    ) -> tuple[list[tuple[ConversationSlot, WaitReason]], int]:
        """``waiting(limit)`` and how many conversations wait in all (one pass over them)."""
        candidates = [s for s in self.conversations.values() if s.waiting]
        order = _waiting_order
        slots = (
            sorted(candidates, key=order)
            if limit is None
            else heapq.nsmallest(limit, candidates, key=order)
        )
        by_team: dict[str, WaitReason] = {}
        out = []
        for s in slots:
            team = self.settings.team_of(s.channel_id)
            if s.pending is not None:
                out.append((s, self.wait_reason(s)))
                continue
            if team not in by_team:
                by_team[team] = self.wait_reason(s)
            out.append((s, by_team[team]))
        return out, len(candidates)

    def wait_reason(self, slot: ConversationSlot) -> WaitReason:
        team = self.settings.team_of(slot.channel_id)
        if not self.settings.enabled:
            return WaitReason(team, disabled=True)
        if slot.pending is not None:
            return WaitReason(team, proposed=True)
        full = away = out = 0
        for a in self.agents.values():
            if not a.in_team(team):
                continue
            if not a.signed_in:
                out += 1
            elif not a.available:
                away += 1
            elif not self.has_room(a, team):
                full += 1
        return WaitReason(team, at_capacity=full, away=away, signed_out=out)

    def snapshot_state(self) -> OrgDispatcher:
        """A deep copy (tests: a crash keeps only what a snapshot kept)."""
        copy = OrgDispatcher(self.org_id)
        copy.settings = self.settings
        copy.settings_key = self.settings_key
        copy.agents = {k: replace(v) for k, v in self.agents.items()}
        copy.conversations = {k: replace(v) for k, v in self.conversations.items()}
        copy.retired = dict(self.retired)
        copy.load = dict(self.load)
        copy.seq = self.seq
        copy.clock = self.clock
        copy.presence = self.presence
        copy.rebuild_queues()
        return copy

    def rebuild_queues(self) -> None:
        """Rebuild the indexes (queues, agent ranking) from the state (after a restore)."""
        self._ranked.clear()
        self._queues.clear()
        self._held.clear()
        self._dirty.clear()
        for slot in self.conversations.values():
            if slot.waiting:
                self._enqueue(slot)
                if self._holds(slot):
                    self._held.add(slot.conversation_id)


def _waiting_order(slot: ConversationSlot) -> tuple[datetime, str]:
    assert slot.waiting_since is not None  # a waiting slot has one
    return slot.waiting_since, slot.conversation_id


def _still_for(slot: ConversationSlot, p: Proposal) -> bool:
    return (
        slot.waiting and slot.waiting_cause == p.waiting_cause and slot.channel_id == p.channel_id
    )


def holders(conversations: Iterable[ConversationSlot]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in conversations:
        h = s.holder()
        if h is not None:
            out[h] = out.get(h, 0) + 1
    return out
