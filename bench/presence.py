"""Presence benchmark: SignIn and Heartbeat throughput + p50/p99, vs a bare grpc.aio server.

Both servers run as **subprocesses** (``python -m presence_service`` against the devstack on
a throw-away database, and ``python -m bench.presence --canned``, a bare grpc.aio server
answering canned responses); the client (this process) is identical for both, so the ratio
isolates the service's own work (auth, validation, FerretDB round trips, event claims) and
neither server shares an event loop with the load generator. Every phase (sign-in bursts,
sign-outs, ForceSignOut, heartbeats, sign-ins) runs against both, so every metric carries its
same-run baseline. The heartbeat and sign-in phases also account the CPU they cost per call
by process (``/proc``: the server, this client and, on the devstack, FerretDB and Kafka;
metrics ``*_cpu_ms_per_call*``, the bare server's run as baseline): on a few shared cores the
throughput ratio is a CPU budget, and this says who spends it.

The heartbeat and sign-in phases run as BENCH_ROUNDS (default 3) short rounds, bare server and
presence interleaved (the order alternating), each round BENCH_SECONDS / BENCH_ROUNDS long: the
throughput ratio is the median of the per-round ratios (every round in the JSON as
``*_throughput_round_<n>``), the value, latencies and CPU are pooled over the rounds.

Env knobs: BENCH_SECONDS (per phase, default 8), BENCH_CONCURRENCY (default 32),
BENCH_AGENTS (default 200), BENCH_INPROCESS=1 (old mode: both servers in this process, on
the client's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from inbox.presence.v1 import presence_pb2 as pb
from inbox.presence.v1 import presence_pb2_grpc as pb_grpc
from inbox_contracts.topics import PRESENCE
from inbox_kit.auth import mint_token
from inbox_testing import TopicProbe, free_port, stop_process, wait_serving
from pymongo import AsyncMongoClient

from bench.common import (
    SECRET,
    CpuMeter,
    LoadResult,
    Metric,
    closed_loop,
    devstack_pids,
    median,
    start_canned_server,
    throughput_metric,
    write_results,
)

SERVICE = "inbox.presence.v1.PresenceService"
TRANSITION_TYPES = ("inbox.presence.agent_signed_in.v1", "inbox.presence.agent_signed_out.v1")


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


async def _phase(
    address: str,
    tokens: list[str],
    kind: str,
    sessions: list[str],
    *,
    concurrency: int,
    seconds: float,
    cpu_pids: Mapping[str, int],
) -> tuple[LoadResult, dict[str, float]]:
    """The phase's load result and, per process of ``cpu_pids``, its CPU ms per call."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.PresenceServiceStub(channel)
        mds = [(("authorization", f"Bearer {t}"),) for t in tokens]

        call: Callable[[int], Awaitable[Any]]
        if kind == "sign_in":

            async def call(i: int) -> Any:
                return await stub.SignIn(pb.SignInRequest(), metadata=mds[i % len(mds)])
        else:

            async def call(i: int) -> Any:
                j = i % len(sessions)
                return await stub.Heartbeat(
                    pb.HeartbeatRequest(session_id=sessions[j]), metadata=mds[j % len(mds)]
                )

        await closed_loop(call, concurrency=concurrency, seconds=min(1.0, seconds))  # warm-up
        meter = CpuMeter(cpu_pids)
        meter.start()
        result = await closed_loop(call, concurrency=concurrency, seconds=seconds)
        return result, meter.per_call(result.calls)


def _canned_responses() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "SignIn": pb.SignInResponse(
            session_id=str(uuid.uuid4()),
            heartbeat_interval=Duration(seconds=15),
            session_timeout=Duration(seconds=45),
            expires_at=_ts(now + timedelta(seconds=45)),
        ),
        "Heartbeat": pb.HeartbeatResponse(expires_at=_ts(now + timedelta(seconds=45))),
        "SignOut": pb.SignOutResponse(agent_signed_out=True),
        "ForceSignOut": pb.ForceSignOutResponse(ended_sessions=10),
    }


async def _canned_main() -> None:
    """Subprocess mode: the bare grpc.aio baseline; prints its address, stops on SIGTERM."""
    server, address = await start_canned_server(SERVICE, _canned_responses())
    print(address, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def _spawn(args: list[str], env: dict[str, str], *, capture: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE if capture else None
    )


@contextlib.asynccontextmanager
async def _servers(database: str) -> Any:
    """Yield (presence address, baseline address, mongodb uri, the two servers' pids by
    target - empty in process)."""
    from presence_service.settings import PresenceSettings

    if os.environ.get("BENCH_INPROCESS"):
        from presence_service.bootstrap import bootstrap

        settings = PresenceSettings(
            mongodb_database=database,
            grpc_port=0,
            metrics_port=0,
            jwt_secret=SECRET,
            log_level="WARNING",
        )
        runtime = bootstrap(settings).runtime
        await runtime.start()
        canned, canned_address = await start_canned_server(SERVICE, _canned_responses())
        try:
            yield runtime.grpc.address, canned_address, settings.mongodb_uri, {}
        finally:
            await canned.stop(0)
            await runtime.stop()
        return

    mongodb_uri = PresenceSettings().mongodb_uri
    port = free_port()
    env = {
        **os.environ,
        "PRESENCE_MONGODB_DATABASE": database,
        "PRESENCE_GRPC_PORT": str(port),
        "PRESENCE_METRICS_PORT": "0",
        "PRESENCE_JWT_SECRET": SECRET,
        "PRESENCE_LOG_LEVEL": "WARNING",
    }
    service_proc = _spawn(["-m", "presence_service"], env, capture=False)
    canned_proc = _spawn(["-m", "bench.presence", "--canned"], dict(os.environ), capture=True)
    try:
        assert canned_proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(canned_proc.stdout.readline), 30)
        address = f"127.0.0.1:{port}"
        await asyncio.to_thread(wait_serving, address, service_proc)
        pids = {"presence": service_proc.pid, "baseline": canned_proc.pid}
        yield address, line.decode().strip(), mongodb_uri, pids
    finally:
        stop_process(canned_proc)
        stop_process(service_proc)


async def paced(
    call: Callable[[int], Awaitable[Any]], *, calls: int, rate: float, max_in_flight: int
) -> LoadResult:
    """``calls`` calls started at ``rate`` per second, at most ``max_in_flight`` at once;
    latency counts from each call's scheduled start (waiting for a free slot included)."""
    latencies: list[float] = []
    errors = 0
    slots = asyncio.Semaphore(max_in_flight)
    loop = asyncio.get_running_loop()
    begin = loop.time()

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = begin + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        async with slots:
            try:
                await call(i)
            except Exception:
                errors += 1
                return
        latencies.append((loop.time() - scheduled) * 1000)

    await asyncio.gather(*(one(i) for i in range(calls)))
    return LoadResult(len(latencies), errors, loop.time() - begin, latencies)


async def _measure(
    presence_address: str,
    canned_address: str,
    tokens: list[str],
    results: dict[tuple[str, str], LoadResult],
    concurrency: int,
    seconds: float,
    server_pids: Mapping[str, int],
    cpu: dict[tuple[str, str], dict[str, float]],
    per_round: dict[tuple[str, str], list[LoadResult]],
    rounds: int,
) -> None:
    # sessions to heartbeat: one per agent, created up front (agent i owns session i)
    async with grpc.aio.insecure_channel(presence_address) as channel:
        stub = pb_grpc.PresenceServiceStub(channel)
        sessions = [
            (
                await stub.SignIn(pb.SignInRequest(), metadata=(("authorization", f"Bearer {t}"),))
            ).session_id
            for t in tokens
        ]
    for kind in ("heartbeat", "sign_in"):
        pooled_cpu: dict[str, dict[str, float]] = {"baseline": {}, "presence": {}}
        for r in range(rounds):
            # short interleaved rounds, the order alternating: the machine's swings hit both
            # servers alike, and the median of the per-round ratios resists one bad round
            order = [("baseline", canned_address), ("presence", presence_address)]
            for target, address in order if r % 2 == 0 else order[::-1]:
                # CPU of every process on the machine's cores that the calls keep busy
                pids = {**devstack_pids(), "client": os.getpid()}
                if target in server_pids:
                    pids["server"] = server_pids[target]
                result, per_call = await _phase(
                    address,
                    tokens,
                    kind,
                    sessions,
                    concurrency=concurrency,
                    seconds=seconds / rounds,
                    cpu_pids=pids if server_pids else {},
                )
                per_round.setdefault((kind, target), []).append(result)
                for name, ms in per_call.items():  # CPU ms spent, summed over the rounds
                    spent = pooled_cpu[target].get(name, 0.0)
                    pooled_cpu[target][name] = spent + ms * result.calls
                _print(f"{kind} r{r + 1}", target, result)
                if per_call:
                    print(
                        f"{'':16s} {'':8s}  CPU ms per call: "
                        + ", ".join(f"{n} {v:.3f}" for n, v in sorted(per_call.items()))
                    )
        for target in ("baseline", "presence"):
            parts = per_round[(kind, target)]
            results[(kind, target)] = pooled = LoadResult(
                sum(p.calls for p in parts),
                sum(p.errors for p in parts),
                sum(p.seconds for p in parts),
                [ms for p in parts for ms in p.latencies_ms],
            )
            cpu[(kind, target)] = {
                name: spent / pooled.calls if pooled.calls else float("nan")
                for name, spent in pooled_cpu[target].items()
            }
            _print(f"{kind} (all)", target, pooled)


def _round_metrics(
    kind: str, per_round: Mapping[tuple[str, str], list[LoadResult]]
) -> tuple[float, list[Metric]]:
    """The median of the per-round ratios (presence / bare server of the same round) and
    every round's numbers."""
    pairs = list(zip(per_round[(kind, "presence")], per_round[(kind, "baseline")], strict=True))
    ratios = [m.throughput / b.throughput if b.throughput else 0.0 for m, b in pairs]
    rows = [
        Metric(
            metric=f"{kind}_throughput_round_{i + 1}",
            value=round(m.throughput, 1),
            unit="calls/s",
            baseline_value=round(b.throughput, 1),
            ratio=round(ratio, 3),
            p50_ms=round(m.p50_ms, 2),
            p99_ms=round(m.p99_ms, 2),
            target="(round)",
        )
        for i, ((m, b), ratio) in enumerate(zip(pairs, ratios, strict=True))
    ]
    return median(ratios), rows


def _cpu_metrics(kind: str, cpu: Mapping[tuple[str, str], dict[str, float]]) -> list[Metric]:
    """CPU ms per call, all measured processes together and each (server, client, ferretdb,
    kafka), with the bare server's run as the baseline: the ratio of the totals is the CPU
    budget that bounds the throughput ratio on a machine whose cores they share."""
    mine, base = cpu.get((kind, "presence"), {}), cpu.get((kind, "baseline"), {})
    if not mine or not base:
        return []
    out = [
        Metric(
            metric=f"{kind}_cpu_ms_per_call",
            value=round(sum(mine.values()), 3),
            unit="ms",
            baseline_value=round(sum(base.values()), 3),
            ratio=round(sum(mine.values()) / sum(base.values()), 3),
            target="(accounting)",
        )
    ]
    for name in sorted(mine):
        out.append(
            Metric(
                metric=f"{kind}_cpu_ms_per_call_{name}",
                value=round(mine[name], 3),
                unit="ms",
                baseline_value=round(base.get(name, 0.0), 3),
                target="(accounting)",
            )
        )
    return out


def _print(kind: str, target: str, r: LoadResult) -> None:
    print(
        f"{kind:16s} {target:8s}: {r.throughput:8.0f} calls/s  p50 {r.p50_ms:7.2f} ms"
        f"  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"
    )


async def _bursts(
    presence_address: str,
    canned_address: str,
    org: str,
    results: dict[tuple[str, str], LoadResult],
    *,
    size: int,
    in_flight: int,
) -> list[str]:
    """Sign-in bursts of agents that were signed out (every call is a transition): one at
    peak (closed loop), one paced at half of that peak; then all of them sign out; then
    ForceSignOut of agents with many sessions. Returns the agents touched."""
    fresh = [f"burst-{i:05d}" for i in range(2 * size)]
    many = [f"many-{i:03d}" for i in range(10)]
    for target, address in (("baseline", canned_address), ("presence", presence_address)):
        async with grpc.aio.insecure_channel(address) as channel:
            burst = _Burst(pb_grpc.PresenceServiceStub(channel), org, fresh + many)
            peak = await closed_loop(
                burst.signer(fresh[:size]), concurrency=in_flight, seconds=120, calls=size
            )
            results[("sign_in_burst_peak", target)] = peak
            _print("sign_in_burst_peak", target, peak)
            half = await paced(
                burst.signer(fresh[size:], first=0),
                calls=size,
                rate=max(1.0, peak.throughput / 2),
                max_in_flight=in_flight,
            )
            results[("sign_in_burst_half", target)] = half
            _print("sign_in_burst_half", target, half)
            outs = await closed_loop(
                burst.sign_out(fresh), concurrency=in_flight, seconds=120, calls=2 * size
            )
            results[("sign_out", target)] = outs
            _print("sign_out", target, outs)
            for agent in many:  # 10 sessions each
                for _ in range(10):
                    with contextlib.suppress(grpc.aio.AioRpcError):  # counted below if short
                        await burst.signer([agent], first=0)(0)
            forced = await closed_loop(
                burst.force(many), concurrency=len(many), seconds=60, calls=len(many)
            )
            results[("force_sign_out", target)] = forced
            _print("force_sign_out", target, forced)
    return fresh + many


class _Burst:
    def __init__(self, stub: Any, org: str, agents: list[str]) -> None:
        self.stub = stub
        self.md = {
            a: (("authorization", f"Bearer {mint_token(SECRET, org_id=org, agent_id=a)}"),)
            for a in agents
        }
        admin = mint_token(SECRET, org_id=org, agent_id="bench-admin", role="admin")
        self.admin_md = (("authorization", f"Bearer {admin}"),)
        self.sessions: dict[str, str] = {}

    def signer(self, agents: list[str], *, first: int = 1) -> Callable[[int], Awaitable[None]]:
        """Call number ``i`` signs in ``agents[i - first]``."""

        async def call(i: int) -> None:
            agent = agents[i - first]
            r = await self.stub.SignIn(pb.SignInRequest(), metadata=self.md[agent], timeout=30)
            self.sessions[agent] = r.session_id

        return call

    def sign_out(self, agents: list[str]) -> Callable[[int], Awaitable[Any]]:
        async def call(i: int) -> Any:
            agent = agents[i - 1]
            return await self.stub.SignOut(
                pb.SignOutRequest(session_id=self.sessions[agent]),
                metadata=self.md[agent],
                timeout=30,
            )

        return call

    def force(self, agents: list[str]) -> Callable[[int], Awaitable[Any]]:
        async def call(i: int) -> Any:
            return await self.stub.ForceSignOut(
                pb.ForceSignOutRequest(agent_id=agents[i - 1]), metadata=self.admin_md, timeout=30
            )

        return call


async def _count_published(
    probe: TopicProbe, org: str, expected: int, timeout: float = 60.0
) -> tuple[int, int]:
    """(records, distinct event ids) of ``org``'s transitions once ``expected`` distinct ids
    arrived (or the timeout passed), plus a drain for late duplicates."""

    def tally() -> tuple[int, int]:
        mine = [json.loads(r.value or b"{}") for r in probe.records]
        mine = [e for e in mine if e.get("data", {}).get("org_id") == org]
        transitions = [e for e in mine if e["type"] in TRANSITION_TYPES]
        return len(transitions), len({e["id"] for e in transitions})

    deadline = asyncio.get_running_loop().time() + timeout
    while tally()[1] < expected and asyncio.get_running_loop().time() < deadline:
        await probe.drain(0.5)
    await probe.drain(2.0)
    return tally()


async def _run() -> list[Metric]:
    seconds = float(os.environ.get("BENCH_SECONDS", "8"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "32"))
    n_agents = int(os.environ.get("BENCH_AGENTS", "200"))
    burst = int(os.environ.get("BENCH_BURST", "500"))
    rounds = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
    org = f"bench-org-{uuid.uuid4().hex[:8]}"
    agents = [f"agent-{i:04d}" for i in range(n_agents)]
    tokens = [mint_token(SECRET, org_id=org, agent_id=a) for a in agents]
    database = f"bench_presence_{uuid.uuid4().hex[:8]}"
    from presence_service.settings import PresenceSettings

    results: dict[tuple[str, str], LoadResult] = {}
    per_round: dict[tuple[str, str], list[LoadResult]] = {}
    cpu: dict[tuple[str, str], dict[str, float]] = {}
    mongodb_uri = ""
    async with TopicProbe(PresenceSettings().kafka_bootstrap_servers, PRESENCE.name) as probe:
        try:
            async with _servers(database) as (
                presence_address,
                canned_address,
                mongodb_uri,
                server_pids,
            ):
                # bursts first, on a store holding only their own sessions: on FerretDB every
                # sign-out scans the live sessions (README "Known limits")
                touched = await _bursts(
                    presence_address, canned_address, org, results, size=burst, in_flight=32
                )
                await _measure(
                    presence_address,
                    canned_address,
                    tokens,
                    results,
                    concurrency,
                    seconds,
                    server_pids,
                    cpu,
                    per_round,
                    rounds,
                )
                # every burst agent: in + out; the 200 agents: in; the "many" agents: in + out
                expected = 2 * (len(touched)) + n_agents
                records, distinct = await _count_published(probe, org, expected)
        finally:
            if mongodb_uri:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
                await client.drop_database(database)
                await client.close()
    print(f"transitions: expected {expected}, distinct published {distinct}, records {records}")

    metrics = []
    for kind in ("sign_in", "heartbeat"):
        mine, base = results[(kind, "presence")], results[(kind, "baseline")]
        min_ratio = 0.5 if kind == "sign_in" else 0.7
        pooled = throughput_metric(
            f"{kind}_throughput",
            mine,
            base,
            target=f">= {min_ratio} x baseline (median of the per-round ratios)",
        )
        ratio, rows = _round_metrics(kind, per_round)
        pooled.ratio = round(ratio, 3)
        pooled.met = ratio >= min_ratio and mine.errors == 0
        print(f"{kind}: per-round ratios {[r.ratio for r in rows]}, median {ratio:.3f}")
        metrics.append(pooled)
        metrics.extend(rows)
        metrics.append(
            Metric(
                metric=f"{kind}_baseline_latency",
                value=round(base.throughput, 1),
                unit="calls/s",
                p50_ms=round(base.p50_ms, 3),
                p99_ms=round(base.p99_ms, 3),
            )
        )
        metrics.extend(_cpu_metrics(kind, cpu))
        metrics.append(
            Metric(
                metric=f"{kind}_errors",
                value=float(mine.errors),
                unit="calls",
                target="0",
                met=mine.errors == 0,
            )
        )
    peak, peak_base = (
        results[("sign_in_burst_peak", "presence")],
        results[("sign_in_burst_peak", "baseline")],
    )
    metrics.append(
        throughput_metric(f"sign_in_burst_{burst}_peak", peak, peak_base, target="(reference)")
    )
    half, half_base = (
        results[("sign_in_burst_half", "presence")],
        results[("sign_in_burst_half", "baseline")],
    )
    metrics.append(
        Metric(
            metric=f"sign_in_burst_{burst}_at_half_peak_p99",
            value=round(half.p99_ms, 2),
            unit="ms",
            baseline_value=round(half_base.p99_ms, 2),
            ratio=round(half.p99_ms / half_base.p99_ms, 3) if half_base.p99_ms else None,
            p50_ms=round(half.p50_ms, 2),
            p99_ms=round(half.p99_ms, 2),
            target="p99 <= 250 ms, 0 errors",
            met=half.p99_ms <= 250 and half.errors == 0,
        )
    )
    for kind, target, bound_ms in (
        ("sign_out", "0 errors", None),
        ("force_sign_out", "p99 <= 500 ms, 0 errors", 500.0),
    ):
        r, base = results[(kind, "presence")], results[(kind, "baseline")]
        metrics.append(
            Metric(
                metric=f"{kind}_latency",
                value=round(r.throughput, 1),
                unit="calls/s",
                baseline_value=round(base.throughput, 1),
                ratio=round(r.throughput / base.throughput, 3) if base.throughput else None,
                p50_ms=round(r.p50_ms, 2),
                p99_ms=round(r.p99_ms, 2),
                target=target,
                met=r.errors == 0 and (bound_ms is None or r.p99_ms <= bound_ms),
            )
        )
    metrics.append(
        Metric(
            metric="published_events_per_transition",
            value=round(records / distinct, 4) if distinct else float("nan"),
            unit="records/transition",
            baseline_value=float(expected),
            target="<= 1.01 and every transition published",
            met=bool(distinct) and records / distinct <= 1.01 and distinct >= expected,
        )
    )
    return metrics


def main() -> None:
    if sys.argv[1:2] == ["--canned"]:
        asyncio.run(_canned_main())
        return
    write_results("presence", asyncio.run(_run()))


if __name__ == "__main__":
    main()
