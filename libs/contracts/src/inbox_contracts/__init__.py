"""Public contracts of the inbox services: event envelope, event payloads and topics."""

from inbox_contracts.codec import MalformedEvent, decode
from inbox_contracts.envelope import (
    CloudEvent,
    EncodedEvent,
    EventData,
    encode_event,
    json_time,
    utc_now,
)
from inbox_contracts.topics import ALL_TOPIC_NAMES, EVENT_TYPES, TOPICS, Topic

__all__ = [
    "ALL_TOPIC_NAMES",
    "EVENT_TYPES",
    "TOPICS",
    "CloudEvent",
    "EncodedEvent",
    "EventData",
    "MalformedEvent",
    "Topic",
    "decode",
    "encode_event",
    "json_time",
    "utc_now",
]
