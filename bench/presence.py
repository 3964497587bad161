"""Presence benchmark: SignIn and Heartbeat throughput + p50/p99, vs a bare grpc.aio server.

Both servers run as **subprocesses** (``python -m presence_service`` against the devstack on
a throw-away database, and ``python -m bench.presence --canned``, a bare grpc.aio server
answering canned responses); the client (this process) is identical for both, so the ratio
isolates the service's own work (auth, validation, FerretDB round trips, event claims) and
neither server shares an event loop with the load generator.

Env knobs: BENCH_SECONDS (per phase, default 8), BENCH_CONCURRENCY (default 32),
BENCH_AGENTS (default 200), BENCH_INPROCESS=1 (old mode: both servers in this process, on
the client's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from inbox.presence.v1 import presence_pb2 as pb
from inbox.presence.v1 import presence_pb2_grpc as pb_grpc
from inbox_kit.auth import mint_token
from inbox_testing import free_port, stop_process, wait_serving
from pymongo import AsyncMongoClient

from bench.common import LoadResult, Metric, closed_loop, start_canned_server, write_results

SECRET = "bench-secret-0123456789abcdef0123456789"
SERVICE = "inbox.presence.v1.PresenceService"


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
) -> LoadResult:
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
        return await closed_loop(call, concurrency=concurrency, seconds=seconds)


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
    """Yield (presence address, baseline address, mongodb uri)."""
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
        runtime, _ = await bootstrap(settings)
        await runtime.start()
        canned, canned_address = await start_canned_server(SERVICE, _canned_responses())
        try:
            yield runtime.grpc.address, canned_address, settings.mongodb_uri
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
        yield address, line.decode().strip(), mongodb_uri
    finally:
        stop_process(canned_proc)
        stop_process(service_proc)


async def _measure(
    presence_address: str,
    canned_address: str,
    tokens: list[str],
    results: dict[tuple[str, str], LoadResult],
    concurrency: int,
    seconds: float,
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
        for target, address in (
            ("baseline", canned_address),
            ("presence", presence_address),
        ):
            results[(kind, target)] = await _phase(
                address, tokens, kind, sessions, concurrency=concurrency, seconds=seconds
            )
            r = results[(kind, target)]
            print(
                f"{kind:9s} {target:8s}: {r.throughput:8.0f} calls/s  p50 {r.p50_ms:6.2f} ms"
                f"  p99 {r.p99_ms:6.2f} ms  errors {r.errors}"
            )


async def _run() -> list[Metric]:
    seconds = float(os.environ.get("BENCH_SECONDS", "8"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "32"))
    n_agents = int(os.environ.get("BENCH_AGENTS", "200"))
    org = f"bench-org-{uuid.uuid4().hex[:8]}"
    agents = [f"agent-{i:04d}" for i in range(n_agents)]
    tokens = [mint_token(SECRET, org_id=org, agent_id=a) for a in agents]
    database = f"bench_presence_{uuid.uuid4().hex[:8]}"

    results: dict[tuple[str, str], LoadResult] = {}
    mongodb_uri = ""
    try:
        async with _servers(database) as (presence_address, canned_address, mongodb_uri):
            await _measure(presence_address, canned_address, tokens, results, concurrency, seconds)
    finally:
        if mongodb_uri:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
            await client.drop_database(database)
            await client.close()

    metrics = []
    for kind in ("sign_in", "heartbeat"):
        mine, base = results[(kind, "presence")], results[(kind, "baseline")]
        metrics.append(
            Metric(
                metric=f"{kind}_throughput",
                value=round(mine.throughput, 1),
                unit="calls/s",
                baseline_value=round(base.throughput, 1),
                ratio=round(mine.throughput / base.throughput, 3) if base.throughput else None,
                p50_ms=round(mine.p50_ms, 3),
                p99_ms=round(mine.p99_ms, 3),
            )
        )
        metrics.append(
            Metric(
                metric=f"{kind}_baseline_latency",
                value=round(base.throughput, 1),
                unit="calls/s",
                p50_ms=round(base.p50_ms, 3),
                p99_ms=round(base.p99_ms, 3),
            )
        )
        metrics.append(
            Metric(
                metric=f"{kind}_errors",
                value=float(mine.errors),
                unit="calls",
                target="0",
                met=mine.errors == 0,
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
