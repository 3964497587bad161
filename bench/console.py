"""Benchmark of the console edge (``make bench NAME=console``): what the HTTP/JSON hop costs.

No Kafka or database: the edge (``python -m console_service``, uvicorn, a subprocess) is
pointed at a bare ``grpc.aio`` server answering GetContactCard with a canned six-field card.
One closed loop each (same machine, same run, concurrency 8):

- ``direct gRPC``: a grpc.aio client calls the canned server (the floor of the gRPC call);
- ``edge bare JSON``: an httpx client calls ``GET /api/config`` on the edge (HTTP + Starlette,
  no gRPC hop) — the baseline of the HTTP side;
- ``edge contact card``: ``GET /api/contacts/c1/card`` — HTTP → JSON → gRPC call → JSON.

Ratios: card / bare JSON (the gRPC hop + translation) and card / direct gRPC. The HTTP client
runs in this process on the same 2 cores, so absolute numbers understate a real edge.
Writes ``bench/results/console.json``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import grpc
import httpx
from inbox.contacts.v1 import contacts_pb2 as pb
from inbox.contacts.v1 import contacts_pb2_grpc
from inbox_kit.auth import mint_token
from inbox_testing import free_port, stop_process

from bench.common import (
    LoadResult,
    Metric,
    closed_loop,
    start_canned_server,
    throughput_metric,
    write_results,
)

SECONDS = float(os.environ.get("BENCH_CONSOLE_SECONDS", "5"))
CONCURRENCY = 8
ROUNDS = 5
TOKEN = mint_token("bench-console-secret-0123456789abcdef", org_id="org-b", agent_id="a-1")


def canned_card() -> pb.ContactCard:
    values = [("name", "Ada Lovelace"), ("email", "ada@example.com"), ("phone", "+44 1")]
    values += [("account_number", "ACC-1"), ("language", "en"), ("membership", "gold")]
    return pb.ContactCard(
        contact_id="c1",
        fields=[
            pb.ContactCardField(
                key=key,
                label=key.replace("_", " ").title(),
                type=pb.ATTRIBUTE_TYPE_TEXT,
                value=pb.AttributeValue(text_value=value, display=value),
                has_value=True,
            )
            for key, value in values
        ],
        definitions_version=7,
    )


def start_edge(contacts_address: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "CONSOLE_HTTP_PORT": str(port),
        "CONSOLE_CONTACTS_ADDRESS": contacts_address,
        "CONSOLE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "console_service"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the edge exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the edge did not answer /healthz within 30 s")


def merged(rounds: list[LoadResult]) -> LoadResult:
    return LoadResult(
        sum(r.calls for r in rounds),
        sum(r.errors for r in rounds),
        sum(r.seconds for r in rounds),
        [ms for r in rounds for ms in r.latencies_ms],
    )


def ratio_metric(name: str, result: LoadResult, baseline: LoadResult, target: str) -> Metric:
    """The edge's target is a latency (p99 <= 50 ms without errors), not a ratio."""
    metric = throughput_metric(name, result, baseline, target=target)
    return replace(metric, met=result.errors == 0 and result.p99_ms <= 50)


async def run() -> list[Metric]:
    server, address = await start_canned_server(
        "inbox.contacts.v1.ContactsService", {"GetContactCard": canned_card()}
    )
    edge, url = start_edge(address)
    headers = {"authorization": f"Bearer {TOKEN}"}
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = contacts_pb2_grpc.ContactsServiceStub(channel)
            request = pb.GetContactCardRequest(contact_id="c1")

            async def direct(_: int) -> Any:
                return await stub.GetContactCard(request, metadata=tuple(headers.items()))

            await closed_loop(direct, concurrency=CONCURRENCY, seconds=1)  # warm-up
            direct_result = await closed_loop(direct, concurrency=CONCURRENCY, seconds=SECONDS)

        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http:

            async def bare(_: int) -> Any:
                (await http.get("/api/config")).raise_for_status()

            async def card(_: int) -> Any:
                reply = await http.get("/api/contacts/c1/card")
                reply.raise_for_status()
                assert len(reply.json()["fields"]) == 6

            await closed_loop(bare, concurrency=CONCURRENCY, seconds=1)  # warm-up
            await closed_loop(card, concurrency=CONCURRENCY, seconds=1)
            # alternate short rounds, so machine noise hits both sides alike
            bare_rounds, card_rounds = [], []
            for _ in range(ROUNDS):
                bare_rounds.append(
                    await closed_loop(bare, concurrency=CONCURRENCY, seconds=SECONDS / ROUNDS)
                )
                card_rounds.append(
                    await closed_loop(card, concurrency=CONCURRENCY, seconds=SECONDS / ROUNDS)
                )
            bare_result, card_result = merged(bare_rounds), merged(card_rounds)
    finally:
        stop_process(edge)
        await server.stop(0)
    for label, result in (
        ("direct gRPC", direct_result),
        ("edge bare JSON", bare_result),
        ("edge contact card", card_result),
    ):
        print(
            f"{label:<18} {result.throughput:8.1f} calls/s  p50 {result.p50_ms:6.2f} ms  "
            f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}"
        )
    return [
        ratio_metric(
            "edge_contact_card_vs_bare_json",
            card_result,
            bare_result,
            "p99 <= 50 ms; ratio = cost of the gRPC hop + JSON translation",
        ),
        ratio_metric(
            "edge_contact_card_vs_direct_grpc",
            card_result,
            direct_result,
            "p99 <= 50 ms; ratio = HTTP edge vs calling gRPC directly",
        ),
    ]


def main() -> None:
    write_results("console", asyncio.run(run()))


if __name__ == "__main__":
    main()
