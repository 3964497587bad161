"""Property test of automatic assignment (PRODUCT.md §4): the whole loop, simulated.

Random agents (teams, capacities), conversations on channels mapped to teams, sign-ins/outs,
availability flips, inbound/outbound/follow-ups, resolves, manual assign/unassign, the
setting toggled; every hop delivered in a random interleaving: presence events reach routing
late (per agent in order), conversation events reach their owner late (per conversation in
order), the dispatcher consumes its input stream at random speed, proposals reach the owner
late; duplicates of state changes and proposals; dispatcher snapshots and crashes (restore the
last snapshot, replay its input from there).

The owner side is the real fold (``domain.model.fold``) plus the real review
(``domain.auto_assign``); the dispatcher is the real ``OrgDispatcher``; the reference is
``ReferenceDispatcher``, fed the same input stream.

At every step: a proposal is only ever accepted while the conversation waits in that very
period (never two assignees, never a conversation that stopped waiting), to a signed-in agent
of the conversation's team, below the agent's capacity counting everything they hold (hand
assignments the dispatcher had not seen yet included: the owner refuses those proposals,
``agent_at_capacity``); the dispatcher's
proposals at each position of its input equal the reference's, and a replay re-derives the
same ones. After quiescence: no proposal outstanding, the dispatcher's view equals the
owner's, and no conversation waits while an eligible agent of its team has room.

``ROUTING_PROPERTY_EXAMPLES`` sets the number of examples (default 300; 5,000 locally).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from routing_service.adapters.dispatch_store import EncodedRecords, orgs_from
from routing_service.domain.auto_assign import (
    DispatchView,
    auto_assignment,
    channel_of,
    dispatch_view,
    latest_event_time,
    review,
    signed_out_at,
)
from routing_service.domain.dispatch import (
    ORG_WIDE,
    AssignmentSettings,
    Cause,
    ConversationChanged,
    DispatchInput,
    OrgDispatcher,
    PresenceChanged,
    PresenceKind,
    PresenceProgressed,
    Proposal,
    Refusal,
    SettingsChanged,
)
from routing_service.domain.model import (
    ConversationEntry,
    ConversationLog,
    EntryKind,
    PresenceEntry,
    SettingChange,
    SettingsHistory,
    agents_of,
    fold,
)
from routing_testing.dispatch_reference import ReferenceDispatcher

ORG = "org-d"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
FINAL = datetime.max.replace(tzinfo=UTC)
AGENTS = ("ana", "bob", "cem", "dia")
CONVS = ("c1", "c2", "c3", "c4", "c5", "c6")
CHANNELS = ("ch-billing", "ch-sales", "ch-other")
CHANNEL_TEAMS = {"ch-billing": "billing", "ch-sales": "sales"}
TEAMS = ("billing", "sales")

presence_op = st.tuples(
    st.sampled_from(["sign_in", "sign_in", "sign_out", "away", "available", "available"]),
    st.sampled_from(AGENTS),
)
world_op = st.one_of(
    presence_op,
    presence_op,
    st.tuples(
        st.sampled_from(
            ["inbound", "inbound", "inbound", "outbound", "resolve", "unassign", "follow_up"]
        ),
        st.sampled_from(CONVS),
    ),
    st.tuples(st.just("inbound"), st.sampled_from(CONVS)),
    st.tuples(st.just("assign"), st.tuples(st.sampled_from(CONVS), st.sampled_from(AGENTS))),
)
delivery_op = st.one_of(
    st.tuples(st.just("deliver_presence"), st.sampled_from(AGENTS)),
    st.tuples(st.sampled_from(["deliver_conv", "deliver_proposal"]), st.sampled_from(CONVS)),
    st.tuples(st.just("dispatch"), st.integers(1, 6)),
    st.tuples(st.sampled_from(["snapshot", "crash"]), st.none()),
    st.tuples(st.sampled_from(["dup_state", "dup_proposal"]), st.sampled_from(CONVS)),
    st.tuples(st.just("progress"), st.none()),
)
#: the setting toggled now and then, more often to on
toggle_op = st.tuples(st.just("enable"), st.sampled_from([True, True, False]))
op = st.one_of(world_op, world_op, world_op, delivery_op, delivery_op, toggle_op)


@dataclass
class Scenario:
    teams: dict[str, frozenset[str]]
    channels: dict[str, str]
    default_capacity: int | None
    team_capacity: dict[str, int]
    remove_assignment: bool
    enabled: bool
    #: routing instances the conversations are spread over (each owner counts only its own)
    instances: int
    #: the owner marks waiting states ``presence_until`` (presence not known final yet)
    holds: bool


scenario = st.builds(
    Scenario,
    teams=st.fixed_dictionaries(
        {
            a: st.sampled_from(
                [frozenset(TEAMS), frozenset({"billing"}), frozenset({"sales"}), frozenset()]
            )
            for a in AGENTS
        }
    ),
    channels=st.fixed_dictionaries({c: st.sampled_from(CHANNELS) for c in CONVS}),
    default_capacity=st.one_of(st.none(), st.integers(1, 3)),
    team_capacity=st.dictionaries(st.sampled_from(TEAMS), st.integers(1, 3), max_size=2),
    remove_assignment=st.booleans(),
    enabled=st.sampled_from([True, True, True, False]),
    instances=st.sampled_from([1, 1, 2]),
    holds=st.booleans(),
)


@dataclass
class Owner:
    """The owner side: real fold + real review, one writer per conversation; with two
    instances the conversations are split between them and each reviews with what it owns."""

    remove_assignment: SettingsHistory
    instances: int = 1
    holds: bool = False
    logs: dict[str, ConversationLog] = field(default_factory=dict)
    timelines: dict[str, list[PresenceEntry]] = field(default_factory=dict)
    published: dict[str, DispatchView] = field(default_factory=dict)
    #: conversation -> (queue, assignee) per the fold, for the truth checks
    truth: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    accepted: list[Proposal] = field(default_factory=list)

    def refold(self, cid: str) -> DispatchView:
        lg = self.logs[cid]
        agents = agents_of(lg.entries.values(), lg.facts.values())
        result = fold(
            ORG,
            cid,
            lg.entries.values(),
            timelines={
                a: sorted(self.timelines.get(a, []), key=lambda p: p.sort_key) for a in agents
            },
            settings=self.remove_assignment,
            facts=lg.facts.values(),
            final_until=FINAL,  # everything delivered is final here (event time: issue 14)
        )
        for d in result.new_decisions:
            lg.facts[d.decision_id] = d
        s = result.state
        self.truth[cid] = (s.queue.value if s.queue else "NEW", s.assignee_id)
        return dispatch_view(lg, result)

    def change(
        self,
        cid: str,
        view: DispatchView,
        cause: Cause,
        at: datetime,
        *,
        proposal: Proposal | None = None,
        refusal: Refusal | None = None,
        out_at: datetime | None = None,
    ) -> ConversationChanged:
        self.published[cid] = view
        return ConversationChanged(
            cid,
            0,
            view.version,
            view.queue,
            view.assignee_id,
            view.channel_id,
            view.waiting_since,
            view.waiting_cause,
            at,
            cause,
            proposal.proposal_id if proposal else None,
            refusal,
            proposal.agent_id if proposal and refusal else None,
            out_at,
            at if self.holds and view.waiting else None,
        )

    def handle_entry(
        self, cid: str, entry: ConversationEntry, at: datetime
    ) -> list[ConversationChanged]:
        lg = self.logs.setdefault(cid, ConversationLog(ORG, cid, 0))
        lg.add(entry)
        view = self.refold(cid)
        if view.same_state(self.published.get(cid)):
            return []
        return [self.change(cid, view, Cause(entry.event_id, entry.event_type), at)]

    def sweep(self, agent: str, cause: Cause, at: datetime) -> list[ConversationChanged]:
        out = []
        for cid, lg in self.logs.items():
            if agent in agents_of(lg.entries.values(), lg.facts.values()):
                view = self.refold(cid)
                if not view.same_state(self.published.get(cid)):
                    out.append(self.change(cid, view, cause, at))
        return out

    def held(self, agent: str) -> int:
        return len(self.holding(agent))

    def holding(self, agent: str) -> set[str]:
        return {c for c, (q, a) in self.truth.items() if a == agent and q in ("NEW", "PENDING")}

    def instance_of(self, cid: str) -> int:
        return CONVS.index(cid) * self.instances // len(CONVS)

    def held_here(self, agent: str, cid: str) -> int:
        """What the instance owning ``cid`` counts: the agent's conversations it owns."""
        return sum(1 for c in self.holding(agent) if self.instance_of(c) == self.instance_of(cid))

    def handle_proposal(
        self, p: Proposal, at: datetime, sc: Scenario, counted: frozenset[str]
    ) -> ConversationChanged:
        """``counted``: the conversations the dispatcher counted against the agent when it
        made the proposal (besides this one)."""
        lg = self.logs[p.conversation_id]
        cause = Cause(p.proposal_id, "proposal")
        if p.proposal_id in lg.entries:  # a duplicate of one accepted before
            view = self.refold(p.conversation_id)
            return self.change(p.conversation_id, view, cause, at, proposal=p)
        view = self.refold(p.conversation_id)
        out = signed_out_at(self.timelines.get(p.agent_id, []))
        refusal = review(
            view=view,
            waiting_cause=p.waiting_cause,
            channel_id=p.channel_id,
            agent_signed_out_at=out,
            agent_held=self.held_here(p.agent_id, p.conversation_id),
            capacity=p.capacity,
        )
        if refusal is Refusal.AGENT_AT_CAPACITY:
            event("refused: at capacity (a hand assignment the dispatcher had not seen)")
        if refusal is not None:
            return self.change(
                p.conversation_id, view, cause, at, proposal=p, refusal=refusal, out_at=out
            )
        # -- the truth checks of an accepted proposal --
        assert self.truth[p.conversation_id] == ("NEW", None), "assigned while not waiting"
        team = self.team(p.conversation_id)
        assert team == ORG_WIDE or team in sc.teams[p.agent_id], "outside the team"
        assert p.capacity == sc.team_capacity.get(p.team, sc.default_capacity)
        if p.capacity is not None and self.instances == 1:
            # below the capacity counting everything the agent holds, hand assignments the
            # dispatcher had not seen included (one instance: it owns all of them)
            assert self.held(p.agent_id) < p.capacity, "over capacity"
        elif p.capacity is not None:
            # several instances (README "Limits"): above the capacity by at most what the
            # agent holds that the dispatcher had not counted when it proposed (assignments
            # by hand it had not consumed yet), never more
            unseen = self.holding(p.agent_id) - counted
            assert self.held(p.agent_id) + 1 <= p.capacity + len(unseen), "beyond the bound"
            if self.held(p.agent_id) + 1 > p.capacity:
                event("several instances: over capacity within the bound")
        entry = auto_assignment(
            proposal_id=p.proposal_id,
            agent_id=p.agent_id,
            reason=p.reason.value,
            cause_event_id=p.cause.event_id,
            cause_event_type=p.cause.event_type,
            proposed_at=p.occurred_at,
            known=[
                latest_event_time(lg),
                *(p.occurred_at for p in self.timelines.get(p.agent_id, [])),
            ],
        )
        lg.add(entry)
        self.accepted.append(p)
        view = self.refold(p.conversation_id)
        assert self.truth[p.conversation_id][1] == p.agent_id
        return self.change(p.conversation_id, view, cause, at, proposal=p)

    def team(self, cid: str) -> str:
        channel = channel_of(list(self.logs[cid].entries.values()))
        return CHANNEL_TEAMS.get(channel or "", ORG_WIDE)


@dataclass
class Sim:
    sc: Scenario
    owner: Owner
    log: list[DispatchInput] = field(default_factory=list)
    cursor: int = 0
    dispatcher: OrgDispatcher = field(default_factory=lambda: OrgDispatcher(ORG))
    snapshot: tuple[OrgDispatcher, int] | None = None
    #: the store's snapshot encoding, reused across snapshots as the store reuses it
    encoder: EncodedRecords = field(default_factory=EncodedRecords)
    reference: ReferenceDispatcher = field(default_factory=lambda: ReferenceDispatcher(ORG))
    #: proposals made at each input position (first time), to check replays re-derive them
    made_at: dict[int, list[tuple[str, str, str]]] = field(default_factory=dict)
    presence_q: dict[str, list[tuple[PresenceKind, datetime, str]]] = field(default_factory=dict)
    conv_q: dict[str, list[ConversationEntry]] = field(default_factory=dict)
    proposal_q: dict[str, list[Proposal]] = field(default_factory=dict)
    sent: dict[str, list[Proposal]] = field(default_factory=dict)
    #: proposal id -> what the dispatcher counted against the agent when it first made it
    counted: dict[str, frozenset[str]] = field(default_factory=dict)
    availability: dict[str, bool] = field(default_factory=dict)
    now: datetime = T0
    n: int = 0

    def tick(self) -> datetime:
        self.n += 1
        self.now = T0 + timedelta(seconds=self.n)
        return self.now

    # -- world --
    def world(self, kind: str, arg: object) -> None:
        at = self.tick()
        eid = f"e{self.n:04d}"
        if kind in ("sign_in", "sign_out", "away", "available"):
            self.presence_q.setdefault(str(arg), []).append(
                (
                    PresenceKind(
                        kind.replace("sign_in", "signed_in").replace("sign_out", "signed_out")
                    ),
                    at,
                    eid,
                )
            )
            return
        if kind == "enable":
            self.log.append(self.settings_input(bool(arg), at, eid))
            return
        if kind == "assign":
            cid, agent = arg  # type: ignore[misc]
            e = ConversationEntry(eid, "assigned", EntryKind.ASSIGNED, at, "boss", agent)
        else:
            cid = str(arg)
            ekind = {
                "inbound": EntryKind.INBOUND,
                "outbound": EntryKind.OUTBOUND,
                "resolve": EntryKind.RESOLVED,
                "unassign": EntryKind.UNASSIGNED,
                "follow_up": EntryKind.FOLLOW_UP,
            }[kind]
            channel = (
                self.sc.channels[cid] if ekind in (EntryKind.INBOUND, EntryKind.OUTBOUND) else None
            )
            e = ConversationEntry(eid, kind, ekind, at, "someone", channel_id=channel)
        self.conv_q.setdefault(cid, []).append(e)

    def settings_input(self, enabled: bool, at: datetime, eid: str) -> SettingsChanged:
        return SettingsChanged(
            AssignmentSettings(
                enabled, self.sc.default_capacity, dict(self.sc.team_capacity), dict(CHANNEL_TEAMS)
            ),
            at,
            Cause(eid, "settings"),
        )

    # -- deliveries --
    def deliver_presence(self, agent: str) -> None:
        q = self.presence_q.get(agent)
        if not q:
            return
        kind, at, eid = q.pop(0)
        cause = Cause(eid, kind.value)
        if kind in (PresenceKind.SIGNED_IN, PresenceKind.SIGNED_OUT):
            self.owner.timelines.setdefault(agent, []).append(
                PresenceEntry(eid, kind.value, at, kind is PresenceKind.SIGNED_IN)
            )
        else:
            self.availability[agent] = kind is PresenceKind.AVAILABLE
        teams = self.sc.teams[agent] if kind is PresenceKind.SIGNED_IN else frozenset()
        self.log.append(PresenceChanged(agent, kind, at, cause, teams))
        if kind is PresenceKind.SIGNED_OUT:
            self.log.extend(self.owner.sweep(agent, cause, self.tick()))

    def deliver_conv(self, cid: str) -> None:
        q = self.conv_q.get(cid)
        if q:
            self.log.extend(self.owner.handle_entry(cid, q.pop(0), self.tick()))

    def deliver_proposal(self, cid: str) -> None:
        q = self.proposal_q.get(cid)
        if q:
            p = q.pop(0)
            counted = self.counted[p.proposal_id]
            self.log.append(self.owner.handle_proposal(p, self.tick(), self.sc, counted))

    def dispatch(self, n: int) -> None:
        for _ in range(n):
            if self.cursor >= len(self.log):
                return
            event = self.log[self.cursor]
            proposals = self.dispatcher.apply(event)
            got = [(p.proposal_id, p.conversation_id, p.agent_id) for p in proposals]
            if self.cursor in self.made_at:
                assert got == self.made_at[self.cursor], "a replay derived other proposals"
            else:
                ref = self.reference.apply(event)
                assert got == [(r.proposal_id, r.conversation_id, r.agent_id) for r in ref]
                self.made_at[self.cursor] = got
                self.check_dispatcher(proposals)
            for i, p in enumerate(proposals):
                # what it held for the agent once this event was applied, less the proposals
                # it made after this one (a later proposal was not counted when this was made)
                later = {q.conversation_id for q in proposals[i + 1 :]}
                self.counted.setdefault(
                    p.proposal_id,
                    frozenset(
                        c
                        for c, slot in self.dispatcher.conversations.items()
                        if slot.holder() == p.agent_id and c != p.conversation_id and c not in later
                    ),
                )
                self.proposal_q.setdefault(p.conversation_id, []).append(p)
                self.sent.setdefault(p.conversation_id, []).append(p)
            self.cursor += 1

    def check_dispatcher(self, proposals: list[Proposal]) -> None:
        d = self.dispatcher
        for p in proposals:
            a = d.agents[p.agent_id]
            team = d.settings.team_of(p.channel_id)
            assert a.signed_in and a.available and a.in_team(team)
            cap = d.settings.capacity(team)
            later = sum(1 for q in proposals[proposals.index(p) + 1 :] if q.agent_id == p.agent_id)
            assert cap is None or d.held(p.agent_id) - later <= cap

    def stored(self) -> OrgDispatcher:
        """The dispatcher as a stored snapshot restores it (the store's encoding, its text
        of unchanged conversations reused, decoded as a take-over decodes it)."""
        texts = self.encoder.encode(0, [self.dispatcher])
        [restored] = orgs_from([json.loads(t) for t in texts]).values()
        restored.presence = self.dispatcher.presence  # the partition's record, in the store
        restored.rebuild_queues()
        return restored

    def crash(self) -> None:
        if self.snapshot is None:
            self.dispatcher, self.cursor = OrgDispatcher(ORG), 0
        else:
            self.dispatcher, self.cursor = self.snapshot[0].snapshot_state(), self.snapshot[1]

    def step(self, kind: str, arg: object) -> None:
        if kind == "deliver_presence":
            self.deliver_presence(str(arg))
        elif kind == "deliver_conv":
            self.deliver_conv(str(arg))
        elif kind == "deliver_proposal":
            self.deliver_proposal(str(arg))
        elif kind == "dispatch":
            self.dispatch(int(arg))  # type: ignore[call-overload]
        elif kind == "snapshot":
            self.snapshot = (self.stored(), self.cursor)
        elif kind == "crash":
            self.crash()
        elif kind == "progress":
            self.log.append(PresenceProgressed(self.presence_progress()))
        elif kind == "dup_state":
            mine = [
                e
                for e in self.log
                if isinstance(e, ConversationChanged) and e.conversation_id == arg
            ]
            if mine:
                self.log.append(mine[-1])
        elif kind == "dup_proposal":
            if self.sent.get(str(arg)):
                self.proposal_q.setdefault(str(arg), []).append(self.sent[str(arg)][-1])
        else:
            self.world(kind, arg)

    def presence_progress(self) -> datetime:
        """Every presence event up to it is in the dispatcher's stream (as relayed)."""
        queued = [at for q in self.presence_q.values() for _, at, _ in q]
        return min(queued) - timedelta(microseconds=1) if queued else self.now

    def quiesce(self) -> None:
        for _ in range(200):
            busy = False
            if self.dispatcher.holding and self.cursor >= len(self.log):
                self.log.append(PresenceProgressed(self.presence_progress()))
            for agent in AGENTS:
                while self.presence_q.get(agent):
                    self.deliver_presence(agent)
                    busy = True
            for cid in CONVS:
                while self.conv_q.get(cid):
                    self.deliver_conv(cid)
                    busy = True
            if self.cursor < len(self.log):
                self.dispatch(len(self.log) - self.cursor)
                busy = True
            for cid in CONVS:
                while self.proposal_q.get(cid):
                    self.deliver_proposal(cid)
                    busy = True
            if not busy:
                return
        raise AssertionError("did not quiesce")

    def check_quiescent(self) -> None:
        d = self.dispatcher
        assert all(s.pending is None for s in d.conversations.values())
        for cid, view in self.owner.published.items():
            slot = d.conversations.get(cid)
            if slot is None:
                assert not view.waiting and not (
                    view.assignee_id and view.queue in ("NEW", "PENDING")
                )
                continue
            assert (slot.queue, slot.assignee_id, slot.waiting_cause) == (
                view.queue,
                view.assignee_id,
                view.waiting_cause,
            )
        if not d.settings.enabled:
            return
        for cid, (queue, assignee) in self.owner.truth.items():
            if queue != "NEW" or assignee is not None:
                continue
            team = self.owner.team(cid)
            cap = self.sc.team_capacity.get(team, self.sc.default_capacity)
            for agent in AGENTS:
                tl = self.owner.timelines.get(agent, [])
                signed_in = signed_out_at(tl) is None
                eligible = (
                    signed_in
                    and self.availability.get(agent, True)
                    and (team == ORG_WIDE or team in self.sc.teams[agent])
                    and (cap is None or self.owner.held(agent) < cap)
                )
                assert not eligible, f"{cid} waits while {agent} has room"


PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("ROUTING_PROPERTY_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(
    sc=scenario,
    ops=st.lists(op, min_size=20, max_size=80),
    first=st.lists(st.sampled_from(AGENTS), min_size=1, max_size=4, unique=True),
)
def test_automatic_assignment_under_any_delivery(
    sc: Scenario, ops: list[tuple[str, object]], first: list[str]
) -> None:
    owner = Owner(
        SettingsHistory((SettingChange(T0, sc.remove_assignment),)), sc.instances, sc.holds
    )
    sim = Sim(sc, owner)
    sim.log.append(sim.settings_input(sc.enabled, T0, "settings-0"))
    for kind, arg in [("sign_in", a) for a in first] + ops:
        sim.step(kind, arg)
    sim.quiesce()
    sim.check_quiescent()
    refusals = [e.refusal for e in sim.log if isinstance(e, ConversationChanged) and e.refusal]
    event(f"accepted: {min(len(owner.accepted), 5)}+")
    event(f"refused: {sorted(set(refusals))}")
    event(f"crashes: {sum(1 for k, _ in ops if k == 'crash') > 0}")
    # the reference saw the same stream: the same proposals and the same loads
    ref_held = {a: sim.reference.held(a) for a in AGENTS}
    assert {a: sim.dispatcher.held(a) for a in AGENTS} == ref_held
