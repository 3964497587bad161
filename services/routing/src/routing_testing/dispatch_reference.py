"""An independent, deliberately naive formulation of PRODUCT.md §4, for the property tests.

It keeps every input it was given and recomputes everything from scratch at each step: an
agent's presence from all their presence facts, loads by counting conversations, the waiting
queue by sorting. After each input it assigns, one at a time, the oldest waiting conversation
that has any eligible agent, to the agent with the fewest held, ties to the oldest last
automatic assignment, then the agent id; until no waiting conversation has an eligible agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from routing_service.domain.dispatch import (
    ORG_WIDE,
    AssignmentSettings,
    ConversationChanged,
    DispatchInput,
    PresenceChanged,
    PresenceKind,
    PresenceProgressed,
    Refusal,
    SettingsChanged,
    proposal_id,
)


@dataclass(frozen=True)
class RefProposal:
    proposal_id: str
    conversation_id: str
    agent_id: str
    waiting_cause: str
    channel_id: str | None


@dataclass
class ReferenceDispatcher:
    org_id: str
    presence: dict[str, list[tuple[datetime, str, PresenceKind, frozenset[str]]]] = field(
        default_factory=dict
    )
    settings_log: list[tuple[datetime, str, AssignmentSettings]] = field(default_factory=list)
    #: conversation -> latest state (highest version; the later one among equal versions)
    states: dict[str, ConversationChanged] = field(default_factory=dict)
    pending: dict[str, RefProposal] = field(default_factory=dict)
    last_auto: dict[str, int] = field(default_factory=dict)
    step: int = 0
    #: the latest presence progress (a state with ``presence_until`` after it is not judged)
    progress: datetime | None = None

    # -- derived -------------------------------------------------------------------------------

    def settings(self) -> AssignmentSettings:
        if not self.settings_log:
            return AssignmentSettings()
        return max(self.settings_log, key=lambda s: (s[0], s[1]))[2]

    def _latest(self, agent: str, kinds: tuple[PresenceKind, ...]) -> PresenceKind | None:
        facts = [f for f in self.presence.get(agent, []) if f[2] in kinds]
        return max(facts, key=lambda f: (f[0], f[1]))[2] if facts else None

    def signed_in(self, agent: str) -> bool:
        return (
            self._latest(agent, (PresenceKind.SIGNED_IN, PresenceKind.SIGNED_OUT))
            is PresenceKind.SIGNED_IN
        )

    def available(self, agent: str) -> bool:
        return self._latest(agent, (PresenceKind.AVAILABLE, PresenceKind.AWAY)) is not (
            PresenceKind.AWAY
        )

    def teams(self, agent: str) -> frozenset[str]:
        ins = [f for f in self.presence.get(agent, []) if f[2] is PresenceKind.SIGNED_IN]
        return max(ins, key=lambda f: (f[0], f[1]))[3] if ins else frozenset()

    def team(self, conversation_id: str) -> str:
        channel = self.states[conversation_id].channel_id
        return self.settings().channel_teams.get(channel or "", ORG_WIDE)

    def is_waiting(self, conversation_id: str) -> bool:
        s = self.states[conversation_id]
        return s.queue == "NEW" and s.assignee_id is None and s.waiting_since is not None

    def judged(self, conversation_id: str) -> bool:
        until = self.states[conversation_id].presence_until
        return until is None or (self.progress is not None and until <= self.progress)

    def held(self, agent: str) -> int:
        n = 0
        for cid, s in self.states.items():
            p = self.pending.get(cid)
            if p is not None:
                n += p.agent_id == agent
            elif s.assignee_id == agent and s.queue in ("NEW", "PENDING"):
                n += 1
        return n

    def eligible(self, agent: str, team: str) -> bool:
        cap = self.settings().team_capacity.get(team, self.settings().default_capacity)
        return (
            self.signed_in(agent)
            and self.available(agent)
            and (team == ORG_WIDE or team in self.teams(agent))
            and (cap is None or self.held(agent) < cap)
        )

    # -- inputs --------------------------------------------------------------------------------

    def apply(self, event: DispatchInput) -> list[RefProposal]:
        self.step += 1
        if isinstance(event, PresenceChanged):
            self.presence.setdefault(event.agent_id, []).append(
                (event.occurred_at, event.cause.event_id, event.kind, event.teams)
            )
        elif isinstance(event, SettingsChanged):
            self.settings_log.append((event.occurred_at, event.cause.event_id, event.settings))
        elif isinstance(event, PresenceProgressed):
            self.progress = max(self.progress or event.progress, event.progress)
        else:
            self._conversation(event)
        return self._assign_all()

    def _conversation(self, e: ConversationChanged) -> None:
        cid = e.conversation_id
        p = self.pending.get(cid)
        if p is not None and p.proposal_id == e.proposal_id:
            del self.pending[cid]
        if e.refusal is Refusal.AGENT_SIGNED_OUT and e.refused_agent_id and e.agent_signed_out_at:
            self.presence.setdefault(e.refused_agent_id, []).append(
                (e.agent_signed_out_at, e.cause.event_id, PresenceKind.SIGNED_OUT, frozenset())
            )
        old = self.states.get(cid)
        if old is None or e.version >= old.version:
            self.states[cid] = e
        p = self.pending.get(cid)
        now = self.states[cid]
        if p is not None and (
            not self.is_waiting(cid)
            or (now.waiting_cause, now.channel_id) != (p.waiting_cause, p.channel_id)
        ):
            del self.pending[cid]

    def _assign_all(self) -> list[RefProposal]:
        out: list[RefProposal] = []
        if not self.settings().enabled:
            return out
        while True:
            queue = sorted(
                (
                    c
                    for c in self.states
                    if self.is_waiting(c) and c not in self.pending and self.judged(c)
                ),
                key=lambda c: (self.states[c].waiting_since, c),
            )
            made = None
            for cid in queue:
                team = self.team(cid)
                agents = [a for a in self.presence if self.eligible(a, team)]
                if agents:
                    agent = min(agents, key=lambda a: (self.held(a), self.last_auto.get(a, 0), a))
                    cause = self.states[cid].waiting_cause
                    assert cause is not None
                    made = RefProposal(
                        proposal_id(self.org_id, cid, cause, agent, self.step),
                        cid,
                        agent,
                        cause,
                        self.states[cid].channel_id,
                    )
                    break
            if made is None:
                return out
            self.pending[made.conversation_id] = made
            self.last_auto[made.agent_id] = self.step
            out.append(made)
