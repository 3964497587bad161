"""Decoding raw Kafka values into typed CloudEvents."""

from __future__ import annotations

import json
from typing import Any, cast

from pydantic import ValidationError

from inbox_contracts.envelope import CloudEvent, EventData
from inbox_contracts.topics import EVENT_TYPES


class MalformedEvent(ValueError):
    """The bytes are not a valid CloudEvent of a known type. Goes to the dead-letter topic."""


def decode(raw: bytes | str | dict[str, Any]) -> CloudEvent[EventData]:
    """Parse and validate an envelope, typing ``data`` by the envelope's ``type``."""
    try:
        obj = raw if isinstance(raw, dict) else json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedEvent("envelope must be a JSON object")
    event_type = obj.get("type")
    data_cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if data_cls is None:
        raise MalformedEvent(f"unknown event type {event_type!r}")
    try:
        envelope_cls = cast(type[CloudEvent[EventData]], CloudEvent.__class_getitem__(data_cls))
        return envelope_cls.model_validate(obj)
    except ValidationError as exc:
        raise MalformedEvent(str(exc)) from exc
