"""Event payloads (CloudEvents ``data``) of every topic. See ``inbox_contracts.topics``."""

from inbox_contracts.events.contacts import (
    ChannelIdentity,
    ContactProfileUpserted,
    ContactsChanged,
)
from inbox_contracts.events.conversations import (
    ConversationAssigned,
    ConversationResolved,
    ConversationUnassigned,
    FollowUpDue,
)
from inbox_contracts.events.messages import InboundMessageReceived, OutboundMessageSent
from inbox_contracts.events.presence import (
    AgentAvailabilityChanged,
    AgentSignedIn,
    AgentSignedOut,
    Availability,
    PresenceProgressed,
    SignOutReason,
)
from inbox_contracts.events.replies import SavedReplyUsed
from inbox_contracts.events.routing import (
    AgentSweepRequested,
    AutoUnassignReason,
    ConversationAutoUnassigned,
    PresenceMark,
    PresenceProgressRelayed,
)

__all__ = [
    "AgentAvailabilityChanged",
    "AgentSignedIn",
    "AgentSignedOut",
    "AgentSweepRequested",
    "AutoUnassignReason",
    "Availability",
    "ChannelIdentity",
    "ContactProfileUpserted",
    "ContactsChanged",
    "ConversationAssigned",
    "ConversationAutoUnassigned",
    "ConversationResolved",
    "ConversationUnassigned",
    "FollowUpDue",
    "InboundMessageReceived",
    "OutboundMessageSent",
    "PresenceMark",
    "PresenceProgressRelayed",
    "PresenceProgressed",
    "SavedReplyUsed",
    "SignOutReason",
]
