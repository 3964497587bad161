"""Translate contract events into domain entries."""

from __future__ import annotations

from inbox_contracts import CloudEvent, EventData
from inbox_contracts.events import (
    AgentSignedIn,
    AgentSignedOut,
    ConversationAssigned,
    ConversationResolved,
    ConversationUnassigned,
    FollowUpDue,
    InboundMessageReceived,
    OutboundMessageSent,
)

from routing_service.domain.model import ConversationEntry, EntryKind, PresenceEntry

#: The events ``conversation_entry`` translates (messages and conversations topics).
CONVERSATION_EVENT_TYPES = (
    InboundMessageReceived,
    OutboundMessageSent,
    FollowUpDue,
    ConversationAssigned,
    ConversationUnassigned,
    ConversationResolved,
)


def conversation_entry(event: CloudEvent[EventData]) -> ConversationEntry | None:
    """The domain entry of a messages/conversations event (None: not one of ours)."""
    d = event.data
    at = d.occurred_at
    if isinstance(d, InboundMessageReceived):
        return ConversationEntry(
            event.id, event.type, EntryKind.INBOUND, at, d.contact_id, channel_id=d.channel_id
        )
    if isinstance(d, OutboundMessageSent):
        return ConversationEntry(
            event.id, event.type, EntryKind.OUTBOUND, at, d.agent_id, channel_id=d.channel_id
        )
    if isinstance(d, FollowUpDue):
        return ConversationEntry(event.id, event.type, EntryKind.FOLLOW_UP, at, d.reminder_id)
    if isinstance(d, ConversationAssigned):
        return ConversationEntry(
            event.id, event.type, EntryKind.ASSIGNED, at, d.assigned_by, d.assignee_id
        )
    if isinstance(d, ConversationUnassigned):
        return ConversationEntry(event.id, event.type, EntryKind.UNASSIGNED, at, d.unassigned_by)
    if isinstance(d, ConversationResolved):
        return ConversationEntry(event.id, event.type, EntryKind.RESOLVED, at, d.resolved_by)
    return None


def presence_entry(event: CloudEvent[EventData]) -> PresenceEntry | None:
    d = event.data
    if isinstance(d, AgentSignedIn):
        return PresenceEntry(event.id, event.type, d.occurred_at, True)
    if isinstance(d, AgentSignedOut):
        return PresenceEntry(event.id, event.type, d.occurred_at, False)
    return None
