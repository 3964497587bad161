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
from inbox_contracts.events.dispatch import (
    AssignmentProposed,
    AssignmentSettingsChanged,
    ConversationDispatchChanged,
    ConversationsDispatchChanged,
    DispatchChange,
    ProposalRefusal,
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
    AutoAssignReason,
    AutoUnassignReason,
    ConversationAutoAssigned,
    ConversationAutoUnassigned,
    PresenceMark,
    PresenceProgressRelayed,
)

__all__ = [
    "AgentAvailabilityChanged",
    "AgentSignedIn",
    "AgentSignedOut",
    "AgentSweepRequested",
    "AssignmentProposed",
    "AssignmentSettingsChanged",
    "AutoAssignReason",
    "AutoUnassignReason",
    "Availability",
    "ChannelIdentity",
    "ContactProfileUpserted",
    "ContactsChanged",
    "ConversationAssigned",
    "ConversationAutoAssigned",
    "ConversationAutoUnassigned",
    "ConversationDispatchChanged",
    "ConversationResolved",
    "ConversationUnassigned",
    "ConversationsDispatchChanged",
    "DispatchChange",
    "FollowUpDue",
    "InboundMessageReceived",
    "OutboundMessageSent",
    "PresenceMark",
    "PresenceProgressRelayed",
    "PresenceProgressed",
    "ProposalRefusal",
    "SavedReplyUsed",
    "SignOutReason",
]
