"""The CloudEvents 1.0 JSON envelope every event on our topics travels in.

Event time lives in two places on purpose: ``time`` is the CloudEvents attribute that generic
tooling understands, ``data.occurred_at`` is what our domain code reads. ``CloudEvent.wrap``
keeps them equal and the validator refuses an envelope where they differ.
"""

from __future__ import annotations

import json
import json.encoder
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class EventData(BaseModel):
    """Base of every event's ``data``: the tenant and the event time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: CloudEvents ``type`` of the event, e.g. ``inbox.presence.agent_signed_in.v1``.
    event_type: ClassVar[str]
    #: Name of the field that identifies the aggregate (the Kafka key and CloudEvents subject).
    subject_field: ClassVar[str]

    org_id: str = Field(min_length=1, description="Organization (tenant) the event belongs to.")
    occurred_at: AwareDatetime = Field(
        description="When the fact happened (event time, UTC). Decisions are made on this."
    )

    @property
    def subject(self) -> str:
        return str(getattr(self, self.subject_field))


DataT = TypeVar("DataT", bound=EventData)


class CloudEvent(BaseModel, Generic[DataT]):
    """CloudEvents 1.0 structured-mode JSON envelope."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = Field("1.0", description="CloudEvents spec version.")
    id: str = Field(
        min_length=1,
        description="Unique event id. A retried publish of the same fact carries the same id; "
        "consumers deduplicate on it.",
    )
    source: str = Field(min_length=1, description="Producer, e.g. `/inbox/presence`.")
    type: str = Field(
        min_length=1, description="Event type, e.g. `inbox.presence.agent_signed_in.v1`."
    )
    time: AwareDatetime = Field(description="Event time; always equals `data.occurred_at`.")
    subject: str = Field(min_length=1, description="Aggregate id; also the Kafka message key.")
    datacontenttype: Literal["application/json"] = "application/json"
    data: DataT

    @model_validator(mode="after")
    def _consistent(self) -> CloudEvent[DataT]:
        if self.data.event_type != self.type:
            raise ValueError(f"type {self.type!r} does not match data ({self.data.event_type!r})")
        if self.time != self.data.occurred_at:
            raise ValueError("time must equal data.occurred_at")
        if self.subject != self.data.subject:
            raise ValueError(f"subject must equal data.{self.data.subject_field}")
        return self

    @classmethod
    def wrap(cls, data: DataT, *, source: str, event_id: str | None = None) -> CloudEvent[DataT]:
        """Envelope ``data``; pass ``event_id`` when re-publishing a stored fact."""
        # Parametrize by the concrete payload class so it (de)serializes with all its fields
        # (cached: pydantic's own lookup of a parametrized class costs ~20 us a call).
        envelope_cls = _ENVELOPES.get(type(data))
        if envelope_cls is None:
            envelope_cls = cast("type[CloudEvent[Any]]", CloudEvent.__class_getitem__(type(data)))
            _ENVELOPES[type(data)] = envelope_cls
        return cast("type[CloudEvent[DataT]]", envelope_cls)(
            id=event_id or str(uuid.uuid4()),
            source=source,
            type=data.event_type,
            time=data.occurred_at,
            subject=data.subject,
            data=data,
        )

    @property
    def key(self) -> bytes:
        """Kafka message key: the aggregate id."""
        return self.subject.encode()

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def to_jsonable(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


#: ``CloudEvent[<payload class>]`` per payload class, for ``CloudEvent.wrap``.
_ENVELOPES: dict[type[EventData], type[CloudEvent[Any]]] = {}


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """A CloudEvent its producer encoded once, without building and validating its models
    (a hot path's own fixed-shape event; its consumers validate it as any other). What a
    publisher needs of it: ``id``, ``type``, ``key``, ``to_json_bytes()``."""

    id: str
    type: str
    key: bytes
    payload: bytes
    #: The partition its producer chose (None: by key).
    partition: int | None = None

    def to_json_bytes(self) -> bytes:
        return self.payload


#: JSON string literals, escaped as ``json.dumps(ensure_ascii=False)`` does (C code)
_string: Callable[[str], str] = json.encoder.encode_basestring
#: Field names as JSON keys (``"name":``), encoded once per name
_KEYS: dict[str, str] = {}


def _json_value(value: Any) -> str:
    """A JSON value other than a string."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_fields(data: dict[str, Any]) -> str:
    """``data``'s members as JSON (strings, the most of them, without a call of their own)."""
    keys, parts = _KEYS, []
    for name, value in data.items():
        key = keys.get(name)
        if key is None:
            key = keys[name] = _string(name) + ":"
        parts.append(key + (_string(value) if type(value) is str else _json_value(value)))
    return ",".join(parts)


def json_time(at: datetime) -> str:
    """An aware datetime as ``CloudEvent.to_json_bytes`` writes it (UTC as ``Z``)."""
    text = at.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def encode_event(
    data_class: type[EventData],
    data: dict[str, Any],
    *,
    event_id: str,
    source: str,
    partition: int | None = None,
) -> EncodedEvent:
    """The JSON ``CloudEvent.wrap(data_class(**data), ...)`` would publish, written directly
    (about half the CPU of building the models and serializing them): ``data`` holds
    JSON-ready values (times through ``json_time``, enums as their values), ``occurred_at``
    and the subject field included. The caller owns their validity: test that it decodes to
    the event built with the models (``decode``), as routing's proposals do."""
    subject = data[data_class.subject_field]
    fields = _json_fields(data)
    payload = (
        f'{{"specversion":"1.0","id":{_string(event_id)},"source":{_string(source)},'
        f'"type":{_string(data_class.event_type)},"time":{_string(data["occurred_at"])},'
        f'"subject":{_string(subject)},"datacontenttype":"application/json",'
        f'"data":{{{fields}}}}}'
    )
    return EncodedEvent(
        event_id, data_class.event_type, subject.encode(), payload.encode(), partition
    )


def utc_now() -> datetime:
    return datetime.now(UTC)
