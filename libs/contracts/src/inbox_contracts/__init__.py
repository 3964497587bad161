"""Public contracts of the inbox services: event envelope, event payloads and topics."""

from inbox_contracts.codec import MalformedEvent, decode
from inbox_contracts.envelope import CloudEvent, EventData, utc_now
from inbox_contracts.topics import ALL_TOPIC_NAMES, EVENT_TYPES, TOPICS, Topic

__all__ = [
    "ALL_TOPIC_NAMES",
    "EVENT_TYPES",
    "TOPICS",
    "CloudEvent",
    "EventData",
    "MalformedEvent",
    "Topic",
    "decode",
    "utc_now",
]
