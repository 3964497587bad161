from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from contacts_service.adapters.mongo import MongoDefinitionsRepository
from contacts_service.bootstrap import Contacts
from contacts_service.domain.attributes import Definitions
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from inbox.contacts.v1 import contacts_pb2 as pb
from inbox.contacts.v1 import contacts_pb2_grpc
from inbox_contracts.topics import CONTACTS
from inbox_kit import kafka as kit_kafka
from inbox_testing import Infra, TopicProbe, bearer, wait_until
from pymongo import AsyncMongoClient

from .conftest import Publish, Replica, Running

pytestmark = pytest.mark.infra

Stub = contacts_pb2_grpc.ContactsServiceStub
SecondReplica = Callable[..., AbstractAsyncContextManager[Replica]]
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def card_keys(card: pb.ContactCard) -> list[str]:
    return [f.key for f in card.fields]


def card_values(card: pb.ContactCard) -> dict[str, str]:
    return {f.key: f.value.display for f in card.fields if f.has_value}


async def wait_card(
    stub: Stub, token: str, contact_id: str, check: Callable[[pb.ContactCard], bool]
) -> pb.ContactCard:
    async def probe() -> pb.ContactCard | None:
        try:
            card = await stub.GetContactCard(
                pb.GetContactCardRequest(contact_id=contact_id), metadata=bearer(token)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return card if check(card) else None

    result: pb.ContactCard = await wait_until(probe, timeout=20, interval=0.1)
    return result


def field_violation(exc: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return bad.field_violations[0].field
    raise AssertionError("no BadRequest detail")


async def test_a_contact_ingested_from_kafka_appears_on_the_card(
    stub: Stub, publish: Publish, make_token: Any, unique: Callable[[str], str]
) -> None:
    org, contact = unique("org"), unique("contact")
    token = make_token(org, "agent-1")
    await publish(
        org,
        contact,
        {"name": "Maria Muster", "email": "maria@example.com", "language": "de"},
        identities=(("whatsapp", "+491701234567"),),
    )
    card = await wait_card(stub, token, contact, lambda c: True)
    assert card_keys(card) == ["name", "phone", "email", "account_number", "language", "membership"]
    assert card_values(card) == {
        "name": "Maria Muster",
        "email": "maria@example.com",
        "language": "de",
    }
    name = card.fields[0]
    assert (name.label, name.type, name.value.text_value) == (
        "Name",
        pb.ATTRIBUTE_TYPE_TEXT,
        "Maria Muster",
    )
    assert [(i.channel, i.handle) for i in card.identities] == [("whatsapp", "+491701234567")]

    found = await stub.FindContactByIdentity(
        pb.FindContactByIdentityRequest(channel="whatsapp", handle="+491701234567"),
        metadata=bearer(token),
    )
    assert found.contact_id == contact
    batch = await stub.BatchGetContacts(
        pb.BatchGetContactsRequest(contact_ids=[contact, "unknown", contact]),
        metadata=bearer(token),
    )
    assert [c.contact_id for c in batch.contacts] == [contact]
    assert batch.contacts[0].attributes["email"].display == "maria@example.com"


async def test_reorder_and_toggle_change_the_card_for_every_agent_at_once(
    second_replica: SecondReplica,
    stub: Stub,
    publish: Publish,
    make_token: Any,
    unique: Callable[[str], str],
) -> None:
    org, contact = unique("org"), unique("contact")
    admin = make_token(org, "admin-1", role="admin")
    agents = [make_token(org, f"agent-{i}") for i in range(3)]
    await publish(org, contact, {"name": "Ann", "membership": "gold", "account_number": "A-1"})
    await wait_card(stub, agents[0], contact, lambda c: bool(card_values(c)))
    async with second_replica(definitions_cache_seconds=0.5) as (_, other_stub):
        await other_stub.GetContactCard(  # warm its definitions cache with the initial order
            pb.GetContactCardRequest(contact_id=contact), metadata=bearer(agents[0])
        )
        listed = await stub.ListAttributeDefinitions(
            pb.ListAttributeDefinitionsRequest(), metadata=bearer(admin)
        )
        new_order = ["membership", "account_number", "name", "phone", "email", "language"]
        await stub.ReorderAttributeDefinitions(
            pb.ReorderAttributeDefinitionsRequest(keys=new_order, expected_version=listed.version),
            metadata=bearer(admin),
        )
        await stub.UpdateAttributeDefinition(
            pb.UpdateAttributeDefinitionRequest(key="phone", enabled=False),
            metadata=bearer(admin),
        )
        expected = ["membership", "account_number", "name", "email", "language"]
        for token in agents:  # the replica that took the writes: immediately
            card = await stub.GetContactCard(
                pb.GetContactCardRequest(contact_id=contact), metadata=bearer(token)
            )
            assert card_keys(card) == expected
            assert card.definitions_version == listed.version + 2
        # The other replica: within its cache bound (0.5 s here).
        for token in agents:
            await wait_card(other_stub, token, contact, lambda c: card_keys(c) == expected)


async def test_a_profile_change_reaches_cached_cards_on_every_replica_at_once(
    running: Running,
    second_replica: SecondReplica,
    stub: Stub,
    publish: Publish,
    make_token: Any,
    unique: Callable[[str], str],
) -> None:
    org, contact = unique("org"), unique("contact")
    token = make_token(org, "agent-1")
    await publish(org, contact, {"name": "Ann"}, at=T0)
    await wait_card(stub, token, contact, lambda c: card_values(c).get("name") == "Ann")
    async with second_replica() as (other, other_stub):
        for s, service in ((stub, running.service), (other_stub, other)):

            async def cached(s: Stub = s, service: Contacts = service) -> bool:
                card = await s.GetContactCard(
                    pb.GetContactCardRequest(contact_id=contact), metadata=bearer(token)
                )
                assert card_values(card)["name"] == "Ann"
                return (org, contact) in service.contact_cache

            await wait_until(cached, timeout=10, interval=0.05)  # served from memory now

        await publish(org, contact, {"name": "Anna"}, at=T0 + timedelta(seconds=1))
        started = asyncio.get_running_loop().time()
        for s in (stub, other_stub):
            await wait_card(s, token, contact, lambda c: card_values(c)["name"] == "Anna")
        # Far inside the entries' 300 s age limit: the change notice did it.
        assert asyncio.get_running_loop().time() - started < 5
        # A late, older update changes nothing, so nothing goes stale either.
        await publish(org, contact, {"name": "Old"}, at=T0 - timedelta(seconds=1))
        await publish(org, contact, {"language": "de"}, at=T0 + timedelta(seconds=2))
        for s in (stub, other_stub):
            card = await wait_card(s, token, contact, lambda c: "language" in card_values(c))
            assert card_values(card) == {"name": "Anna", "language": "de"}


async def test_invalid_and_malformed_messages_are_dead_lettered_and_later_ones_apply(
    infra: Infra,
    producer: Any,
    stub: Stub,
    publish: Publish,
    make_token: Any,
    unique: Callable[[str], str],
) -> None:
    org, contact = unique("org"), unique("contact")
    token = make_token(org, "agent-1")
    async with TopicProbe(infra.kafka_bootstrap, CONTACTS.dead_letter) as dlq:
        bad_type = await publish(org, contact, {"name": "Bob", "email": "not-an-email"})
        unknown = await publish(org, contact, {"shoe_size": 44})
        malformed_key = contact.encode()
        await producer.send_and_wait(CONTACTS.name, b"{not json", key=malformed_key)
        await publish(org, contact, {"name": "Bob", "email": "bob@example.com"})
        card = await wait_card(stub, token, contact, lambda c: bool(card_values(c)))
        assert card_values(card) == {"name": "Bob", "email": "bob@example.com"}

        def ours(record: Any) -> bool:
            return bool(record.key == malformed_key)

        records = await dlq.wait_for(ours, count=3, timeout=20)
    errors = {dict(r.headers)[kit_kafka.H_ERROR].decode(): r.value for r in records if r.headers}
    assert errors["email: not an e-mail address"] == bad_type.to_json_bytes()
    assert errors["shoe_size: unknown attribute"] == unknown.to_json_bytes()
    assert any(e.startswith("not JSON") for e in errors)


async def test_an_older_update_arriving_later_does_not_overwrite_a_newer_one(
    stub: Stub, publish: Publish, make_token: Any, unique: Callable[[str], str]
) -> None:
    org, contact = unique("org"), unique("contact")
    token = make_token(org, "agent-1")
    newer = await publish(
        org, contact, {"name": "New", "email": None}, at=T0 + timedelta(minutes=5)
    )
    await publish(
        org, contact, {"name": "Old", "email": "old@example.com", "language": "en"}, at=T0
    )
    await publish(  # a redelivered duplicate of the newer event
        org,
        contact,
        {"name": "New", "email": None},
        at=T0 + timedelta(minutes=5),
        event_id=newer.id,
    )
    await publish(org, contact, {"membership": "silver"}, at=T0 + timedelta(minutes=1))
    card = await wait_card(stub, token, contact, lambda c: "membership" in card_values(c))
    assert card_values(card) == {"name": "New", "language": "en", "membership": "silver"}
    assert card.updated_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=5)


async def test_concurrent_reorders_one_wins_the_other_is_refused(
    stub: Stub, make_token: Any, unique: Callable[[str], str]
) -> None:
    org = unique("org")
    admins = [make_token(org, f"admin-{i}", role="admin") for i in range(2)]
    listed = await stub.ListAttributeDefinitions(
        pb.ListAttributeDefinitionsRequest(), metadata=bearer(admins[0])
    )
    keys = [d.key for d in listed.definitions]
    orders = [list(reversed(keys)), keys[1:] + keys[:1]]

    async def reorder(i: int) -> pb.ListAttributeDefinitionsResponse | grpc.aio.AioRpcError:
        try:
            return await stub.ReorderAttributeDefinitions(
                pb.ReorderAttributeDefinitionsRequest(
                    keys=orders[i], expected_version=listed.version
                ),
                metadata=bearer(admins[i]),
            )
        except grpc.aio.AioRpcError as exc:
            return exc

    results = await asyncio.gather(reorder(0), reorder(1))
    wins = [i for i, r in enumerate(results) if isinstance(r, pb.ListAttributeDefinitionsResponse)]
    losses = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(wins) == 1 and len(losses) == 1
    assert losses[0].code() == grpc.StatusCode.ABORTED
    assert "reload" in (losses[0].details() or "")
    after = await stub.ListAttributeDefinitions(
        pb.ListAttributeDefinitionsRequest(), metadata=bearer(admins[1])
    )
    assert [d.key for d in after.definitions] == orders[wins[0]]
    assert after.version == listed.version + 1
    # A stale reorder later on is refused too, and changes nothing.
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await stub.ReorderAttributeDefinitions(
            pb.ReorderAttributeDefinitionsRequest(keys=keys, expected_version=listed.version),
            metadata=bearer(admins[0]),
        )
    assert stale.value.code() == grpc.StatusCode.ABORTED


async def test_many_concurrent_commits_of_one_version_store_exactly_one(
    running: Running, infra: Infra, unique: Callable[[str], str]
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    try:
        repo = MongoDefinitionsRepository(client[running.settings.mongodb_database])
        org = unique("org")
        base = Definitions.initial(org)
        proposals = [base.reorder(list(reversed(base.keys)))] + [
            base.update("name", label=f"Name {i}") for i in range(7)
        ]
        outcomes = await asyncio.gather(*(repo.commit(p) for p in proposals))
        assert outcomes.count(True) == 1
        stored = await repo.get(org)
        assert stored == proposals[outcomes.index(True)]
    finally:
        await client.close()


async def test_definition_admin_operations(
    stub: Stub, make_token: Any, unique: Callable[[str], str]
) -> None:
    org = unique("org")
    admin = bearer(make_token(org, "admin-1", role="admin"))
    created = await stub.CreateAttributeDefinition(
        pb.CreateAttributeDefinitionRequest(
            key="tier", label="Tier", type=pb.ATTRIBUTE_TYPE_LIST, options=["gold", "silver"]
        ),
        metadata=admin,
    )
    assert (created.position, created.enabled, created.built_in) == (6, True, False)
    with pytest.raises(grpc.aio.AioRpcError) as dup:
        await stub.CreateAttributeDefinition(
            pb.CreateAttributeDefinitionRequest(key="tier", label="T", type=pb.ATTRIBUTE_TYPE_TEXT),
            metadata=admin,
        )
    assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS
    updated = await stub.UpdateAttributeDefinition(
        pb.UpdateAttributeDefinitionRequest(
            key="tier", label="Level", options=["a", "b"], update_options=True
        ),
        metadata=admin,
    )
    assert (updated.label, list(updated.options), updated.type) == (
        "Level",
        ["a", "b"],
        pb.ATTRIBUTE_TYPE_LIST,
    )
    with pytest.raises(grpc.aio.AioRpcError) as builtin:
        await stub.DeleteAttributeDefinition(
            pb.DeleteAttributeDefinitionRequest(key="email"), metadata=admin
        )
    assert builtin.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    deleted = await stub.DeleteAttributeDefinition(
        pb.DeleteAttributeDefinitionRequest(key="tier"), metadata=admin
    )
    listed = await stub.ListAttributeDefinitions(
        pb.ListAttributeDefinitionsRequest(), metadata=admin
    )
    assert listed.version == deleted.version == 3
    assert "tier" not in [d.key for d in listed.definitions]


async def test_other_orgs_and_non_admins_are_refused(
    stub: Stub, publish: Publish, make_token: Any, unique: Callable[[str], str]
) -> None:
    org, other_org, contact = unique("org"), unique("org"), unique("contact")
    await publish(org, contact, {"name": "Eve"}, identities=(("email", "eve@example.com"),))
    await wait_card(stub, make_token(org, "a"), contact, lambda c: True)
    stranger = bearer(make_token(other_org, "a"))
    with pytest.raises(grpc.aio.AioRpcError) as card:
        await stub.GetContactCard(pb.GetContactCardRequest(contact_id=contact), metadata=stranger)
    assert card.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as find:
        await stub.FindContactByIdentity(
            pb.FindContactByIdentityRequest(channel="email", handle="eve@example.com"),
            metadata=stranger,
        )
    assert find.value.code() == grpc.StatusCode.NOT_FOUND
    batch = await stub.BatchGetContacts(
        pb.BatchGetContactsRequest(contact_ids=[contact]), metadata=stranger
    )
    assert list(batch.contacts) == []

    agent = bearer(make_token(org, "agent-1"))
    listed = await stub.ListAttributeDefinitions(
        pb.ListAttributeDefinitionsRequest(), metadata=agent
    )
    writes = [
        stub.CreateAttributeDefinition(
            pb.CreateAttributeDefinitionRequest(key="x", label="X", type=pb.ATTRIBUTE_TYPE_TEXT),
            metadata=agent,
        ),
        stub.UpdateAttributeDefinition(
            pb.UpdateAttributeDefinitionRequest(key="name", enabled=False), metadata=agent
        ),
        stub.DeleteAttributeDefinition(
            pb.DeleteAttributeDefinitionRequest(key="name"), metadata=agent
        ),
        stub.ReorderAttributeDefinitions(
            pb.ReorderAttributeDefinitionsRequest(
                keys=[d.key for d in reversed(listed.definitions)], expected_version=listed.version
            ),
            metadata=agent,
        ),
    ]
    for call in writes:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await call
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stub.GetContactCard(pb.GetContactCardRequest(contact_id=contact))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("BatchGetContacts", pb.BatchGetContactsRequest(contact_ids=["c"] * 101), "contact_ids"),
        ("BatchGetContacts", pb.BatchGetContactsRequest(contact_ids=["c", ""]), "contact_ids[1]"),
        ("GetContactCard", pb.GetContactCardRequest(), "contact_id"),
        ("GetContact", pb.GetContactRequest(contact_id="x" * 300), "contact_id"),
        ("FindContactByIdentity", pb.FindContactByIdentityRequest(handle="h"), "channel"),
        (
            "CreateAttributeDefinition",
            pb.CreateAttributeDefinitionRequest(
                key="Bad Key", label="L", type=pb.ATTRIBUTE_TYPE_TEXT
            ),
            "key",
        ),
        (
            "CreateAttributeDefinition",
            pb.CreateAttributeDefinitionRequest(key="ok", label=" ", type=pb.ATTRIBUTE_TYPE_TEXT),
            "label",
        ),
        (
            "CreateAttributeDefinition",
            pb.CreateAttributeDefinitionRequest(key="ok", label="L"),
            "type",
        ),
        (
            "CreateAttributeDefinition",
            pb.CreateAttributeDefinitionRequest(key="ok", label="L", type=pb.ATTRIBUTE_TYPE_LIST),
            "options",
        ),
        (
            "ReorderAttributeDefinitions",
            pb.ReorderAttributeDefinitionsRequest(keys=["name"], expected_version=0),
            "keys",
        ),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    stub: Stub,
    make_token: Any,
    unique: Callable[[str], str],
    method: str,
    request_: Any,
    field: str,
) -> None:
    admin = bearer(make_token(unique("org"), "admin", role="admin"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await getattr(stub, method)(request_, metadata=admin)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violation(exc.value) == field
    assert field in (exc.value.details() or "")
