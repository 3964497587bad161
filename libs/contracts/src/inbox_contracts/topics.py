"""The topic registry: every Kafka topic we own, who writes it, who reads it, what is on it.

Each topic carries CloudEvents JSON (``inbox_contracts.envelope``) keyed by the aggregate id,
so all events of one aggregate land on one partition in order. Each consumed topic has a
dead-letter topic ``<name>.dlq`` that receives messages a consumer could not process, unchanged,
with the error in headers (see ``inbox_kit.kafka``); the change feed
``inbox.contacts.changes.v1`` has none (its readers clear their cache instead).

Topics that outside producers write and a single-writer consumer reads have an internal
**repartition topic** ``<name>.repartition`` (same partition count): a record found on a
partition its subject does not murmur2-hash to (a librdkafka producer's CRC32 partitioner, a key
that is not the subject) is forwarded there, to partition ``murmur2(subject) % partitions``,
and consumed from there by the same consumer group (``inbox_kit.repartition``).
"""

from __future__ import annotations

from dataclasses import dataclass

from inbox_contracts.envelope import EventData
from inbox_contracts.events import (
    AgentAvailabilityChanged,
    AgentSignedIn,
    AgentSignedOut,
    AgentSweepRequested,
    AssignmentProposed,
    AssignmentSettingsChanged,
    ContactProfileUpserted,
    ContactsChanged,
    ConversationAssigned,
    ConversationAutoAssigned,
    ConversationAutoUnassigned,
    ConversationDispatchChanged,
    ConversationResolved,
    ConversationsDispatchChanged,
    ConversationUnassigned,
    FollowUpDue,
    InboundMessageReceived,
    OutboundMessageSent,
    PresenceProgressed,
    PresenceProgressRelayed,
    SavedReplyUsed,
)

DLQ_SUFFIX = ".dlq"
REPARTITION_SUFFIX = ".repartition"


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    event_types: tuple[type[EventData], ...]
    description: str
    #: Whether consumers copy what they cannot process to ``dead_letter``.
    dead_lettered: bool = True
    #: Whether the consumer re-routes misplaced records through ``repartition``.
    repartitioned: bool = False
    #: Event types of another topic that this one also carries, re-published unchanged
    #: (same id, type and data; only the key may differ). Their home is the other topic.
    republished: tuple[type[EventData], ...] = ()

    @property
    def carried_types(self) -> tuple[type[EventData], ...]:
        """Everything a consumer of this topic may read."""
        return self.event_types + self.republished

    @property
    def dead_letter(self) -> str:
        return self.name + DLQ_SUFFIX

    @property
    def repartition(self) -> str:
        """The internal topic misplaced records are forwarded to (same partition count)."""
        return self.name + REPARTITION_SUFFIX

    @property
    def names(self) -> tuple[str, ...]:
        """This topic and the topics that go with it (dead letters, repartition)."""
        return (
            self.name,
            *((self.dead_letter,) if self.dead_lettered else ()),
            *((self.repartition,) if self.repartitioned else ()),
        )


PRESENCE = Topic(
    name="inbox.presence.v1",
    key="agent_id",
    producers=("presence",),
    consumers=("routing",),
    event_types=(AgentSignedIn, AgentSignedOut, AgentAvailabilityChanged, PresenceProgressed),
    description="Agent sign-in / sign-out transitions and availability changes, plus "
    "per-partition event-time progress marks (PresenceProgressed, on explicit partitions).",
)
MESSAGES = Topic(
    name="inbox.messages.v1",
    key="conversation_id",
    producers=("channel ingestors",),
    consumers=("routing",),
    event_types=(InboundMessageReceived, OutboundMessageSent),
    description="Inbound messages from contacts and outbound replies by agents.",
    repartitioned=True,
)
CONVERSATIONS = Topic(
    name="inbox.conversations.v1",
    key="conversation_id",
    producers=("inbox app backend", "reminder scheduler"),
    consumers=("routing",),
    event_types=(ConversationAssigned, ConversationUnassigned, ConversationResolved, FollowUpDue),
    description="Manual assignment changes, resolves and follow-up reminders.",
    repartitioned=True,
)
ROUTING = Topic(
    name="inbox.routing.v1",
    key="conversation_id",
    producers=("routing",),
    consumers=("inbox app backend", "analytics"),
    event_types=(ConversationAutoUnassigned, ConversationAutoAssigned),
    description="Automatic routing decisions: remove assignment on sign-out (R1/R2) and "
    "automatic assignment (PRODUCT.md §4).",
)
ROUTING_COMMANDS = Topic(
    name="inbox.routing.commands.v1",
    key="agent_id (published to an explicit partition)",
    producers=("routing",),
    consumers=("routing",),
    event_types=(AgentSweepRequested, PresenceProgressRelayed),
    description="Internal routing commands: after a sign-out, one sweep request per partition "
    "of the conversation topics, consumed by the owner of that partition; and presence "
    "event-time progress relayed to every partition. Same partition count as "
    "inbox.messages.v1 and inbox.conversations.v1.",
)
ROUTING_DISPATCH = Topic(
    name="inbox.routing.dispatch.v1",
    key="org_id",
    producers=("routing",),
    consumers=("routing (dispatcher)",),
    event_types=(
        ConversationDispatchChanged,
        ConversationsDispatchChanged,
        AssignmentSettingsChanged,
    ),
    republished=(
        AgentSignedIn,
        AgentSignedOut,
        AgentAvailabilityChanged,
        PresenceProgressRelayed,
    ),
    description="Internal: the automatic-assignment dispatcher's one ordered input per org "
    "(keyed by org_id): conversation state changes from routing's conversation owners, the "
    "presence events routing consumed (re-published unchanged, re-keyed by org), settings "
    "changes, and presence progress (PresenceProgressRelayed, to every partition: how far "
    "the presence events ahead of it are complete). The dispatcher's state is a pure "
    "function of this stream (snapshot + replay).",
)
ROUTING_PROPOSALS = Topic(
    name="inbox.routing.proposals.v1",
    key="conversation_id (published to an explicit partition: the conversation's)",
    producers=("routing",),
    consumers=("routing",),
    event_types=(AssignmentProposed,),
    description="Internal: assignment proposals, to the partition of the conversation topics "
    "that holds the conversation; its owner accepts or refuses each one. Same partition "
    "count as inbox.messages.v1 and inbox.conversations.v1.",
)
CONTACTS = Topic(
    name="inbox.contacts.v1",
    key="contact_id",
    producers=("channel ingestors", "CRM sync"),
    consumers=("contacts",),
    event_types=(ContactProfileUpserted,),
    description="Contact profile creates and partial updates.",
    repartitioned=True,
)
CONTACT_CHANGES = Topic(
    name="inbox.contacts.changes.v1",
    key="org_id",
    producers=("contacts",),
    consumers=("contacts (card cache invalidation)",),
    event_types=(ContactsChanged,),
    description="Which contacts' stored profiles changed, published after they are stored "
    "(ids only, at least once). Every contacts replica reads all partitions to drop cached "
    "cards; a notice it cannot read (malformed, unknown type, event time in the future) clears "
    "that replica's whole card cache instead of being dead-lettered.",
    dead_lettered=False,
)
REPLIES = Topic(
    name="inbox.replies.v1",
    key="reply_id",
    producers=("replies",),
    consumers=("replies (usage counts)", "analytics"),
    event_types=(SavedReplyUsed,),
    description="Saved-reply usage.",
)

TOPICS: tuple[Topic, ...] = (
    PRESENCE,
    MESSAGES,
    CONVERSATIONS,
    ROUTING,
    ROUTING_COMMANDS,
    ROUTING_DISPATCH,
    ROUTING_PROPOSALS,
    CONTACTS,
    CONTACT_CHANGES,
    REPLIES,
)
ALL_TOPIC_NAMES: list[str] = [n for t in TOPICS for n in t.names]
EVENT_TYPES: dict[str, type[EventData]] = {
    cls.event_type: cls for topic in TOPICS for cls in topic.event_types
}
