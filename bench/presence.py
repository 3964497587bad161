"""Presence benchmark: SignIn and Heartbeat throughput + p50/p99, vs a bare grpc.aio server.

Both servers run in this process on the same event loop as the client (same client code,
same transport, same serialization), so the ratio isolates the service's own work (auth,
validation, FerretDB round trips, event claims). The presence service runs against the
devstack (Kafka + FerretDB) on a throw-away database.

Env knobs: BENCH_SECONDS (per phase, default 8), BENCH_CONCURRENCY (default 32),
BENCH_AGENTS (default 200).
"""

from __future__ import annotations

import asyncio
import os
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


async def _run() -> list[Metric]:
    from presence_service.bootstrap import bootstrap
    from presence_service.settings import PresenceSettings

    seconds = float(os.environ.get("BENCH_SECONDS", "8"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "32"))
    n_agents = int(os.environ.get("BENCH_AGENTS", "200"))
    org = f"bench-org-{uuid.uuid4().hex[:8]}"
    agents = [f"agent-{i:04d}" for i in range(n_agents)]
    tokens = [mint_token(SECRET, org_id=org, agent_id=a) for a in agents]
    database = f"bench_presence_{uuid.uuid4().hex[:8]}"

    settings = PresenceSettings(
        mongodb_database=database,
        grpc_port=0,
        metrics_port=0,
        jwt_secret=SECRET,
        log_level="WARNING",
    )
    runtime, _ = await bootstrap(settings)
    await runtime.start()
    now = datetime.now(UTC)
    canned, canned_address = await start_canned_server(
        SERVICE,
        {
            "SignIn": pb.SignInResponse(
                session_id=str(uuid.uuid4()),
                heartbeat_interval=Duration(seconds=15),
                session_timeout=Duration(seconds=45),
                expires_at=_ts(now + timedelta(seconds=45)),
            ),
            "Heartbeat": pb.HeartbeatResponse(expires_at=_ts(now + timedelta(seconds=45))),
        },
    )
    try:
        # sessions to heartbeat: one per agent, created up front (agent i owns session i)
        async with grpc.aio.insecure_channel(runtime.grpc.address) as channel:
            stub = pb_grpc.PresenceServiceStub(channel)
            sessions = [
                (
                    await stub.SignIn(
                        pb.SignInRequest(), metadata=(("authorization", f"Bearer {t}"),)
                    )
                ).session_id
                for t in tokens
            ]
        results: dict[tuple[str, str], LoadResult] = {}
        for kind in ("heartbeat", "sign_in"):
            for target, address in (
                ("baseline", canned_address),
                ("presence", runtime.grpc.address),
            ):
                results[(kind, target)] = await _phase(
                    address, tokens, kind, sessions, concurrency=concurrency, seconds=seconds
                )
                r = results[(kind, target)]
                print(
                    f"{kind:9s} {target:8s}: {r.throughput:8.0f} calls/s  p50 {r.p50_ms:6.2f} ms"
                    f"  p99 {r.p99_ms:6.2f} ms  errors {r.errors}"
                )
    finally:
        await canned.stop(0)
        await runtime.stop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
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
    write_results("presence", asyncio.run(_run()))


if __name__ == "__main__":
    main()
