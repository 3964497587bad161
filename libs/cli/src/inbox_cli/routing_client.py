"""Calls to the routing service's gRPC API (its typed stubs), shared by ``inboxctl routing``
and the demo.

Conversations are normalised to plain dicts (``queue`` is ``NEW``/``PENDING``/``RESOLVED``,
``assignee_id`` is ``""`` when unassigned), so callers do not depend on message layouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inbox.routing.v1 import routing_pb2 as pb
from inbox.routing.v1 import routing_pb2_grpc

from inbox_cli import api

if TYPE_CHECKING:  # the async stub class exists in the type stubs only
    Stub = routing_pb2_grpc.RoutingServiceAsyncStub
Metadata = Any
#: One page of the audit trail is what the CLI and the demo show.
AUDIT_PAGE_SIZE = 100
_TIMEOUT = 10


async def get_settings(stub: Stub, metadata: Metadata) -> pb.RoutingSettings:
    return await stub.GetRoutingSettings(
        pb.GetRoutingSettingsRequest(), metadata=metadata, timeout=_TIMEOUT
    )


async def get_remove_assignment(stub: Stub, metadata: Metadata) -> bool:
    return (await get_settings(stub, metadata)).remove_assignment_on_sign_out


async def set_remove_assignment(stub: Stub, metadata: Metadata, enabled: bool) -> bool:
    reply = await stub.UpdateRoutingSettings(
        pb.UpdateRoutingSettingsRequest(remove_assignment_on_sign_out=enabled),
        metadata=metadata,
        timeout=_TIMEOUT,
    )
    return reply.remove_assignment_on_sign_out


async def get_conversation(stub: Stub, metadata: Metadata, conversation_id: str) -> dict[str, Any]:
    reply = await stub.GetConversation(
        pb.GetConversationRequest(conversation_id=conversation_id),
        metadata=metadata,
        timeout=_TIMEOUT,
    )
    data = api.to_dict(reply.conversation)
    queue = str(data.get("queue", "")).removeprefix("CONVERSATION_QUEUE_")
    return {**data, "queue": queue, "assignee_id": data.get("assignee_id", "")}


async def get_audit_trail(
    stub: Stub, metadata: Metadata, conversation_id: str
) -> list[dict[str, Any]]:
    reply = await stub.GetAuditTrail(
        pb.GetAuditTrailRequest(conversation_id=conversation_id, page_size=AUDIT_PAGE_SIZE),
        metadata=metadata,
        timeout=_TIMEOUT,
    )
    return [api.to_dict(entry) for entry in reply.entries]


def describe_audit_entry(entry: dict[str, Any]) -> str:
    """One readable line per audit entry: its time, then the fields that are set."""
    when = next((str(v) for k, v in entry.items() if k.endswith("_at") or k == "time"), "")
    rest = {
        k: v
        for k, v in entry.items()
        if v not in ("", None, [], {})
        and not str(v).endswith("_UNSPECIFIED")
        and not (k.endswith("_at") or k == "time")
    }
    return f"{when}  " + "  ".join(f"{k}={v}" for k, v in rest.items())
