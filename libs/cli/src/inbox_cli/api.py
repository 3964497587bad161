"""Thin client helpers shared by ``inboxctl`` and the demo: tokens, gRPC stubs, events."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from aiokafka import AIOKafkaProducer
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from inbox_contracts import CloudEvent, EventData
from inbox_contracts.events import (
    ChannelIdentity,
    ContactProfileUpserted,
    ConversationAssigned,
    ConversationResolved,
    ConversationUnassigned,
    FollowUpDue,
    InboundMessageReceived,
    OutboundMessageSent,
)
from inbox_contracts.topics import CONTACTS, CONVERSATIONS, MESSAGES, Topic
from inbox_devstack import DevstackConfig
from inbox_kit.auth import mint_token

from inbox_cli.config import BY_NAME, jwt_secret

SOURCE = "/inbox/inboxctl"


def token(
    org_id: str,
    agent_id: str,
    role: str = "agent",
    teams: Sequence[str] = (),
    *,
    channels: Sequence[str] = (),
) -> str:
    """A development bearer token signed with the stack's shared secret."""
    return mint_token(
        jwt_secret(), org_id=org_id, agent_id=agent_id, role=role, teams=teams, channels=channels
    )


def bearer(tok: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {tok}"),)


def kafka_bootstrap() -> str:
    explicit = os.environ.get("INBOX_KAFKA_BOOTSTRAP", "").strip()
    if explicit:
        return explicit

    return DevstackConfig.from_env().kafka_bootstrap


def address(service: str) -> str:
    return BY_NAME[service].address()


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def describe_rpc_error(exc: grpc.RpcError) -> str:
    """``CODE: message`` plus field violations from the google.rpc details, if any."""
    call: Any = exc
    code = call.code().name if hasattr(call, "code") else "UNKNOWN"
    text = f"{code}: {call.details() if hasattr(call, 'details') else exc}"
    try:
        status = rpc_status.from_call(call)
    except Exception:
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                for v in bad.field_violations:
                    text += f"\n  field {v.field}: {v.description}"
    return text


# --- events as a channel ingestor / the inbox app would publish them ---------------------------


def now() -> datetime:
    return datetime.now(UTC)


def inbound(
    org_id: str,
    conversation_id: str,
    contact_id: str,
    channel_id: str,
    *,
    message_id: str | None = None,
    occurred_at: datetime | None = None,
) -> tuple[Topic, CloudEvent[Any]]:
    data = InboundMessageReceived(
        org_id=org_id,
        conversation_id=conversation_id,
        message_id=message_id or f"msg-{uuid.uuid4().hex[:12]}",
        channel_id=channel_id,
        contact_id=contact_id,
        occurred_at=occurred_at or now(),
    )
    return MESSAGES, CloudEvent.wrap(data, source=SOURCE)


def outbound(
    org_id: str,
    conversation_id: str,
    agent_id: str,
    channel_id: str,
    *,
    message_id: str | None = None,
    occurred_at: datetime | None = None,
) -> tuple[Topic, CloudEvent[Any]]:
    data = OutboundMessageSent(
        org_id=org_id,
        conversation_id=conversation_id,
        message_id=message_id or f"msg-{uuid.uuid4().hex[:12]}",
        channel_id=channel_id,
        agent_id=agent_id,
        occurred_at=occurred_at or now(),
    )
    return MESSAGES, CloudEvent.wrap(data, source=SOURCE)


def assigned(
    org_id: str,
    conversation_id: str,
    assignee_id: str,
    assigned_by: str,
    *,
    occurred_at: datetime | None = None,
) -> tuple[Topic, CloudEvent[Any]]:
    data = ConversationAssigned(
        org_id=org_id,
        conversation_id=conversation_id,
        assignee_id=assignee_id,
        assigned_by=assigned_by,
        occurred_at=occurred_at or now(),
    )
    return CONVERSATIONS, CloudEvent.wrap(data, source=SOURCE)


def unassigned(
    org_id: str, conversation_id: str, by: str, *, occurred_at: datetime | None = None
) -> tuple[Topic, CloudEvent[Any]]:
    data = ConversationUnassigned(
        org_id=org_id,
        conversation_id=conversation_id,
        unassigned_by=by,
        occurred_at=occurred_at or now(),
    )
    return CONVERSATIONS, CloudEvent.wrap(data, source=SOURCE)


def resolved(
    org_id: str, conversation_id: str, by: str, *, occurred_at: datetime | None = None
) -> tuple[Topic, CloudEvent[Any]]:
    data = ConversationResolved(
        org_id=org_id,
        conversation_id=conversation_id,
        resolved_by=by,
        occurred_at=occurred_at or now(),
    )
    return CONVERSATIONS, CloudEvent.wrap(data, source=SOURCE)


def follow_up_due(
    org_id: str, conversation_id: str, *, reminder_id: str | None = None
) -> tuple[Topic, CloudEvent[Any]]:
    data = FollowUpDue(
        org_id=org_id,
        conversation_id=conversation_id,
        reminder_id=reminder_id or f"rem-{uuid.uuid4().hex[:8]}",
        occurred_at=now(),
    )
    return CONVERSATIONS, CloudEvent.wrap(data, source=SOURCE)


def contact_profile(
    org_id: str,
    contact_id: str,
    attributes: dict[str, Any],
    identities: Sequence[tuple[str, str]] = (),
) -> tuple[Topic, CloudEvent[Any]]:
    data = ContactProfileUpserted(
        org_id=org_id,
        contact_id=contact_id,
        attributes=attributes,
        identities=[ChannelIdentity(channel=c, handle=h) for c, h in identities],
        occurred_at=now(),
    )
    return CONTACTS, CloudEvent.wrap(data, source=SOURCE)


async def publish(bootstrap: str, topic: Topic, event: CloudEvent[EventData]) -> dict[str, Any]:
    """Publish one CloudEvent (key = aggregate id, acks=all); where it landed."""

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, client_id="inboxctl"
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic.name, event.to_json_bytes(), key=event.key)
    finally:
        await producer.stop()
    return {
        "topic": meta.topic,
        "partition": meta.partition,
        "offset": meta.offset,
        "id": event.id,
        "type": event.type,
        "subject": event.subject,
    }
