"""The one decoding path of every consumer (inbox_kit.inbound), without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from inbox_contracts import CloudEvent
from inbox_contracts.events import ChannelIdentity, ContactProfileUpserted, InboundMessageReceived
from inbox_contracts.topics import CONTACTS, MESSAGES
from inbox_kit.inbound import InboundDecoder, Undecodable
from inbox_testing import consumer_record
from inbox_testing.poison import binary_mode, poison_cases, with_unknown_fields

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
decoder = InboundDecoder(max_future_skew=timedelta(minutes=5), clock=lambda: NOW)


def message(at: datetime = NOW) -> CloudEvent[InboundMessageReceived]:
    data = InboundMessageReceived(
        org_id="org",
        conversation_id="conv",
        message_id="m1",
        channel_id="ch",
        contact_id="c",
        occurred_at=at,
    )
    return CloudEvent.wrap(data, source="/tests")


def refused(
    value: bytes, topic: str = MESSAGES.name, headers: list[tuple[str, bytes]] | None = None
) -> Undecodable:
    with pytest.raises(Undecodable) as caught:
        decoder.decode(consumer_record(topic, value, headers=headers or ()))
    return caught.value


def test_structured_binary_and_extended_events_decode_to_the_same_event() -> None:
    event = message()
    value, headers = binary_mode(event)
    decoded = [
        decoder.decode(consumer_record(MESSAGES.name, event.to_json_bytes())),
        decoder.decode(consumer_record(MESSAGES.name, value, headers=headers)),
        decoder.decode(consumer_record(MESSAGES.name, with_unknown_fields(event))),
    ]
    assert {d.data for d in decoded} == {event.data}
    assert {d.id for d in decoded} == {event.id}


def test_unknown_fields_are_ignored_at_any_depth() -> None:
    data = ContactProfileUpserted(
        org_id="org",
        contact_id="c1",
        identities=[ChannelIdentity(channel="email", handle="a@b.c")],
        occurred_at=NOW,
    )
    body = CloudEvent.wrap(data, source="/tests").to_jsonable()
    body["data"]["identities"][0]["verified"] = True
    body["data"]["future_field"] = 1
    event = decoder.decode(consumer_record(CONTACTS.name, json.dumps(body).encode()))
    assert event.data == data


def test_the_skew_guard_uses_the_configured_margin() -> None:
    assert decoder.decode(
        consumer_record(MESSAGES.name, message(NOW + timedelta(minutes=4)).to_json_bytes())
    )
    error = refused(message(NOW + timedelta(minutes=6)).to_json_bytes())
    assert error.reason == "event_time_in_future" and "300s ahead" in str(error)


def test_a_type_of_another_topic_is_refused_naming_the_topics_types() -> None:
    error = refused(message().to_json_bytes(), topic=CONTACTS.name)
    assert error.reason == "unknown_type"
    assert "valid types: inbox.contacts.profile_upserted.v1" in str(error)


def test_every_poison_case_is_refused_with_its_reason() -> None:
    for case in poison_cases(message()):
        assert refused(case.value).reason == case.reason, case.name


def test_binary_mode_without_attributes_or_with_another_media_type_is_refused() -> None:
    value, headers = binary_mode(message())
    without_time = [h for h in headers if h[0] != "ce_time"]
    assert refused(value, headers=without_time).reason == "invalid_event"
    xml = [h for h in headers if h[0] != "content-type"] + [("content-type", b"application/xml")]
    assert refused(value, headers=xml).reason == "unsupported_content_type"
    assert refused(b"{no", headers=headers).reason == "not_json"
