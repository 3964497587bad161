"""Shared helpers of the presence tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
from aiokafka import ConsumerRecord
from inbox.presence.v1 import presence_pb2 as pb
from inbox.presence.v1 import presence_pb2_grpc as pb_grpc
from inbox_testing import bearer

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
