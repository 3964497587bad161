"""Use cases of the presence service: plain async functions over the ports.

Concurrency model (several replicas, non-atomic updates in FerretDB):
- a session is its own document, written by its heartbeats only;
- a session *ends* by inserting its end record (unique by session id) - whoever wins decides
  the reason and time; the session document is then deleted;
- the agent's sign-in / sign-out is a transition log claimed by unique inserts (see
  ``reconcile``); the transition document is also the outbox entry of its event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from inbox_contracts import CloudEvent
from inbox_contracts.events import (
    AgentAvailabilityChanged,
    AgentSignedIn,
    AgentSignedOut,
    Availability,
    SignOutReason,
)
from inbox_contracts.topics import PRESENCE
from inbox_kit.auth import Principal
from inbox_kit.errors import FailedPrecondition, InvalidArgument, NotFound
from inbox_kit.validation import PageTokens, page_size, require_id, require_ids

from presence_service.domain.known_heads import MAX_KNOWN_AGENTS, KnownHeads
from presence_service.domain.live import LiveSessions, LocalSession
from presence_service.domain.model import (
    AgentRef,
    EndReason,
    Session,
    SessionEnd,
    Timing,
    Transition,
    event_id_for,
    expiry_end,
    is_expired_for_others,
    next_transition,
    transition_key,
)
from presence_service.service_layer.batching import KeyedBatcher
from presence_service.service_layer.ports import (
    AgentAvailability,
    OutboxRecord,
    PresenceStore,
)
from presence_service.service_layer.progress import MARKS_LEASE, FloorReports, ProgressFloor

log = logging.getLogger(__name__)
T = TypeVar("T")

SOURCE = "/inbox/presence"
MAX_RECONCILE_ROUNDS = 16
MAX_BATCH = 500
#: Agents reconciled together: one look-up of their sessions (and one of their ends) per
#: round, one command whatever the number of agents; their claims still go to the
#: store in bulk writes of <= 64 (the group commits').
RECONCILE_BATCH = 256
#: Sessions expired together (their ends and deletes: one bulk write of <= 64 each).
EXPIRY_CHUNK = 64
DEFAULT_PAGE = 100
SIGNED_IN_PAGES = PageTokens("presence.signed_in", 1)
#: A floor write slower than this is logged: past the replica TTL the replica looks dead.
SLOW_FLOOR_WRITE = timedelta(seconds=1)


class SessionEnded(FailedPrecondition):
    """The session has ended or expired; the client must sign in again."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} has ended; sign in again", reason="SESSION_ENDED")


def _utcnow() -> datetime:
    """Now, truncated to milliseconds (what MongoDB stores), so stored and published times
    are identical. (A whole number of milliseconds divided by 1000 is within far less than
    half a microsecond of its float, so ``fromtimestamp``'s rounding lands on it exactly.)"""
    return datetime.fromtimestamp(time.time_ns() // 1_000_000 / 1000, UTC)


@dataclass
class Presence:
    """Everything the handlers need (built by bootstrap)."""

    store: PresenceStore
    timing: Timing
    clock: Callable[[], datetime] = _utcnow
    #: Start of the current service uptime after a full outage (see ``domain.deadline``).
    resumed_at: datetime | None = None
    #: Outbox records claimed here, for the relay's fast path (publish without a scan).
    claimed: asyncio.Queue[OutboxRecord] = field(default_factory=asyncio.Queue)
    #: Per agent, a transition known to exist (a lower bound: the log only grows, so probing
    #: forward from it by ``_id`` finds the head, whatever other replicas did: one read),
    #: trusted for half the retention after it was learned (see ``domain.known_heads``).
    known_heads: KnownHeads = field(init=False)
    #: This process's identity in stored sessions and progress marks.
    replica_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The sessions this replica serves from memory (see ``domain.live``).
    live: LiveSessions = field(init=False)
    #: Concurrent reconciles of different agents, served together (see ``reconcile``).
    reconciles: KeyedBatcher[AgentRef, Transition | None] = field(init=False)
    #: Concurrent ForceSignOuts, served together (see ``force_many``).
    forces: KeyedBatcher[tuple[AgentRef, int], int | None] = field(init=False)
    force_calls: Iterator[int] = field(default_factory=itertools.count)
    #: What holds this replica's progress watermark back (see ``progress``).
    progress: ProgressFloor = field(default_factory=ProgressFloor)
    floor_reports: FloorReports = field(default_factory=FloorReports)

    #: A replica whose progress floor is older than this is taken for dead.
    replica_ttl: timedelta = timedelta(seconds=10)
    #: ``RETENTION_SECONDS``: published transitions older than this may be pruned.
    retention: timedelta = timedelta(days=30)
    #: Until when every agent with a transition that may have been pruned is in
    #: ``known_heads`` (None: not known; see ``learn_stored_heads``).
    heads_complete_until: datetime | None = None
    #: Until when every other replica takes this one for alive: the liveness time of its
    #: last floor write that landed + ``replica_ttl`` (clocks are NTP-synchronized).
    lease_until: datetime | None = None
    #: The liveness time of this replica's last floor write that landed.
    floor_landed_at: datetime | None = None
    #: Whether the marks publisher has seen this replica (``join``): until then it claims
    #: nothing. ``bootstrap`` starts a replica unjoined; a lapsed lease un-joins it.
    joined: bool = True
    _alive: tuple[datetime, frozenset[str]] | None = field(default=None, init=False)
    _spawned: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.live = LiveSessions(self.timing.session_timeout, self.timing.persist_interval)
        self.known_heads = KnownHeads(max_age=self.retention / 2)
        self.reconciles = KeyedBatcher(
            lambda agents: reconcile_many(self, agents), max_batch=RECONCILE_BATCH
        )
        self.forces = KeyedBatcher(lambda agents: force_many(self, agents), max_batch=EXPIRY_CHUNK)

    def spawn(self, write: Coroutine[Any, Any, None]) -> None:
        """Run a write that nothing waits for (errors are logged; the relay scan and the
        next reader repair what a lost one leaves)."""
        task = asyncio.create_task(write)
        self._spawned.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[None]) -> None:
        self._spawned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background write failed", exc_info=task.exception())

    async def settle(self) -> None:
        """Wait for the writes nothing waited for (graceful stop)."""
        while self._spawned:
            await asyncio.gather(*self._spawned, return_exceptions=True)

    async def alive_replicas(self) -> frozenset[str]:
        """Replicas that wrote their progress floor within ``replica_ttl`` (cached 200 ms)."""
        now = self.clock()
        if self._alive is None or now >= self._alive[0]:
            floors = await self.store.floors()
            alive = frozenset(f.replica_id for f in floors if now - f.at <= self.replica_ttl)
            self._alive = (now + timedelta(milliseconds=200), alive | {self.replica_id})
        return self._alive[1]

    def learn(self, t: Transition) -> None:
        if not self.known_heads.learn(t, self.clock()):
            self.heads_complete_until = None  # the cache forgot agents it had learned

    async def learn_stored_heads(self) -> int:
        """Learn every stored head hint (lower bounds); returns how many. If that was all of
        them, an agent still unknown here has no transition older than this moment, so
        until half the retention has passed none of its transitions can have been pruned:
        its sign-in may claim transition 1 without reading its hint (``unseen_agent``)."""
        started = self.clock()
        hints = await self.store.head_hints(MAX_KNOWN_AGENTS)
        for t in hints:
            self.learn(t)
        if len(hints) < MAX_KNOWN_AGENTS and len(self.known_heads) < MAX_KNOWN_AGENTS:
            self.heads_complete_until = started + self.retention / 2
        return len(hints)

    def unseen_agent(self, agent: AgentRef) -> bool:
        """Not known here, and known to have no transition that retention may have pruned."""
        until = self.heads_complete_until
        return agent not in self.known_heads and until is not None and self.clock() < until

    async def current_head(self, agent: AgentRef) -> Transition | None:
        """The agent's log head: one ``_id`` read when a transition of it is known here."""
        known = self.known_heads.get(agent, self.clock())
        head = await (self.store.head_after(agent, known) if known else self.store.head(agent))
        if head is not None:
            self.learn(head)
        return head


async def _orphaned_and_overdue(p: Presence, s: Session, now: datetime) -> bool:
    """Judged from the store by an actor that does not serve ``s``: overdue (with the slack
    of ``is_expired_for_others``) and served by no live replica. A live replica ends the
    sessions it serves itself, exactly, whatever its write-back lag."""
    if not is_expired_for_others(s, now, p.resumed_at, p.timing):
        return False
    if s.replica == p.replica_id:
        return s.session_id not in p.live
    return s.replica not in await p.alive_replicas()


# ---------------------------------------------------------------------------- progress floor


def own_floor(p: Presence, now: datetime) -> datetime:
    return p.progress.floor(now, p.live.earliest_deadline())


async def report_floor(p: Presence, at: datetime | None = None) -> None:
    """Write this replica's floor to the store (``at``: the liveness time, default now).
    The value is noted as reported before the write is sent: a retroactive hold entered while
    it is in flight then knows it must report again."""

    async def write() -> None:
        now = p.clock()
        value = own_floor(p, now)
        p.progress.reported(value)
        await p.store.write_floor(value, now if at is None else at)
        if at is None and (p.lease_until is None or now + p.replica_ttl > p.lease_until):
            p.lease_until = now + p.replica_ttl
            p.floor_landed_at = now
        if (took := p.clock() - now) > SLOW_FLOOR_WRITE:
            log.warning("slow progress floor write", extra={"seconds": took.total_seconds()})

    await p.floor_reports.report(write, always=at is not None)


#: How often a joining replica looks whether the marks publisher has seen it.
JOIN_POLL = timedelta(milliseconds=20)
#: A join taking longer than this is logged (the publisher is slow or stalled).
SLOW_JOIN = timedelta(seconds=5)


async def join(p: Presence) -> None:
    """Wait until the marks publisher has seen this replica's floor as written at
    ``floor_landed_at`` or later (the holder stores the liveness time of every floor it read
    in the lease, ``marks``), or until no replica publishes marks (no lease or an expired one:
    whoever takes it next reads every floor before its first mark). A publisher that believes
    itself alone reads the floors only every ``slow_interval``: a replica it has not seen must
    claim nothing yet."""
    started = p.clock()
    warned = False
    while (since := p.floor_landed_at) is None:
        await report_floor(p)
    while True:  # ``since`` stays: later floor writes land while the holder reads
        lease = await p.store.lease(MARKS_LEASE)
        now = p.clock()
        if lease is None or lease.until <= now or lease.holder == p.replica_id:
            break
        if (seen := lease.seen.get(p.replica_id)) is not None and seen >= since:
            break
        if not warned and now - started > SLOW_JOIN:
            warned = True
            log.warning("joining: the progress marks publisher has not seen this replica yet")
        await asyncio.sleep(JOIN_POLL.total_seconds())
    p.joined = True


async def fenced(p: Presence) -> None:
    """Self-fencing: called before every step that claims a transition or removes what covers
    its event time in the store (a session's delete). Past ``lease_until`` the marks
    publisher takes this replica for dead and no longer waits for its floor, so such a step
    must land well before that: with less than half the TTL left, this replica first renews
    its floor (waiting as long as the store takes) and only then goes on. A replica stalled
    past its lease therefore claims nothing until it is alive again in the store *and* the
    marks publisher has seen it so (``join``: a publisher that took it for dead may believe
    itself alone)."""
    while True:
        now = p.clock()
        if p.lease_until is not None and now >= p.lease_until:
            log.warning(
                "progress lease lapsed: renewing it before claiming",
                extra={"lapsed_seconds": (now - p.lease_until).total_seconds()},
            )
            p.joined = False
            p.floor_landed_at = None  # join waits for a renewal that lands from now on
        if p.lease_until is not None and now < p.lease_until - p.replica_ttl / 2:
            if p.joined:
                return
            await join(p)
            continue
        await report_floor(p)


async def _delete_session(p: Presence, session_id: str) -> None:
    """A stored session covers its deadline for the marks publisher (as a dead replica's
    leftover): deleting it is a fenced step."""
    await fenced(p)
    await p.store.delete_session(session_id)


def _check_landed_in_lease(p: Presence, what: str) -> None:
    if p.lease_until is not None and p.clock() > p.lease_until:  # the write itself stalled
        log.warning("%s landed after this replica's lease: a mark may have overtaken it", what)


@contextlib.asynccontextmanager
async def holding_back(p: Presence, at: datetime) -> AsyncIterator[None]:
    """Hold the floor at ``at``, which may lie behind the floor this replica already reported
    (an orphaned session's stored deadline, an interrupted end): then the lowered floor is
    reported *before* the caller touches what covered ``at`` until now (see ``progress``)."""
    with p.progress.hold(at):
        if p.progress.behind_report(at):
            await report_floor(p)
        yield


# ---------------------------------------------------------------------------- event records


def _record(
    key: str,
    data: AgentSignedIn | AgentSignedOut | AgentAvailabilityChanged,
    *,
    at: datetime,
    prev_key: str | None = None,
) -> OutboxRecord:
    event = CloudEvent.wrap(data, source=SOURCE, event_id=event_id_for(key))
    return OutboxRecord(
        key=key,
        topic=PRESENCE.name,
        kafka_key=event.key,
        event_id=event.id,
        event_type=event.type,
        payload=event.to_json_bytes(),
        created_at=at,
        prev_key=prev_key,
    )


def transition_record(t: Transition, at: datetime) -> OutboxRecord:
    data: AgentSignedIn | AgentSignedOut
    if t.signed_in:
        data = AgentSignedIn(
            org_id=t.agent.org_id,
            agent_id=t.agent.agent_id,
            session_id=t.session_id,
            teams=sorted(t.teams),
            occurred_at=t.occurred_at,
        )
    else:
        data = AgentSignedOut(
            org_id=t.agent.org_id,
            agent_id=t.agent.agent_id,
            session_id=t.session_id,
            reason=SignOutReason((t.reason or EndReason.EXPLICIT).value),
            occurred_at=t.occurred_at,
        )
    prev = transition_key(t.agent, t.seq - 1) if t.seq > 1 else None
    return replace(_record(t.key, data, at=at, prev_key=prev), occurred_at=t.occurred_at)


# ---------------------------------------------------------------------------- reconcile


async def _live_sessions(
    p: Presence, agents: list[AgentRef], now: datetime, holds: contextlib.AsyncExitStack
) -> dict[AgentRef, list[Session]]:
    """The agents' live sessions (one look-up for all of them); overdue ones found on the way
    are ended as expired (at their deadline, a past time: held on ``holds`` until the caller
    has claimed what follows). A session this replica serves is judged from memory (exact),
    others from the store (with the slack of ``is_expired_for_others``). The writes this
    needs go out together (ends first, then the deletes)."""
    sessions = await p.store.sessions_of(agents)
    ended = await p.store.ended_ids([s.session_id for s in sessions])
    live: dict[AgentRef, list[Session]] = {a: [] for a in agents}
    finished: list[str] = []  # an interrupted end (or one in flight): only the delete is left
    expiring: list[SessionEnd] = []
    for s in sessions:
        local = p.live.get(s.session_id)
        if s.session_id in ended:
            finished.append(s.session_id)
        elif local is not None and not local.deciding:
            if now > local.deadline + p.timing.handover_grace:
                await holds.enter_async_context(holding_back(p, local.deadline))
                expiring.append(_expired(local))
            else:
                live[s.agent].append(local.snapshot())
        elif await _orphaned_and_overdue(p, s, now):
            await holds.enter_async_context(holding_back(p, s.expires_at))
            expiring.append(expiry_end(s))
        else:
            live[s.agent].append(s)
    await asyncio.gather(*(p.store.claim_end(e) for e in expiring))
    gone = finished + [e.session_id for e in expiring]
    await asyncio.gather(*(_delete_session(p, sid) for sid in gone))
    for sid in gone:
        p.live.remove(sid)
    return live


def _expired(local: LocalSession) -> SessionEnd:
    """A session served here ended at its latest heartbeat + timeout."""
    return SessionEnd(
        local.session.session_id, local.session.agent, EndReason.EXPIRED, local.deadline
    )


async def _claiming(p: Presence, t: Transition) -> OutboxRecord:
    """Before a claim is sent: fenced, and its event time held until published."""
    record = transition_record(t, p.clock())
    await fenced(p)
    p.progress.claiming(record.key, t.occurred_at)
    return record


def _claimed(p: Presence, t: Transition, record: OutboxRecord) -> None:
    """A claim that won: hand its record to the relay."""
    _check_landed_in_lease(p, "a transition claim")
    log.info(
        "agent %s",
        "signed in" if t.signed_in else "signed out",
        extra={
            "org_id": t.agent.org_id,
            "agent_id": t.agent.agent_id,
            "seq": t.seq,
            "reason": t.reason,
            "event_id": t.event_id,
        },
    )
    p.claimed.put_nowait(record)
    p.learn(t)


async def _claim(p: Presence, t: Transition) -> bool:
    record = await _claiming(p, t)
    if not await p.store.claim_transition(t, record):
        p.progress.lost(record.key)  # the winner holds it
        return False
    _claimed(p, t, record)
    return True


async def reconcile(p: Presence, agent: AgentRef) -> Transition | None:
    """Make the agent's transition log agree with its live sessions; returns the head.

    Every actor that changes an agent's sessions calls this afterwards, and every actor that
    claims a transition re-reads and re-checks; so whatever the interleaving, the last actor
    leaves the log matching the sessions. A lost race (duplicate key) just means re-reading.
    Concurrent calls for different agents are served together (``reconcile_many``): one
    look-up of their sessions (and one of their ends) serves up to ``RECONCILE_BATCH``
    agents instead of one (on unpatched FerretDB each look-up scans the collection; the
    devstack's FerretDB searches the ``agent_key`` index, libs/devstack/README.md).
    """
    return await p.reconciles.submit(agent)


async def reconcile_many(p: Presence, agents: list[AgentRef]) -> dict[AgentRef, Transition | None]:
    """``reconcile`` of several agents at once: each round reads their heads (``_id``), their
    sessions and, for those left without one, their ends since the head (one query each for
    all of them), then claims what each log needs; agents whose log matches are done."""
    result: dict[AgentRef, Transition | None] = {}
    pending = list(dict.fromkeys(agents))
    # a claim that won is the head as of that claim: the next round re-reads the sessions
    # after it without re-reading the log (a later transition makes the next claim lose,
    # and a lost claim re-reads)
    claimed: dict[AgentRef, Transition] = {}
    async with contextlib.AsyncExitStack() as holds:
        for _ in range(MAX_RECONCILE_ROUNDS):
            if not pending:
                return result
            to_read = [a for a in pending if a not in claimed]
            found = await asyncio.gather(*(p.current_head(a) for a in to_read))
            heads: dict[AgentRef, Transition | None] = dict(zip(to_read, found, strict=True))
            heads.update((a, claimed[a]) for a in pending if a in claimed)
            now = p.clock()
            live = await _live_sessions(p, pending, now, holds)
            signed_in_without_session = {
                a: h.occurred_at for a, h in heads.items() if h and h.signed_in and not live[a]
            }
            ends: dict[AgentRef, list[SessionEnd]] = {a: [] for a in pending}
            if signed_in_without_session:
                for end in await p.store.ends_since(signed_in_without_session):
                    ends[end.agent].append(end)
            wanted = [(a, next_transition(a, heads[a], live[a], ends[a])) for a in pending]
            result.update((a, heads[a]) for a, t in wanted if t is None)
            claims = [t for _, t in wanted if t is not None]
            won = await asyncio.gather(*(_claim(p, t) for t in claims))
            claimed = {t.agent: t for t, ok in zip(claims, won, strict=True) if ok}
            pending = [t.agent for t in claims]
        log.warning("reconcile did not settle", extra={"agents": len(pending)})
        found = await asyncio.gather(*(p.store.head(a) for a in pending))
        result.update(zip(pending, found, strict=True))
    return result


async def end_session(p: Presence, end: SessionEnd) -> bool:
    """End a session (idempotent); True if this call ended it."""
    claimed = await p.store.claim_end(end)
    # the end is stored: reconcile (which deletes ended sessions it finds) need not wait
    await asyncio.gather(_delete_session(p, end.session_id), reconcile(p, end.agent))
    p.live.remove(end.session_id)
    return claimed


# ---------------------------------------------------------------------------- use cases


def me(principal: Principal) -> AgentRef:
    return AgentRef(principal.org_id, principal.agent_id)


def _is_callers(agent: AgentRef, principal: Principal) -> bool:
    """``agent == me(principal)`` without building an ``AgentRef`` (the heartbeat's path)."""
    return agent.agent_id == principal.agent_id and agent.org_id == principal.org_id


async def sign_in(p: Presence, principal: Principal, client_description: str = "") -> Session:
    if len(client_description) > 200:
        raise InvalidArgument("client_description", "must be at most 200 characters")
    now = p.clock()
    with p.progress.hold(now):
        session = Session(
            session_id=str(uuid.uuid4()),
            agent=me(principal),
            started_at=now,
            last_heartbeat=now,
            expires_at=now + p.timing.session_timeout,
            client_description=client_description,
            replica=p.replica_id,
            teams=tuple(sorted(principal.teams)),
        )
        # The log head decides whether this session signs the agent in. It is only known
        # *after* the session is stored (a concurrent reconciler must see the session), so:
        # - known signed in here (the usual case: another tab, a reload): store the session,
        #   then probe the next transition number (one ``_id`` read);
        # - signed out: claim the sign-in in the same group commit as the session, stored
        #   after it. The unique claim *is* the probe: it loses if the log moved on, and
        #   then a probe decides.
        # An agent not known here first reads its hint: a lower bound that retention never
        # prunes below, so a claim after it can never reuse a transition number - unless
        # this replica knows that the agent has no transition retention may have pruned
        # (it learned every stored hint at startup): then it claims transition 1 at once.
        agent = session.agent
        known = p.known_heads.get(agent, now)
        if known is None and not p.unseen_agent(agent):
            known = await p.store.head_hint(agent)
        head: Transition | None
        if known is not None and known.signed_in:
            try:
                head = await p.store.insert_session_then_head(session, known)
            finally:  # even if the write failed: the expiry check drops what is not stored
                p.live.add(session, persisted=now)
        else:
            wanted = next_transition(agent, known, [session], [])
            assert wanted is not None
            record = await _claiming(p, wanted)
            try:  # a failed write keeps its hold, like any claim whose outcome is unknown
                won = await p.store.insert_session(session, claim=(wanted, record))
            finally:
                p.live.add(session, persisted=now)
            if won:
                _claimed(p, wanted, record)
                return session
            p.progress.lost(record.key)
            head = await p.store.head_after(agent, known or await p.store.head_hint(agent))
        if head is not None:
            p.learn(head)
        if head is None or not head.signed_in:
            await _sign_in_transition(p, session, head)
    return session


async def _sign_in_transition(p: Presence, session: Session, head: Transition | None) -> None:
    """Claim the sign-in without reading the agent's sessions (one command saved). Safe
    because the session was stored before the log was read: any concurrent actor that
    reconciles this agent sees it live, and one that ends it afterwards reconciles last. A
    lost claim (someone else moved the log) falls back to the full reconcile."""
    wanted = next_transition(session.agent, head, [session], [])
    if wanted is not None and not await _claim(p, wanted):
        await reconcile(p, session.agent)


async def _own_session(p: Presence, principal: Principal, session_id: str) -> Session:
    require_id("session_id", session_id)
    session, end = await asyncio.gather(
        p.store.get_session(session_id), p.store.get_end(session_id)
    )
    agent = me(principal)
    if end is not None and end.agent == agent:
        if session is not None:  # an end interrupted before cleanup: finish it
            async with holding_back(p, end.ended_at):
                await end_session(p, end)
        p.live.remove(session_id)
        raise SessionEnded(session_id)
    if session is None or session.agent != agent:
        raise NotFound(f"session {session_id} not found", reason="SESSION_NOT_FOUND")
    return session


async def heartbeat(p: Presence, principal: Principal, session_id: str) -> datetime:
    """A session this replica serves: memory only (written back later, coalesced). Any other
    session: read it, judge it with the other-actor slack, write the heartbeat through and
    serve it from now on."""
    require_id("session_id", session_id)
    now = p.clock()
    local = p.live.get(session_id)
    if local is not None and not local.deciding and _is_callers(local.session.agent, principal):
        if now > local.deadline:  # too late, even if the expiry check did not run yet
            async with holding_back(p, local.deadline):
                await end_session(p, _expired(local))
            raise SessionEnded(session_id)
        p.live.beat(session_id, now)
        return now + p.timing.session_timeout
    session = await _own_session(p, principal, session_id)
    if await _orphaned_and_overdue(p, session, now):
        async with holding_back(p, session.expires_at):
            await end_session(p, expiry_end(session))
        raise SessionEnded(session_id)
    expires_at = now + p.timing.session_timeout
    await p.store.touch_session(session_id, now, expires_at)
    taken = replace(session, last_heartbeat=now, expires_at=expires_at, replica=p.replica_id)
    p.live.add(taken, persisted=now)
    return expires_at


async def sign_out(p: Presence, principal: Principal, session_id: str) -> bool:
    """End the session; True if the agent has no live session left. A session served here
    needs no read: its end's unique insert tells whether someone else ended it first."""
    local = p.live.get(require_id("session_id", session_id))
    served_here = local is not None and not local.deciding and local.session.agent == me(principal)
    if local is not None and served_here:
        agent = local.session.agent
    else:
        agent = (await _own_session(p, principal, session_id)).agent
    now = p.clock()
    with p.progress.hold(now):
        end = SessionEnd(session_id, agent, EndReason.EXPLICIT, now)
        if not await p.store.claim_end(end):
            p.live.remove(session_id)
            if served_here:  # finishes an end someone left half done, then raises
                await _own_session(p, principal, session_id)
            raise SessionEnded(session_id)
        # the end is stored: reconcile (which deletes ended sessions it finds) need not wait
        _, head = await asyncio.gather(_delete_session(p, session_id), reconcile(p, agent))
        p.live.remove(session_id)
    return head is None or not head.signed_in


async def force_sign_out(p: Presence, principal: Principal, agent_id: str) -> int:
    """End every session of the agent; returns how many this call ended. Concurrent calls
    are served together (``force_many``)."""
    principal.require_admin()
    agent = AgentRef(principal.org_id, require_id("agent_id", agent_id))
    ended = await p.forces.submit((agent, next(p.force_calls)))
    if ended is None:
        raise NotFound(f"agent {agent_id} not found", reason="AGENT_NOT_FOUND")
    return ended


async def force_many(
    p: Presence, calls: list[tuple[AgentRef, int]]
) -> dict[tuple[AgentRef, int], int | None]:
    """ForceSignOut of several agents at once: one look-up of their sessions, their ends in
    bulk writes, and the sign-outs claimed at once where this call ended every session it
    found (a sign-in racing it is seen by the reconcile that follows: it re-reads the
    sessions after the claim); everything else is left to that reconcile. Returns, per
    call, the sessions it ended (None: the agent never signed in; of two calls for one agent
    in a batch, the first ends them and the second ends none)."""
    agents = list(dict.fromkeys(agent for agent, _ in calls))
    now = p.clock()
    with p.progress.hold(now):
        found, sessions = await asyncio.gather(
            asyncio.gather(*(p.current_head(a) for a in agents)), p.store.sessions_of(agents)
        )
        heads = dict(zip(agents, found, strict=True))
        sessions = [s for s in sessions if heads.get(s.agent) is not None]
        ends = [SessionEnd(s.session_id, s.agent, EndReason.FORCED, now) for s in sessions]
        claimed = await asyncio.gather(*(p.store.claim_end(e) for e in ends))
        mine: dict[AgentRef, list[SessionEnd]] = {a: [] for a in agents}
        lost: set[AgentRef] = set()
        for end, won in zip(ends, claimed, strict=True):
            if won:
                mine[end.agent].append(end)
            else:  # ended by someone else meanwhile, maybe later than ``now``
                lost.add(end.agent)
        sign_outs = [
            t
            for a in agents
            if mine[a] and a not in lost
            if (t := next_transition(a, heads[a], [], mine[a])) is not None
        ]
        await asyncio.gather(*(_claim(p, t) for t in sign_outs))
        # the deletes before the reconcile: its look-up then finds no ended session to check
        await asyncio.gather(*(_delete_session(p, s.session_id) for s in sessions))
        for s in sessions:
            p.live.remove(s.session_id)
        await asyncio.gather(*(reconcile(p, a) for a in agents if heads[a] is not None))
    result: dict[tuple[AgentRef, int], int | None] = {}
    answered: set[AgentRef] = set()
    for agent, call in calls:
        ended = len(mine[agent]) if agent not in answered else 0
        result[(agent, call)] = None if heads[agent] is None else ended
        answered.add(agent)
    return result


async def set_availability(
    p: Presence, principal: Principal, availability: Availability
) -> AgentAvailability:
    agent = me(principal)
    now = p.clock()
    with p.progress.hold(now):  # the marks cover availability changes too
        value = AgentAvailability(availability, now)
        await p.store.set_availability(agent, value)
        data = AgentAvailabilityChanged(
            org_id=agent.org_id, agent_id=agent.agent_id, availability=availability, occurred_at=now
        )
        record = replace(_record(f"{agent.key}\x1fa{uuid.uuid4()}", data, at=now), occurred_at=now)
        p.progress.claiming(record.key, now)
        try:
            await p.store.insert_outbox(record)
        except BaseException:
            p.progress.lost(record.key)
            raise
    p.claimed.put_nowait(record)
    return value


@dataclass(frozen=True)
class PresenceView:
    agent_id: str
    signed_in: bool
    since: datetime | None
    availability: Availability
    sessions: list[Session]


async def _current_heads(p: Presence, agents: list[AgentRef]) -> dict[AgentRef, Transition]:
    heads = await p.store.heads(agents)
    return heads


async def get_presence(
    p: Presence, principal: Principal, agent_ids: list[str]
) -> list[PresenceView]:
    require_ids("agent_ids", agent_ids, min_count=1, max_count=MAX_BATCH)
    agents = [AgentRef(principal.org_id, a) for a in dict.fromkeys(agent_ids)]
    heads, avail, sessions = await asyncio.gather(
        _current_heads(p, agents), p.store.availabilities(agents), p.store.sessions_of(agents)
    )
    ended = await p.store.ended_ids([s.session_id for s in sessions])
    by_agent: dict[AgentRef, list[Session]] = {}
    served_here = [local.snapshot() if (local := p.live.get(s.session_id)) else s for s in sessions]
    for s in sorted(served_here, key=lambda s: s.started_at):
        if s.session_id not in ended:
            by_agent.setdefault(s.agent, []).append(s)
    views = {}
    for agent in agents:
        head = heads.get(agent)
        a = avail.get(agent)
        signed_in = head is not None and head.signed_in
        views[agent.agent_id] = PresenceView(
            agent_id=agent.agent_id,
            signed_in=signed_in,
            since=head.occurred_at if head else None,
            availability=a.availability if a else Availability.AVAILABLE,
            sessions=by_agent.get(agent, []) if signed_in else [],
        )
    return [views[a] for a in agent_ids]


async def list_signed_in(
    p: Presence, principal: Principal, requested_size: int, page_token: str
) -> tuple[list[PresenceView], str]:
    size = page_size(requested_size, default=DEFAULT_PAGE, maximum=MAX_BATCH)
    cursor = SIGNED_IN_PAGES.decode(page_token)
    after = cursor.text(0) if cursor else ""
    heads = await p.store.signed_in_heads(principal.org_id, after, size + 1)
    more = len(heads) > size
    heads = heads[:size]
    avail = await p.store.availabilities([h.agent for h in heads])
    views = [
        PresenceView(
            agent_id=h.agent.agent_id,
            signed_in=True,
            since=h.occurred_at,
            availability=(a.availability if (a := avail.get(h.agent)) else Availability.AVAILABLE),
            sessions=[],
        )
        for h in heads
    ]
    token = SIGNED_IN_PAGES.encode([heads[-1].agent.agent_id]) if more and heads else ""
    return views, token


# ---------------------------------------------------------------------------- background


async def sweep_once(p: Presence, limit: int = 500) -> int:
    """End stored sessions nobody serves any more (their replica died) once their stored
    deadline is past by more than the other-actor slack; returns how many this call ended.
    Sessions this replica serves are left to ``expire_overdue`` (exact, from memory)."""
    now = p.clock()
    cutoff = now - p.timing.expiry_grace - p.timing.persist_lag
    orphaned = [
        s
        for s in await p.store.overdue_sessions(cutoff, limit)
        # not served here nor by another live replica, nor deferred after an outage
        if s.session_id not in p.live and await _orphaned_and_overdue(p, s, now)
    ]
    if not orphaned:
        return 0
    # Their stored deadlines lie behind the floor this replica reported: one report for the
    # batch before the first of them leaves the store (until then it covers that time).
    async with holding_back(p, min(s.expires_at for s in orphaned)):
        ended = await asyncio.gather(
            *(_end_orphans(p, chunk, now) for chunk in _chunks(orphaned, EXPIRY_CHUNK))
        )
    return sum(ended)


async def _end_orphans(p: Presence, orphans: list[Session], now: datetime) -> int:
    """End a chunk of orphaned sessions at their stored deadline, together (their ends and
    deletes form bulk writes, their agents one reconcile batch)."""
    fresh = await asyncio.gather(*(p.store.get_session(s.session_id) for s in orphans))
    # a heartbeat may have landed meanwhile
    due = [s for s in fresh if s is not None and await _orphaned_and_overdue(p, s, now)]
    return await _end_expired(p, [expiry_end(s) for s in due])


async def _end_expired(p: Presence, ends: list[SessionEnd]) -> int:
    """End expired sessions (the caller holds their end times); returns how many this call
    ended (the others were ended by someone else first)."""
    if not ends:
        return 0
    claimed = await asyncio.gather(*(p.store.claim_end(e) for e in ends))
    await asyncio.gather(
        *(_delete_session(p, e.session_id) for e in ends),
        *(reconcile(p, a) for a in dict.fromkeys(e.agent for e in ends)),
    )
    for e in ends:
        p.live.remove(e.session_id)
    return sum(claimed)


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


async def expire_overdue(p: Presence) -> int:
    """Decide the sessions this replica serves whose deadline (latest heartbeat here +
    timeout) passed ``handover_grace`` ago: if the store shows this replica's own last write,
    nobody heartbeated the session elsewhere since, and it ends at exactly that deadline;
    otherwise another replica serves it now (or ended it) and it is dropped from memory.
    In chunks of ``EXPIRY_CHUNK``, all at once (a mass expiry costs a few bulk writes and
    scans per chunk, not per session)."""
    due = p.live.overdue(p.clock(), p.timing.handover_grace)
    if not due:
        return 0
    decided = await asyncio.gather(
        *(_decide_expiries(p, chunk) for chunk in _chunks(due, EXPIRY_CHUNK))
    )
    return sum(decided)


async def _decide_expiries(p: Presence, due: list[LocalSession]) -> int:
    try:
        stored = await asyncio.gather(*(p.store.get_session(e.session.session_id) for e in due))
        ending: list[LocalSession] = []
        for local, s in zip(due, stored, strict=True):
            if s is None or s.replica != p.replica_id or s.last_heartbeat > local.persisted:
                p.live.remove(local.session.session_id)
            else:
                ending.append(local)
        if not ending:
            return 0
        async with holding_back(p, min(e.deadline for e in ending)):
            return await _end_expired(p, [_expired(e) for e in ending])
    except Exception:
        for local in due:
            if p.live.get(local.session.session_id) is local:
                p.live.keep(local)  # decide again on the next round
        log.exception("expiry check failed; will retry", extra={"sessions": len(due)})
        return 0


async def persist_progress(p: Presence, *, everything: bool = False) -> int:
    """Write back the heartbeat progress that is due (or all of it, at shutdown); sessions
    found gone from the store were ended elsewhere and are dropped from memory."""
    due = p.live.all_dirty() if everything else p.live.due_persists(p.clock(), limit=10_000)
    if not due:
        return 0
    progress = [(e.session.session_id, e.last_heartbeat, e.deadline) for e in due]
    missing = await p.store.persist_heartbeats(progress)
    for entry, (sid, beat, _) in zip(due, progress, strict=True):
        if sid in missing:
            p.live.remove(sid)
        else:
            p.live.persisted(entry, beat)
    return len(due)


async def refresh_liveness(p: Presence, outage_after_seconds: float) -> None:
    """Mark the service alive; on the first start after a full outage, record the resume time
    so that sessions get a fresh timeout (clients could not heartbeat while we were down)."""
    now = p.clock()
    previous = await p.store.mark_alive(now)
    if previous is not None and (now - previous).total_seconds() > outage_after_seconds:
        log.warning("service was down since %s: deferring expiries", previous.isoformat())
        await p.store.record_outage_resumed(now)
    p.resumed_at = await p.store.outage_resumed_at()


async def prune_once(p: Presence, retention: timedelta, limit: int) -> tuple[int, int]:
    """One bounded retention round (works without TTL indexes): published records and
    session ends older than ``retention``; every agent's head transition stays."""
    return await p.store.prune(p.clock() - retention, limit)
