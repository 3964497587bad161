"""Shared helpers of the presence tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
from aiokafka import ConsumerRecord
from inbox.presence.v1 import presence_pb2 as pb
from inbox.presence.v1 import presence_pb2_grpc as pb_grpc
from inbox_kit.runtime import ServiceRuntime
from inbox_testing import TEST_JWT_SECRET, Infra, bearer
from presence_service.bootstrap import bootstrap
from presence_service.service_layer.handlers import Presence
from presence_service.settings import PresenceSettings

SIGNED_IN = "inbox.presence.agent_signed_in.v1"
SIGNED_OUT = "inbox.presence.agent_signed_out.v1"
AVAILABILITY = "inbox.presence.availability_changed.v1"


def event(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    return json.loads(record.value or b"{}")  # type: ignore[no-any-return]


def of(agent_id: str, type_: str | None = None) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    def match(record: ConsumerRecord[bytes, bytes]) -> bool:
        e = event(record)
        return e.get("data", {}).get("agent_id") == agent_id and (
            type_ is None or e["type"] == type_
        )

    return match


class Client:
    """A gRPC client acting as one agent."""

    def __init__(self, address: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = pb_grpc.PresenceServiceStub(self.channel)
        self.md = bearer(token)

    async def sign_in(self) -> str:
        r = await self.stub.SignIn(pb.SignInRequest(), metadata=self.md, timeout=10)
        return r.session_id

    async def heartbeat(self, session_id: str) -> pb.HeartbeatResponse:
        return await self.stub.Heartbeat(
            pb.HeartbeatRequest(session_id=session_id), metadata=self.md, timeout=10
        )

    async def sign_out(self, session_id: str) -> pb.SignOutResponse:
        return await self.stub.SignOut(
            pb.SignOutRequest(session_id=session_id), metadata=self.md, timeout=10
        )

    async def presence(self, *agent_ids: str) -> list[pb.AgentPresence]:
        r = await self.stub.GetPresence(
            pb.GetPresenceRequest(agent_ids=list(agent_ids)), metadata=self.md, timeout=10
        )
        return list(r.presences)

    async def close(self) -> None:
        await self.channel.close()


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def logical(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    """Events deduplicated by event id, as a consumer sees them. Asserts that any duplicate
    publish carried exactly the same event."""
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        e = event(r)
        if e["id"] in seen:
            assert seen[e["id"]] == e, "a duplicate with the same id must be the same event"
        else:
            seen[e["id"]] = e
    return list(seen.values())


#: Short timings so expiry tests take seconds (heartbeat 0.5 s, timeout 1.5 s).
FAST: dict[str, Any] = {
    "heartbeat_interval_seconds": 0.5,
    "session_timeout_seconds": 1.5,
    "sweep_interval_seconds": 0.25,
    "expiry_grace_seconds": 0.2,
    "relay_scan_interval_seconds": 0.5,
    "relay_min_age_seconds": 3.0,
}


class Replicas:
    """Presence replicas started in-process on one test database."""

    def __init__(self, infra: Infra, database: str) -> None:
        self.infra, self.database = infra, database
        self.running: list[ServiceRuntime] = []

    async def start(self, **overrides: Any) -> tuple[ServiceRuntime, Presence]:
        service = bootstrap(presence_settings(self.infra, self.database, **overrides))
        runtime, presence = service.runtime, service.presence
        await runtime.start()
        self.running.append(runtime)
        return runtime, presence

    async def stop(self, runtime: ServiceRuntime) -> None:
        self.running.remove(runtime)
        await runtime.stop()


def presence_settings(infra: Infra, database: str, **overrides: Any) -> PresenceSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap,
        "mongodb_uri": infra.mongodb_uri,
        "mongodb_database": database,
        "grpc_port": 0,
        "metrics_port": 0,
        "jwt_secret": TEST_JWT_SECRET,
        "shutdown_grace_seconds": 0.5,
        **FAST,
        **overrides,
    }
    return PresenceSettings(**values)


PROGRESS = "inbox.presence.progress.v1"


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_marks_never_overtake(
    records: list[ConsumerRecord[bytes, bytes]], org_id: str
) -> list[tuple[int, datetime]]:
    """Per partition, in offset order: a progress mark with watermark W must come after every
    transition of ``org_id`` on that partition with occurred_at <= W (a re-publish of an event
    id seen before is a duplicate the contract allows). Returns the marks (partition,
    watermark) seen."""
    marks: list[tuple[int, datetime]] = []
    by_partition: dict[int, list[ConsumerRecord[bytes, bytes]]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r)
    for partition, items in by_partition.items():
        items.sort(key=lambda r: r.offset)
        highest: datetime | None = None  # highest watermark seen so far on this partition
        seen: set[str] = set()
        for r in items:
            e = event(r)
            if e["id"] in seen:
                continue
            seen.add(e["id"])
            if e["type"] == PROGRESS:
                assert e["data"]["partition"] == partition and r.key == str(partition).encode()
                w = _when(e["data"]["watermark"])
                highest = w if highest is None else max(highest, w)
                marks.append((partition, w))
            elif (
                e["type"] in (SIGNED_IN, SIGNED_OUT, AVAILABILITY) and e["data"]["org_id"] == org_id
            ):
                occurred = _when(e["data"]["occurred_at"])
                assert highest is None or occurred > highest, (
                    f"{e['type']} at {occurred} appended after a mark at {highest}"
                )
    return marks
