"""Benchmark of automatic assignment (PRODUCT.md §4): ``make bench NAME=assignment``.

One routing instance in-process on the devstack, 200 agents signed in (presence events
published by the benchmark), "Automatic assignment" and "Remove assignment" on.

Presence progress marks are published as presence does with its defaults (``ProgressMarks``,
every 40 ms, watermark 40 ms behind the clock).

(a) baseline: the raw aiokafka consume -> produce pipe (``bench.routing.raw_pipe``);
(b) sustained assignments/s of one instance: a backlog of new conversations, first to last
    ``ConversationAutoAssigned`` on inbox.routing.v1 (the whole loop: owner -> dispatch topic
    -> dispatcher -> proposal -> owner review -> event), and its ratio to (a);
(c) inbound -> auto-assigned latency for 20 s at half of the peak measured in (b);
(d) an agent holding 50 NEW conversations signs out: R1 puts them back in the queue and the
    dispatcher hands them to others; sign-out -> last of the 50 assigned, 3 rounds;
(e) the ceiling of the code alone: the same owner + dispatcher over in-memory adapters (no
    Kafka, no database; events still built and serialized), assignments/s on this machine;
(f) where one conversation's time goes, at a low rate (``HOP_RATE``/s, the loop far from its
    ceiling), before (b): each hop from the records' own timestamps on the topics (inbound
    on the messages topic -> presence progress relayed past its time -> its waiting state on
    the dispatch topic -> the proposal -> ConversationAutoAssigned), and each consumer loop's
    busy share (time handling batches per second) over the phase.

``BENCH_ASSIGNMENT_ROLES=split`` runs the dispatcher in a process of its own
(``python -m routing_service`` with ``ROUTING_ROLES=dispatcher``) beside the in-process
instance with ``ROUTING_ROLES=owner`` (README, "Roles"); the default runs both roles in one
process, as a default deployment does. The dispatcher loop's busy share is then not reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from inbox_contracts import CloudEvent, EncodedEvent, EventData
from inbox_contracts.events import (
    AssignmentProposed,
    AssignmentSettingsChanged,
)
from inbox_contracts.topics import (
    CONVERSATIONS,
    MESSAGES,
    PRESENCE,
    ROUTING,
    ROUTING_COMMANDS,
    ROUTING_DISPATCH,
    ROUTING_PROPOSALS,
)
from inbox_kit.gc_tuning import tuned_gc
from presence_service.settings import PresenceSettings
from routing_service.adapters.memory import (
    InMemoryStore,
    InMemoryViews,
    RecordingDecisionPublisher,
)
from routing_service.bootstrap import Routing, bootstrap
from routing_service.domain.dispatch import OrgDispatcher
from routing_service.domain.model import PresenceEntry, SettingChange
from routing_service.service_layer.auto_assign import AutoAssigner
from routing_service.service_layer.dispatcher import (
    Dispatcher,
    DispatchRecord,
    PartitionState,
    decoded_proposals,
)
from routing_service.service_layer.latency import format_split, marker, split_since
from routing_service.service_layer.owner import ConversationOwner, Delivery, EventTime
from routing_service.settings import RoutingSettings
from routing_testing import (
    FAR_FUTURE,
    ProgressMarks,
    SimClock,
    assigned,
    complete_now,
    inbound,
    partition_of,
    signed_in,
    signed_out,
)

from bench.common import SECRET, Metric, loop_batch_totals, percentile, write_results
from bench.routing import KAFKA, MONGO, commit_end, drop, produce, raw_pipe

AGENTS = 200
N_BACKLOG = int(os.environ.get("BENCH_ASSIGNMENT_BACKLOG", "10000"))
STEADY_SECONDS = 20.0
AUTO = b"inbox.routing.auto_assigned.v1"
HOP_RATE, HOP_SECONDS = 20.0, 8.0
SPLIT = os.environ.get("BENCH_ASSIGNMENT_ROLES", "one") == "split"
#: Presence's defaults: marks every PRESENCE_PROGRESS_INTERVAL_SECONDS, watermark about
#: now - (one interval + a database round trip), taken here as one interval
MARK_INTERVAL = PresenceSettings.model_fields["progress_interval_seconds"].default
MARK_MARGIN = timedelta(seconds=MARK_INTERVAL)


class AssignedWatch:
    """Every ConversationAutoAssigned of one org from now on, with its arrival time."""

    def __init__(self, org: str) -> None:
        self.org = org
        #: conversation -> event id -> first seen (indexed: the waits below poll it every
        #: 10 ms in routing's own event loop, so they must not scan everything seen)
        self.by_conversation: dict[str, dict[str, float]] = {}
        #: conversations in the order of their first assignment seen (``Countdown`` reads
        #: only what arrived since its last look)
        self.arrivals: list[str] = []
        self._consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        cluster = await self._consumer._client.fetch_all_metadata()
        tps = [TopicPartition(ROUTING.name, p) for p in cluster.partitions_for_topic(ROUTING.name)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        needle = self.org.encode()
        while True:
            batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for recs in batches.values():
                for r in recs:
                    if r.value and AUTO in r.value and needle in r.value:
                        event = json.loads(r.value)
                        c = event["data"]["conversation_id"]
                        seen = self.by_conversation.get(c)
                        if seen is None:
                            seen = self.by_conversation[c] = {}
                            self.arrivals.append(c)
                        seen.setdefault(event["id"], now)

    def countdown(self, conversations: set[str]) -> Countdown:
        return Countdown(self, conversations)

    def times_for(self, conversations: set[str]) -> dict[str, float]:
        return {
            c: max(self.by_conversation[c].values())
            for c in conversations & self.by_conversation.keys()
        }

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()


class Countdown:
    """Until every one of ``conversations`` was assigned, checked in O(new arrivals): a
    check of the whole set every 10 ms (a set intersection) cost ~5% of the process's CPU during
    the 10,000-conversation backlog, in routing's own event loop (py-spy)."""

    def __init__(self, watch: AssignedWatch, conversations: set[str]) -> None:
        self._watch = watch
        self._left = conversations - watch.by_conversation.keys()
        self._seen = len(watch.arrivals)

    def done(self) -> bool:
        arrivals = self._watch.arrivals
        if self._seen < len(arrivals):
            self._left.difference_update(arrivals[self._seen :])
            self._seen = len(arrivals)
        return not self._left


def settings_for(tag: str) -> RoutingSettings:
    return RoutingSettings(
        kafka_bootstrap_servers=KAFKA,
        mongodb_uri=MONGO,
        mongodb_database=f"bench_assignment_{tag}",
        grpc_port=0,
        metrics_port=0,
        consumer_group=f"routing-aa-bench-{tag}",
        presence_consumer_group=f"routing-aa-presence-bench-{tag}",
        dispatcher_consumer_group=f"routing-aa-dispatcher-bench-{tag}",
        initial_offset="latest",
        jwt_secret=SECRET,
        log_level="WARNING",
        shutdown_grace_seconds=0.5,
    )


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


def start_dispatcher_process(s: RoutingSettings) -> subprocess.Popen[bytes]:
    """``python -m routing_service`` running only the dispatcher role, on ``s``'s database and
    groups (split mode)."""
    env = {
        **os.environ,
        "ROUTING_ROLES": "dispatcher",
        "ROUTING_KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "ROUTING_MONGODB_URI": MONGO,
        "ROUTING_MONGODB_DATABASE": s.mongodb_database,
        "ROUTING_DISPATCHER_CONSUMER_GROUP": s.dispatcher_consumer_group,
        "ROUTING_INITIAL_OFFSET": s.initial_offset,
        "ROUTING_JWT_SECRET": SECRET,
        "ROUTING_GRPC_PORT": "0",
        "ROUTING_METRICS_PORT": "0",
        "ROUTING_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "routing_service"], env=env)


async def dispatcher_ready(routing: Routing, timeout: float) -> None:
    """Every dispatch partition taken over by the dispatcher process (a take-over stores a
    snapshot of each partition it starts from)."""
    partitions = await routing.publisher.partition_count(ROUTING_DISPATCH.name)
    deadline = time.monotonic() + timeout
    while True:
        states = [await routing.dispatch_store.load_snapshot(p) for p in range(partitions)]
        if all(st is not None for st in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the dispatcher process took no partitions")
        await asyncio.sleep(0.1)


async def start(
    tag: str, org: str
) -> tuple[Routing, RoutingSettings, subprocess.Popen[bytes] | None]:
    s = settings_for(tag)
    await commit_end(
        s.consumer_group,
        [MESSAGES.name, CONVERSATIONS.name, ROUTING_COMMANDS.name, ROUTING_PROPOSALS.name],
    )
    await commit_end(s.presence_consumer_group, [PRESENCE.name])
    dispatcher: subprocess.Popen[bytes] | None = None
    if SPLIT:
        s = s.model_copy(update={"roles": "owner"})
        dispatcher = start_dispatcher_process(s)
    routing = bootstrap(s)
    await routing.runtime.start()
    await routing.ready(timeout=120)
    if SPLIT:
        await dispatcher_ready(routing, timeout=120)
    # both settings on, as UpdateRoutingSettings / UpdateAssignmentSettings store and announce
    await routing.store.append_setting(org, SettingChange(datetime.now(UTC), True, "bench"))
    event = CloudEvent.wrap(
        AssignmentSettingsChanged(
            org_id=org, enabled=True, changed_by="bench", occurred_at=datetime.now(UTC)
        ),
        source="/bench",
    )
    await routing.publisher.publish_dispatch_inputs([event])
    return routing, s, dispatcher


async def run() -> list[Metric]:
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    tag = uuid.uuid4().hex[:8]
    org = f"org-aa-bench-{tag}"
    metrics: list[Metric] = []
    routing: Routing | None = None
    dispatcher: subprocess.Popen[bytes] | None = None
    watch = AssignedWatch(org)
    # presence progress as the presence service publishes it: without marks the
    # owner waits the fallback (L) before a new conversation counts as waiting
    marks = ProgressMarks(producer, interval=MARK_INTERVAL, margin=MARK_MARGIN)
    await marks.__aenter__()
    try:
        pipe = await raw_pipe(producer, N_BACKLOG)
        print(f"raw pipe: {pipe:.0f} events/s", flush=True)
        print(f"roles: {'owner + dispatcher process' if SPLIT else 'one process'}", flush=True)
        routing, _, dispatcher = await start(tag, org)
        await watch.start()
        agents = [f"agent-{i:03d}" for i in range(AGENTS)]
        now = datetime.now(UTC)
        await produce(producer, [signed_in(org, a, now) for a in agents])
        # warm-up: the loop is live once one conversation got assigned
        for i in range(600):
            c = f"warm-{i}"
            await produce(producer, [inbound(org, c, datetime.now(UTC))])
            try:
                await wait_for(watch.countdown({c}).done, 5, "warm-up")
                break
            except TimeoutError:
                continue

        # (f) the hops of one conversation, at a low rate (before the backlog's history)
        metrics += await hop_trace(producer, org, watch)

        # (b) backlog
        backlog = [f"b-{i:05d}" for i in range(N_BACKLOG)]
        bset = set(backlog)
        events = [inbound(org, c, datetime.now(UTC)) for c in backlog]
        await produce(producer, events)
        cpu_before = time.process_time()
        await wait_for(watch.countdown(bset).done, 300, "backlog assigned")
        cpu = time.process_time() - cpu_before
        times = sorted(watch.times_for(bset).values())
        peak = (N_BACKLOG - 1) / (times[-1] - times[0])
        print(f"assignments: {peak:.0f}/s sustained (backlog {N_BACKLOG})", flush=True)
        # CPU time of the whole process (routing's loops + the benchmark's own clients) per
        # assignment: less affected by the neighbours' load than the wall-clock rate
        cpu_us = cpu / N_BACKLOG * 1e6
        print(f"  process CPU per assignment: {cpu_us:.0f} us", flush=True)
        metrics.append(Metric("process_cpu_per_assignment_backlog", round(cpu_us, 1), "us"))
        metrics.append(
            Metric(
                "auto_assignments_per_s_one_instance",
                round(peak, 1),
                "assignments/s",
                baseline_value=round(pipe, 1),
                ratio=round(peak / pipe, 3),
                target=">= 2000 assignments/s",
                met=peak >= 2000,
            )
        )

        # (c) steady latency at half the peak
        rate = max(50.0, peak / 2)
        sent: dict[str, float] = {}
        tap = Tap(org)
        await tap.start()
        busy_before, started = loop_batch_totals(), time.perf_counter()
        cpu_before, steps_before = time.process_time(), marker()
        i = 0
        while time.perf_counter() - started < STEADY_SECONDS:
            due = int((time.perf_counter() - started) * rate)
            batch = []
            while i < due:
                c = f"s-{i:06d}"
                batch.append(inbound(org, c, datetime.now(UTC)))
                sent[c] = time.perf_counter()
                i += 1
            if batch:
                await produce(producer, batch)
            await asyncio.sleep(0.005)
        sset = set(sent)
        try:
            await wait_for(watch.countdown(sset).done, 120, "steady assigned")
            busy = _busy_since(busy_before, started)
            steady_cpu = time.process_time() - cpu_before
            steady_records = await tap.drain()
        finally:
            await tap.stop()
        got = watch.times_for(sset)
        lat = [(got[c] - sent[c]) * 1000 for c in sent]
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        print(f"steady at {rate:.0f}/s: p50 {p50:.1f} ms p99 {p99:.1f} ms", flush=True)
        print(f"  owner steps: {format_split(split_since(steps_before))}", flush=True)
        sizing = routing.pipeline.owner_loop.sizing  # None: the fixed cap (the default)
        if sizing is not None:
            print(
                f"  owner batch sizing: {'throughput' if sizing.throughput else 'latency'} mode, "
                f"cap {sizing.cap}, rate {sizing.rate or 0:.0f} records/s, "
                f"{sizing.switches} switches to throughput mode so far",
                flush=True,
            )
        steady_cpu_us = steady_cpu / len(sset) * 1e6
        print(f"  process CPU per conversation: {steady_cpu_us:.0f} us", flush=True)
        metrics.append(Metric("process_cpu_per_assignment_steady", round(steady_cpu_us, 1), "us"))
        metrics += hop_metrics(
            "steady_hop", f"{rate:.0f} new conversations/s", sent, steady_records, watch, busy
        )
        metrics.append(
            Metric(
                "inbound_to_auto_assigned_latency_at_half_peak",
                round(p50, 1),
                "ms",
                p50_ms=round(p50, 1),
                p99_ms=round(p99, 1),
                target=f"p99 <= 150 ms (at {rate:.0f} new conversations/s)",
                met=p99 <= 150,
            )
        )

        # (d) an agent with 50 NEW conversations signs out
        rounds: list[float] = []
        for r in range(3):
            holder = f"holder-{r}"
            await produce(producer, [signed_in(org, holder, datetime.now(UTC))])
            held = [f"h{r}-{j:02d}" for j in range(50)]
            hset = set(held)
            setup: list[CloudEvent[EventData]] = []
            for c in held:
                setup.append(inbound(org, c, datetime.now(UTC)))
            await produce(producer, setup)
            await wait_for(watch.countdown(hset).done, 60, "held assigned")
            await produce(producer, [assigned(org, c, holder, datetime.now(UTC)) for c in held])
            await wait_for(
                lambda held=held, holder=holder: all(
                    routing is not None
                    and routing.owner is not None
                    and _assignee(routing, org, c) == holder
                    for c in held
                ),
                60,
                "held by hand",
            )
            first = {c: dict(watch.by_conversation.get(c, {})) for c in held}
            t_out = time.perf_counter()
            await produce(producer, [signed_out(org, holder, datetime.now(UTC))])

            def fresh(first: dict[str, dict[str, float]] = first) -> list[float]:
                # an automatic assignment after the sign-out (a new event id)
                return [
                    t
                    for c, before in first.items()
                    for event_id, t in watch.by_conversation.get(c, {}).items()
                    if event_id not in before
                ]

            await wait_for(lambda: len(fresh()) >= 50, 60, "reassigned after sign-out")
            rounds.append((max(fresh()) - t_out) * 1000)
            print(f"sign-out round {r}: all 50 reassigned after {rounds[-1]:.0f} ms", flush=True)
        sp99 = percentile(rounds, 99)
        metrics.append(
            Metric(
                "sign_out_with_50_new_to_all_reassigned",
                round(percentile(rounds, 50), 1),
                "ms",
                p50_ms=round(percentile(rounds, 50), 1),
                p99_ms=round(sp99, 1),
                target="p99 <= 1000 ms",
                met=sp99 <= 1000,
            )
        )
        ceiling = await code_ceiling(N_BACKLOG)
        print(
            f"code alone (in-memory adapters): {ceiling:.0f} assignments/s "
            f"(the whole loop reaches {peak / ceiling:.2f} of it)",
            flush=True,
        )
        metrics.append(
            Metric(
                "auto_assignments_per_s_code_alone",
                round(ceiling, 1),
                "assignments/s",
                baseline_value=round(pipe, 1),
                ratio=round(ceiling / pipe, 3),
                target="the ceiling of one process (no target)",
            )
        )
    finally:
        await marks.__aexit__(None, None, None)
        await watch.stop()
        if dispatcher is not None:
            dispatcher.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(dispatcher.wait, 30)
            except subprocess.TimeoutExpired:
                dispatcher.kill()
        if routing is not None:
            await routing.runtime.stop()
            await drop(f"bench_assignment_{tag}")
        await producer.stop()
    return metrics


class Tap:
    """The records of one org on the topics of the loop, with their timestamps (CreateTime:
    when the producer sent them)."""

    TOPICS = (MESSAGES.name, ROUTING_COMMANDS.name, ROUTING_DISPATCH.name, ROUTING_PROPOSALS.name)

    def __init__(self, org: str) -> None:
        self.org = org.encode()
        self._consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
        self.tps: list[TopicPartition] = []

    async def start(self) -> None:
        await self._consumer.start()
        cluster = await self._consumer._client.fetch_all_metadata()
        self.tps = [
            TopicPartition(t, p) for t in self.TOPICS for p in cluster.partitions_for_topic(t)
        ]
        self._consumer.assign(self.tps)
        await self._consumer.seek_to_end(*self.tps)
        for tp in self.tps:
            await self._consumer.position(tp)

    async def drain(self) -> list[tuple[str, int, float, dict[str, Any]]]:
        """(topic, partition, timestamp s, event) up to the current end offsets."""
        ends = await self._consumer.end_offsets(self.tps)
        out: list[tuple[str, int, float, dict[str, Any]]] = []
        while True:
            positions = [await self._consumer.position(tp) for tp in self.tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, self.tps, strict=True)):
                return out
            batches = await self._consumer.getmany(timeout_ms=200, max_records=10000)
            for tp, recs in batches.items():
                for r in recs:
                    if not r.value:
                        continue
                    if b"progress_relayed" in r.value or self.org in r.value:
                        out.append(
                            (tp.topic, tp.partition, r.timestamp / 1000, json.loads(r.value))
                        )
        return out

    async def stop(self) -> None:
        await self._consumer.stop()


async def hop_trace(producer: AIOKafkaProducer, org: str, watch: AssignedWatch) -> list[Metric]:
    """(f): one conversation's path, hop by hop, at HOP_RATE new conversations/s."""
    tap = Tap(org)
    await tap.start()
    try:
        sent: dict[str, float] = {}
        busy_before, started = loop_batch_totals(), time.perf_counter()
        i = 0
        while time.perf_counter() - started < HOP_SECONDS:
            if i < int((time.perf_counter() - started) * HOP_RATE):
                c = f"hop-{i:05d}"
                sent[c] = time.perf_counter()
                await produce(producer, [inbound(org, c, datetime.now(UTC))])
                i += 1
            await asyncio.sleep(0.005)
        cset = set(sent)
        await wait_for(watch.countdown(cset).done, 60, "hop trace assigned")
        busy = _busy_since(busy_before, started)
        records = await tap.drain()
    finally:
        await tap.stop()
    return hop_metrics("hop", f"{HOP_RATE:.0f} new conversations/s", sent, records, watch, busy)


def _busy_since(
    before: dict[tuple[str, str], float], started: float
) -> dict[tuple[str, str], float]:
    took = time.perf_counter() - started
    return {k: (v - before.get(k, 0.0)) / took for k, v in loop_batch_totals().items()}


def hop_metrics(
    prefix: str,
    label: str,
    sent: dict[str, float],
    records: list[tuple[str, int, float, dict[str, Any]]],
    watch: AssignedWatch,
    busy: dict[tuple[str, str], float],
) -> list[Metric]:
    """Each hop of the conversations ``sent`` (perf_counter times) from the records' own
    timestamps on the topics, and each consumer loop's busy share (``busy``)."""
    cset = set(sent)
    first: dict[tuple[str, str], float] = {}
    occurred: dict[str, tuple[int, datetime]] = {}
    relays: dict[tuple[str, int], list[tuple[float, datetime]]] = {}
    dispatch_partition: int | None = None
    for topic, partition, ts, e in records:
        d = e["data"]
        if e["type"] == "inbox.routing.presence_progress_relayed.v1":
            marks = [datetime.fromisoformat(m["progress"]) for m in d.get("marks", [])]
            if marks:
                relays.setdefault((topic, partition), []).append((ts, min(marks)))
            continue
        if topic == ROUTING_DISPATCH.name:
            dispatch_partition = partition
        c = d.get("conversation_id")
        if c not in cset:
            continue
        if topic == MESSAGES.name:
            occurred.setdefault(c, (partition, datetime.fromisoformat(d["occurred_at"])))
            hop = "inbound"
        elif topic == ROUTING_PROPOSALS.name:
            hop = "proposal"
        elif d.get("waiting_since") and not d.get("proposal_id"):
            hop = "waiting"
        else:
            continue
        first.setdefault((c, hop), ts)
    for tp_relays in relays.values():
        tp_relays.sort()
    for c, (partition, at) in occurred.items():
        # relayed past the conversation's time: to its owner, and to the org's dispatcher
        for hop, tp in (
            ("progress", (ROUTING_COMMANDS.name, partition)),
            ("dispatch_progress", (ROUTING_DISPATCH.name, dispatch_partition or 0)),
        ):
            reached = next((ts for ts, progress in relays.get(tp, []) if progress >= at), None)
            if reached is not None:
                first[(c, hop)] = reached
    assigned_at = watch.times_for(cset)
    # the watch's clock is perf_counter: place it on the records' wall clock via "sent"
    offset = time.time() - time.perf_counter()
    for c, t in assigned_at.items():
        first[(c, "assigned")] = t + offset
    for c, t in sent.items():
        first.setdefault((c, "sent"), t + offset)
    hops = [
        ("sent", "inbound", "the benchmark's producer"),
        ("inbound", "progress", "presence progress relayed to the owner past its time"),
        ("inbound", "waiting", "owner: its waiting state on the dispatch topic"),
        ("inbound", "dispatch_progress", "presence progress relayed to the dispatcher past it"),
        ("waiting", "proposal", "dispatcher, its hold for presence progress included"),
        ("proposal", "assigned", "owner review -> ConversationAutoAssigned seen"),
        ("sent", "assigned", "end to end"),
    ]
    out: list[Metric] = []
    print(f"{prefix}s at {label} (n={len(sent)}):", flush=True)
    for a, b, what in hops:
        lat = [
            max(0.0, first[(c, b)] - first[(c, a)]) * 1000
            for c in sent
            if (c, a) in first and (c, b) in first
        ]
        if not lat:
            continue
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        print(f"  {a} -> {b} ({what}): p50 {p50:.0f} ms, p99 {p99:.0f} ms", flush=True)
        out.append(
            Metric(
                f"{prefix}_{a}_to_{b}",
                round(p50, 1),
                "ms",
                p50_ms=round(p50, 1),
                p99_ms=round(p99, 1),
            )
        )
    for (loop, kind), per_second in sorted(busy.items()):
        if kind == "count":
            continue
        batches = busy.get((loop, "count"), 0.0)
        print(
            f"  {loop} loop busy {per_second:.0%} of the time, {batches:.0f} batches/s "
            f"({per_second / batches * 1000 if batches else 0:.0f} ms each)",
            flush=True,
        )
        out.append(
            Metric(f"{prefix}_loop_busy_share_{loop}", round(per_second, 3), "share of wall time")
        )
        out.append(Metric(f"{prefix}_loop_batches_per_s_{loop}", round(batches, 1), "batches/s"))
    return out


class _LoopbackPublisher:
    """Collects what the owner and the dispatcher publish (serialized, as on the wire)."""

    def __init__(self) -> None:
        self.dispatch: list[CloudEvent[Any]] = []
        self.proposals: list[CloudEvent[AssignmentProposed]] = []
        self.assigned = 0

    async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
        for e in events:
            e.to_json_bytes()
        self.dispatch += events

    async def publish_auto_assigned(self, events: Sequence[EncodedEvent]) -> None:
        for e in events:
            e.to_json_bytes()
        self.assigned += len(events)

    async def publish_proposals(self, proposals: Sequence[EncodedEvent]) -> None:
        # encoded by the dispatcher already; the owner reads them decoded, as off the wire
        self.proposals += decoded_proposals(proposals)


class _NoSnapshots:
    async def load_snapshot(self, partition: int) -> PartitionState | None:
        return None

    async def save_snapshot(self, state: Any) -> None:
        return None

    def serialize(self, state: PartitionState) -> Any:
        return None

    async def write_assignment_views(self, views: Sequence[Any]) -> None:
        return None

    def assignment_view(self, org: OrgDispatcher) -> Any:
        return None


async def code_ceiling(conversations: int, chunk: int = 500) -> float:
    """(e): assignments/s of the owner + dispatcher code alone, in batches of ``chunk``."""
    org, partitions = "org-ceiling", 6
    store = InMemoryStore()
    loop = _LoopbackPublisher()
    owner = ConversationOwner(
        store,
        RecordingDecisionPublisher(),
        InMemoryViews(store),
        EventTime(timedelta(0), complete_as_of=complete_now(SimClock(FAR_FUTURE))),
        AutoAssigner(loop, store.timelines),
    )
    await owner.assign(range(partitions))
    owner.presence.observe(1, {0: FAR_FUTURE})
    dispatcher = Dispatcher(_NoSnapshots(), loop, snapshot_seconds=1e9, view_seconds=1e9)

    async def at(partition: int, offset: int | None) -> int:
        return 0

    await dispatcher.assign({0}, at)
    offset = 0

    async def dispatch() -> None:
        nonlocal offset
        events, loop.dispatch = loop.dispatch, []
        await dispatcher.handle([DispatchRecord(0, offset + i, e) for i, e in enumerate(events)])
        offset += len(events)

    now = datetime.now(UTC)
    for i in range(AGENTS):
        e = signed_in(org, f"agent-{i:03d}", now)
        entry = PresenceEntry(e.id, e.type, e.data.occurred_at, True)
        await store.record_presence(org, e.subject, entry)
        loop.dispatch.append(e)
    loop.dispatch.append(
        CloudEvent.wrap(
            AssignmentSettingsChanged(
                org_id=org, enabled=True, changed_by="bench", occurred_at=now
            ),
            source="/bench",
        )
    )
    await dispatch()
    events = [
        inbound(org, f"c-{i:06d}", now + timedelta(milliseconds=i)) for i in range(conversations)
    ]
    started = time.perf_counter()
    for i in range(0, conversations, chunk):
        await owner.handle(
            [
                Delivery(MESSAGES.name, partition_of(e.subject, partitions), e)
                for e in events[i : i + chunk]
            ]
        )
        await dispatch()
        proposals, loop.proposals = loop.proposals, []
        await owner.handle(
            [Delivery(ROUTING_PROPOSALS.name, p.data.partition, p) for p in proposals]
        )
        await dispatch()
    took = time.perf_counter() - started
    assert loop.assigned == conversations, f"{loop.assigned} of {conversations} assigned"
    return conversations / took


def _assignee(routing: Routing, org: str, conv: str) -> str | None:
    assert routing.owner is not None
    lg = routing.owner.logs.get((org, conv))
    if lg is None:
        return None
    last = max(
        (e for e in lg.entries.values() if e.assignee_id is not None),
        key=lambda e: e.sort_key,
        default=None,
    )
    return last.assignee_id if last is not None else None


def main() -> None:
    with tuned_gc():  # as ``python -m routing_service`` runs (the benchmark is its process)
        write_results("assignment", asyncio.run(run()))


if __name__ == "__main__":
    main()
