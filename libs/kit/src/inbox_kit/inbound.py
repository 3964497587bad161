"""Turning a consumed Kafka record into a typed CloudEvent: the one decoding path of every
consumer (group consumers through ``inbox_kit.batch_consumer``, the contacts change feed).

- **Both CloudEvents Kafka modes.** *Structured* (our producers, kcat): the value is the JSON
  envelope (``content-type: application/cloudevents+json``, or no content type at all).
  *Binary* (the CloudEvents SDKs' Kafka default): attributes in ``ce_*`` headers
  (``ce_specversion``, ``ce_id``, ``ce_source``, ``ce_type``, ``ce_time``, ``ce_subject``; other
  ``ce_*`` become extension attributes), the value is ``data`` alone, ``content-type`` its media
  type (``application/json`` or none). A record is binary when it has ``ce_specversion`` and a
  content type that is not ``application/cloudevents…``.
- **Tolerant reader.** Unknown ``data`` fields (a later additive ``v1`` version) are ignored.
- **Only the topic's types.** A type not published on the record's topic is refused, and the
  reason lists that topic's valid types.
- **No events from the future.** An event whose ``time`` is more than ``max_future_skew``
  ahead of this consumer's clock is refused (``event_time_in_future``): it would pin state
  (a resolve stamped 2999 wins against every later event).

A refused record raises ``Undecodable`` whose ``reason`` is the dead-letter reason code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord
from inbox_contracts import TOPICS, CloudEvent, EventData, MalformedEvent, decode, utc_now

#: Reason codes (``x-dlq-reason``) of records that cannot be decoded.
REASON_NOT_JSON = "not_json"
REASON_UNKNOWN_TYPE = "unknown_type"
REASON_INVALID = "invalid_event"
REASON_EVENT_TIME_IN_FUTURE = "event_time_in_future"
REASON_UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"

#: Default for ``<PREFIX>EVENT_TIME_MAX_SKEW_SECONDS``.
DEFAULT_MAX_FUTURE_SKEW = timedelta(minutes=5)

_TYPES_BY_TOPIC: dict[str, frozenset[str]] = {
    name: frozenset(cls.event_type for cls in topic.carried_types)
    for topic in TOPICS
    for name in topic.names
}

_BINARY_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject")


class Undecodable(MalformedEvent):
    """The record is not an event this consumer can apply; ``reason`` says why (a code)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def valid_types(topic: str) -> frozenset[str] | None:
    """Event types accepted on ``topic`` (None: any known type, on a topic outside the registry)."""
    return _TYPES_BY_TOPIC.get(topic)


class InboundDecoder:
    def __init__(
        self,
        *,
        max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.max_future_skew = max_future_skew
        self._clock = clock

    def decode(self, record: ConsumerRecord[Any, Any]) -> CloudEvent[EventData]:
        headers = {k.lower(): v for k, v in (record.headers or ())}
        envelope = _envelope(record.value or b"", headers)
        try:
            event = decode(
                envelope, ignore_unknown_fields=True, known_types=valid_types(record.topic)
            )
        except MalformedEvent as exc:
            raise Undecodable(_reason(str(exc)), str(exc)) from exc
        now = self._clock()
        if event.time > now + self.max_future_skew:
            raise Undecodable(
                REASON_EVENT_TIME_IN_FUTURE,
                f"event time {event.time.isoformat()} is more than "
                f"{self.max_future_skew.total_seconds():g}s ahead of this consumer's clock "
                f"({now.isoformat()})",
            )
        return event


def _reason(message: str) -> str:
    if message.startswith("not JSON"):
        return REASON_NOT_JSON
    if message.startswith("unknown event type"):
        return REASON_UNKNOWN_TYPE
    return REASON_INVALID


def _envelope(value: bytes, headers: dict[str, bytes]) -> bytes | dict[str, Any]:
    if "ce_specversion" not in headers:
        return value  # structured mode (every record of ours: no content type to read)
    content_type = headers.get("content-type", b"").decode(errors="replace").strip().lower()
    if content_type.startswith("application/cloudevents"):
        return value  # structured mode
    media_type = content_type.split(";", 1)[0].strip()
    if media_type not in ("", "application/json"):
        raise Undecodable(
            REASON_UNSUPPORTED_CONTENT_TYPE,
            f"binary-mode CloudEvent with content-type {content_type!r}: only application/json "
            "data is accepted",
        )
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Undecodable(REASON_NOT_JSON, f"not JSON: binary-mode data: {exc}") from exc
    envelope: dict[str, Any] = {
        name.removeprefix("ce_"): raw.decode(errors="replace")
        for name, raw in headers.items()
        if name.startswith("ce_")
    }
    missing = [a for a in _BINARY_ATTRIBUTES if a not in envelope]
    if missing:
        raise Undecodable(
            REASON_INVALID,
            f"binary-mode CloudEvent without header(s) {', '.join('ce_' + m for m in missing)}",
        )
    envelope["data"] = data
    envelope["datacontenttype"] = "application/json"
    return envelope
