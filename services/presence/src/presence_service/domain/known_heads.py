"""Per agent, a transition this replica knows to exist, for a bounded time.

A known transition is a lower bound of the agent's log head (the log only grows), so probing
forward from it by ``_id`` finds the head in one read. That holds only while the records
after it cannot have been pruned: retention deletes published records older than
``RETENTION_SECONDS`` (never an agent's latest), so an entry learned long ago for an agent
that moved on through other replicas may sit below a pruned gap, and a probe from it would
stop early and reuse a transition number. Entries are therefore trusted for ``max_age``
(half the retention) after they were learned: anything after the entry was created after the
moment it was learned (minus the hint's lag, which the other half absorbs), so it is younger
than the retention and still stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from presence_service.domain.model import AgentRef, Transition

#: The cache holds at most this many agents; reaching it clears it (it is only a hint).
MAX_KNOWN_AGENTS = 100_000


@dataclass
class KnownHeads:
    max_age: timedelta
    max_entries: int = MAX_KNOWN_AGENTS
    _entries: dict[AgentRef, tuple[Transition, datetime]] = field(default_factory=dict)

    def get(self, agent: AgentRef, now: datetime) -> Transition | None:
        """The known transition of ``agent``, unless it was learned ``max_age`` ago or more."""
        entry = self._entries.get(agent)
        if entry is None or now >= entry[1] + self.max_age:
            return None
        return entry[0]

    def learn(self, t: Transition, now: datetime) -> bool:
        """Remember ``t`` if it is later than what is known (or the entry expired); False if
        the cache had to be cleared to make room (it forgot every agent)."""
        entry = self._entries.get(t.agent)
        if entry is not None and t.seq <= entry[0].seq and now < entry[1] + self.max_age:
            return True
        cleared = entry is None and len(self._entries) >= self.max_entries
        if cleared:
            self._entries.clear()
        self._entries[t.agent] = (t, now)
        return not cleared

    def __contains__(self, agent: object) -> bool:
        """Ever learned (expired entries included: such an agent has transitions)."""
        return agent in self._entries

    def __len__(self) -> int:
        return len(self._entries)
