"""The sessions a replica serves from memory: heartbeats cost no database write each time.

Pure code (no I/O). A replica that signs a session in, or takes it over (a heartbeat for a
session it did not know), keeps it here: the latest heartbeat it received, and the heartbeat
it last wrote to the database. Heartbeats only update memory; the replica writes progress
back at most once per session per ``persist_interval`` (coalesced, in bulk), and decides the
expiry of its own sessions at their exact deadline (latest heartbeat + timeout) from memory.

Two min-heaps, lazily cleaned: ``deadlines`` (one entry per session; an entry older than the
session's current deadline is moved forward when it reaches the top) and ``persists`` (a
session with unwritten progress, due ``persist_interval`` after its last write).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from presence_service.domain.model import Session


@dataclass
class LocalSession:
    session: Session
    timeout: timedelta
    #: Latest heartbeat received by this replica (the session's start before any).
    last_heartbeat: datetime
    #: Latest heartbeat this replica wrote to the database.
    persisted: datetime
    #: Being decided (expiry check in flight): keeps holding the progress watermark.
    deciding: bool = False

    @property
    def deadline(self) -> datetime:
        return self.last_heartbeat + self.timeout

    @property
    def dirty(self) -> bool:
        return self.last_heartbeat > self.persisted

    def snapshot(self) -> Session:
        """The session as this replica knows it (its latest heartbeat and deadline)."""
        return replace(self.session, last_heartbeat=self.last_heartbeat, expires_at=self.deadline)


class LiveSessions:
    def __init__(self, timeout: timedelta, persist_interval: timedelta) -> None:
        self._timeout = timeout
        self._persist_interval = persist_interval
        self._by_id: dict[str, LocalSession] = {}
        self._deadlines: list[tuple[datetime, str]] = []
        self._persists: list[tuple[datetime, str]] = []
        self._persist_queued: set[str] = set()
        self._deciding: dict[str, LocalSession] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._by_id

    def get(self, session_id: str) -> LocalSession | None:
        return self._by_id.get(session_id)

    def add(self, session: Session, persisted: datetime) -> LocalSession:
        """Serve ``session`` from memory; its latest heartbeat ``session.last_heartbeat`` is
        in the database as ``persisted``."""
        entry = LocalSession(session, self._timeout, session.last_heartbeat, persisted)
        self._by_id[session.session_id] = entry
        heapq.heappush(self._deadlines, (entry.deadline, session.session_id))
        self._queue_persist(entry)
        return entry

    def remove(self, session_id: str) -> LocalSession | None:
        self._persist_queued.discard(session_id)
        self._deciding.pop(session_id, None)
        return self._by_id.pop(session_id, None)  # heap entries are dropped lazily

    def beat(self, session_id: str, now: datetime) -> LocalSession | None:
        entry = self._by_id.get(session_id)
        if entry is None:
            return None
        if now > entry.last_heartbeat:
            entry.last_heartbeat = now
        self._queue_persist(entry)
        return entry

    def _queue_persist(self, entry: LocalSession) -> None:
        sid = entry.session.session_id
        if entry.dirty and sid not in self._persist_queued:
            self._persist_queued.add(sid)
            heapq.heappush(self._persists, (entry.persisted + self._persist_interval, sid))

    # ------------------------------------------------------------------ persisting
    def due_persists(self, now: datetime, limit: int) -> list[LocalSession]:
        """Sessions whose unwritten progress is due (at most ``limit``), oldest first."""
        due: list[LocalSession] = []
        while self._persists and len(due) < limit and self._persists[0][0] <= now:
            _, sid = heapq.heappop(self._persists)
            self._persist_queued.discard(sid)
            entry = self._by_id.get(sid)
            if entry is not None and entry.dirty:
                due.append(entry)
        return due

    def all_dirty(self) -> list[LocalSession]:
        """Every session with unwritten progress (graceful shutdown writes them all)."""
        return [e for e in self._by_id.values() if e.dirty]

    def persisted(self, entry: LocalSession, value: datetime) -> None:
        if value > entry.persisted:
            entry.persisted = value
        self._queue_persist(entry)  # a heartbeat may have come in meanwhile

    def next_persist_at(self) -> datetime | None:
        return self._persists[0][0] if self._persists else None

    # ------------------------------------------------------------------ expiry
    def overdue(self, now: datetime, grace: timedelta) -> list[LocalSession]:
        """Sessions whose deadline passed more than ``grace`` ago (marked ``deciding``; the
        caller ends or drops them). Entries whose deadline moved are pushed forward."""
        found: list[LocalSession] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            at, sid = self._deadlines[0]
            entry = self._by_id.get(sid)
            if entry is None or entry.deciding:
                heapq.heappop(self._deadlines)
            elif entry.deadline > at:
                heapq.heapreplace(self._deadlines, (entry.deadline, sid))
            elif now >= at + grace:
                heapq.heappop(self._deadlines)
                entry.deciding = True
                self._deciding[sid] = entry
                found.append(entry)
            else:
                break  # the earliest real deadline is within its grace: wait
        return found

    def may_be_overdue(self, now: datetime, grace: timedelta) -> bool:
        """False when ``overdue(now, grace)`` surely finds nothing (no deadline in the heap is
        ``grace`` past): the expiry tick's check before it starts a round. The heap's keys are
        lower bounds of the deadlines, so a True may still find nothing."""
        return bool(self._deadlines) and self._deadlines[0][0] + grace <= now

    def keep(self, entry: LocalSession) -> None:
        """The expiry check found the session still live here (decision undone)."""
        entry.deciding = False
        self._deciding.pop(entry.session.session_id, None)
        heapq.heappush(self._deadlines, (entry.deadline, entry.session.session_id))

    def next_deadline_at(self) -> datetime | None:
        return self._deadlines[0][0] if self._deadlines else None

    def earliest_deadline(self) -> datetime | None:
        """A lower bound of every deadline still undecided here (the watermark floor)."""
        candidates = [e.deadline for e in self._deciding.values()]
        if self._deadlines:
            candidates.append(self._deadlines[0][0])
        return min(candidates) if candidates else None
