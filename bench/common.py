"""Shared benchmark plumbing: load generation, latency statistics, baselines, result files.

Results follow ENGINEERING.md §5: ``bench/results/<name>.json`` with ``name``, ``date``,
``cores`` and ``metrics`` (``metric``, ``value``, ``unit`` and, where they apply,
``baseline_value``, ``ratio``, ``p50_ms``, ``p99_ms``, ``target``, ``met``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from inbox_kit.batch_consumer import BATCH_SECONDS

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def loop_batch_totals() -> dict[tuple[str, str], float]:
    """(loop, "sum" | "count"): seconds each consumer loop of this process spent handling
    batches so far, and how many batches (the kit's batch histogram)."""
    out: dict[tuple[str, str], float] = {}
    for family in BATCH_SECONDS.collect():
        for sample in family.samples:
            for kind in ("sum", "count"):
                if sample.name.endswith(f"_{kind}"):
                    out[(sample.labels["loop"], kind)] = sample.value
    return out


#: The services a benchmark starts accept tokens signed with this (HS256 wants >= 32 bytes).
SECRET = "bench-secret-0123456789-0123456789-xx"


@dataclass
class Metric:
    metric: str
    value: float
    unit: str
    baseline_value: float | None = None
    ratio: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    target: str | None = None
    met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class LoadResult:
    calls: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


def throughput_metric(
    name: str,
    result: LoadResult,
    baseline: LoadResult,
    *,
    target: str,
    min_ratio: float | None = None,
) -> Metric:
    """``result``'s throughput and latency, with its ratio to ``baseline`` measured in the same
    run; ``met`` if a ``min_ratio`` is given, reached without errors."""
    ratio = result.throughput / baseline.throughput if baseline.throughput else 0.0
    return Metric(
        name,
        round(result.throughput, 1),
        "calls/s",
        baseline_value=round(baseline.throughput, 1),
        ratio=round(ratio, 3),
        p50_ms=round(result.p50_ms, 2),
        p99_ms=round(result.p99_ms, 2),
        target=target,
        met=None if min_ratio is None else ratio >= min_ratio and result.errors == 0,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def devstack_pids() -> dict[str, int]:
    """``ferretdb`` / ``kafka``: the pids of the devstack serving this run (none when the
    infrastructure is external, e.g. ``MONGODB_URI`` points elsewhere)."""
    from inbox_devstack import Devstack, DevstackConfig

    config = DevstackConfig.from_env()
    if os.environ.get("MONGODB_URI", config.mongodb_uri) != config.mongodb_uri:
        return {}
    status = Devstack(config).status()
    return {c.name: c.pid for c in (status.ferretdb, status.kafka) if c.up and c.pid is not None}


class CpuMeter:
    """CPU milliseconds per call of named processes over a phase: ``start()``, run the
    phase, ``per_call(calls)``. On 2 shared cores the throughput ratio is a CPU budget, and
    this says who spends it."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def per_call(self, calls: int) -> dict[str, float]:
        spent = {name: cpu_seconds(pid) - self._start[name] for name, pid in self._pids.items()}
        return {name: 1000 * s / calls if calls else float("nan") for name, s in spent.items()}


def percentile(samples: list[float], pct: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


async def closed_loop(
    call: Callable[[int], Awaitable[Any]],
    *,
    concurrency: int,
    seconds: float,
    calls: int | None = None,
) -> LoadResult:
    """``concurrency`` workers call back-to-back for ``seconds`` (or until ``calls`` calls,
    numbered 1..calls, have started): peak throughput."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = 0

    async def worker() -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline and (calls is None or counter < calls):
            counter += 1
            started = time.perf_counter()
            try:
                await call(counter)
            except Exception:
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(len(latencies), errors, time.perf_counter() - started, latencies)


async def open_loop(
    call: Callable[[int], Awaitable[Any]], *, rate: float, seconds: float
) -> LoadResult:
    """Fire calls at a fixed ``rate`` per second regardless of responses: latency under load.

    Latency is measured from each call's scheduled start, so queueing delay counts. One pacer
    starts each call when it is due (every call already due is started at once, so a late
    wake-up of the pacer is paid for by the calls, not hidden); creating all calls up front
    instead would stall the client's own event loop at the start and charge that to the server.
    """
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        try:
            await call(i)
        except Exception:
            errors += 1
            return
        latencies.append((time.perf_counter() - scheduled) * 1000)

    begin = time.perf_counter()
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and begin + i / rate <= now:
            task = asyncio.create_task(one(i, begin + i / rate))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
    await asyncio.gather(*in_flight)
    return LoadResult(len(latencies), errors, time.perf_counter() - begin, latencies)


async def start_canned_server(
    service_full_name: str, responses: Mapping[str, Any], *, host: str = "127.0.0.1"
) -> tuple[grpc.aio.Server, str]:
    """A bare ``grpc.aio`` server answering each named unary method with a canned message.

    The baseline for gRPC benchmarks: same transport, serialization and client, no work.
    """

    def canned(response: Any) -> grpc.RpcMethodHandler[Any, Any]:
        async def handle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return response

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=lambda b: b,
            response_serializer=lambda m: m.SerializeToString(),
        )

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                service_full_name, {name: canned(msg) for name, msg in responses.items()}
            )
        ]
    )
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    return server, f"{host}:{port}"


def write_results(name: str, metrics: list[Metric]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "metrics": [m.as_dict() for m in metrics],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return path
