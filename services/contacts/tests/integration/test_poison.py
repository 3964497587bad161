"""Poison on the topics contacts consumes (issue 12): ``inbox.contacts.v1`` dead-letters with the
right reason and the next event on the key applies; binary-mode events, unknown fields and a
librdkafka producer's placement are handled; the change feed clears the cache on what it
cannot read (it has no dead-letter topic)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer
from contacts_service.entrypoints.change_feed import UNDECODABLE
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactProfileUpserted, ContactsChanged
from inbox_contracts.topics import CONTACT_CHANGES, CONTACTS
from inbox_kit.repartition import REPARTITIONED
from inbox_testing import Infra, TopicProbe, wait_until
from inbox_testing.poison import (
    expect_parked,
    poison_cases,
    send_binary,
    send_poison,
    with_unknown_fields,
)

from .conftest import Running
from .test_contacts_api import Stub, card_values, wait_card

pytestmark = pytest.mark.infra


def profile(org: str, contact: str, attributes: dict[str, Any], at: datetime) -> CloudEvent[Any]:
    data = ContactProfileUpserted(
        org_id=org, contact_id=contact, attributes=attributes, occurred_at=at
    )
    return CloudEvent.wrap(data, source="/tests/contacts")


async def test_profile_poison_is_parked_and_binary_and_extended_events_apply(
    infra: Infra,
    running: Running,
    producer: Any,
    stub: Stub,
    make_token: Any,
    unique: Callable[[str], str],
) -> None:
    org, contact = unique("org"), unique("contact")
    token = make_token(org, "agent-1")
    now = datetime.now(UTC)
    key = contact.encode()
    async with TopicProbe(infra.kafka_bootstrap, CONTACTS.dead_letter) as dlq:
        await send_poison(
            producer, CONTACTS.name, key, poison_cases(profile(org, contact, {}, now))
        )
        binary = profile(org, contact, {"name": "Bin"}, now + timedelta(seconds=1))
        await send_binary(producer, CONTACTS.name, key, binary)
        extended = profile(org, contact, {"language": "de"}, now + timedelta(seconds=2))
        await producer.send_and_wait(CONTACTS.name, with_unknown_fields(extended), key=key)
        card = await wait_card(stub, token, contact, lambda c: len(card_values(c)) == 2)
        await expect_parked(dlq, key, group=running.settings.consumer_group)
    assert card_values(card) == {"name": "Bin", "language": "de"}


async def test_profiles_from_a_librdkafka_producer_are_repartitioned_and_applied(
    infra: Infra, running: Running, stub: Stub, make_token: Any, unique: Callable[[str], str]
) -> None:
    org = unique("org")
    token = make_token(org, "agent-1")
    contacts = [unique("contact") for _ in range(12)]
    before = REPARTITIONED.labels(CONTACTS.name)._value.get()

    def produce() -> None:
        p = Producer({"bootstrap.servers": infra.kafka_bootstrap, "acks": "all"})
        for c in contacts:
            event = profile(org, c, {"name": c}, datetime.now(UTC))
            p.produce(CONTACTS.name, event.to_json_bytes(), key=event.key)
        assert p.flush(30) == 0

    await asyncio.to_thread(produce)
    for c in contacts:
        card = await wait_card(stub, token, c, lambda card: bool(card_values(card)))
        assert card_values(card) == {"name": c}
    # CRC32 puts ~5 of 6 keys on another partition than murmur2 does
    assert REPARTITIONED.labels(CONTACTS.name)._value.get() > before


async def test_the_change_feed_clears_the_cache_on_a_notice_it_cannot_read(
    running: Running, producer: Any
) -> None:
    future = ContactsChanged(
        org_id="org", contact_ids=["c1"], occurred_at=datetime.now(UTC) + timedelta(days=1)
    )
    cases = {
        "not_json": b"{nope",
        "event_time_in_future": CloudEvent.wrap(future, source="/tests").to_json_bytes(),
    }
    for reason, value in cases.items():
        before = UNDECODABLE.labels(reason)._value.get()
        await producer.send_and_wait(CONTACT_CHANGES.name, value, key=b"org")
        await wait_until(lambda r=reason, b=before: UNDECODABLE.labels(r)._value.get() > b)
    assert running.service.change_feed is not None and running.service.change_feed.ready.is_set()
