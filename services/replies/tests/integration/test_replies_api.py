"""The replies gRPC API on the real stack: FerretDB, Kafka and the real contacts service."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from inbox.replies.v1 import replies_pb2 as pb
from inbox_contracts.topics import REPLIES
from inbox_testing import Infra, TopicProbe, bearer, wait_until

pytestmark = pytest.mark.infra

Stub = Any


class World:
    """One org with an admin, agents in two teams, collections covering the visibility matrix."""

    def __init__(self, make_token: Callable[..., str], unique: Callable[[str], str]) -> None:
        self.org = unique("org")
        self.other_org = unique("org")
        self.admin = make_token(self.org, "boss", role="admin", teams=("t-admin",))
        self.ana = make_token(self.org, "ana", teams=("t-sales",), channels=("wa-1",))
        self.bob = make_token(self.org, "bob", teams=("t-support",))
        self.eve = make_token(self.other_org, "eve", role="admin", teams=("t-sales",))


@pytest.fixture
def world(make_token: Callable[..., str], unique: Callable[[str], str]) -> World:
    return World(make_token, unique)


async def create_collection(
    stub: Stub, token: str, name: str, teams: tuple[str, ...] = (), channels: tuple[str, ...] = ()
) -> str:
    c = await stub.CreateCollection(
        pb.CreateCollectionRequest(name=name, team_ids=teams, channel_ids=channels),
        metadata=bearer(token),
    )
    return str(c.collection_id)


async def create_reply(stub: Stub, token: str, collection_id: str, title: str, **kw: Any) -> str:
    r = await stub.CreateReply(
        pb.CreateReplyRequest(collection_id=collection_id, title=title, **kw),
        metadata=bearer(token),
    )
    return str(r.reply_id)


async def search(stub: Stub, token: str, query: str = "", channel_id: str = "") -> list[Any]:
    resp = await stub.SearchReplies(
        pb.SearchRepliesRequest(query=query, channel_id=channel_id, page_size=100),
        metadata=bearer(token),
    )
    return list(resp.results)


async def expect_code(code: grpc.StatusCode, call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    assert exc.value.code() == code, exc.value.details()
    return exc.value


def violated_field(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return str(bad.field_violations[0].field)
    raise AssertionError("no BadRequest detail")


async def test_visibility_matrix_for_list_search_get_and_render(
    replies: Stub, world: World
) -> None:
    sales = await create_collection(replies, world.admin, "Sales FAQ", teams=("t-sales",))
    support = await create_collection(replies, world.admin, "Support FAQ", teams=("t-support",))
    wa = await create_collection(replies, world.admin, "WhatsApp", channels=("wa-1",))
    r_sales = await create_reply(replies, world.admin, sales, "Sales hello", body="sales")
    r_support = await create_reply(replies, world.admin, support, "Support hello", body="x")
    r_wa = await create_reply(replies, world.admin, wa, "WA hello", body="wa")
    r_bob = await create_reply(replies, world.bob, "", "Bob hello", body="bob")
    r_ana = await create_reply(replies, world.ana, "", "Ana hello", body="ana")
    r_eve = await create_reply(replies, world.eve, "", "Eve hello", body="eve")

    # list collections: personal first, then shared ones visible by team / channel
    listed = await replies.ListCollections(pb.ListCollectionsRequest(), metadata=bearer(world.ana))
    assert [c.collection_id for c in listed.collections] == [
        f"{world.org}:personal:ana",
        sales,
    ]
    assert listed.collections[0].kind == pb.COLLECTION_KIND_PERSONAL
    in_wa = await replies.ListCollections(
        pb.ListCollectionsRequest(channel_id="wa-1"), metadata=bearer(world.ana)
    )
    assert {c.collection_id for c in in_wa.collections} == {f"{world.org}:personal:ana", sales, wa}

    # search
    hits = {r.reply.reply_id for r in await search(replies, world.ana, "hello")}
    assert hits == {r_sales, r_ana}
    hits = {r.reply.reply_id for r in await search(replies, world.ana, "hello", "wa-1")}
    assert hits == {r_sales, r_ana, r_wa}
    assert {r.reply.reply_id for r in await search(replies, world.eve, "hello")} == {r_eve}

    # get + render + list replies: invisible → NOT_FOUND, never PERMISSION_DENIED
    for invisible in (r_support, r_wa, r_bob, r_eve):
        await expect_code(
            grpc.StatusCode.NOT_FOUND,
            replies.GetReply(pb.GetReplyRequest(reply_id=invisible), metadata=bearer(world.ana)),
        )
        await expect_code(
            grpc.StatusCode.NOT_FOUND,
            replies.RenderReply(
                pb.RenderReplyRequest(reply_id=invisible), metadata=bearer(world.ana)
            ),
        )
    for coll in (support, wa, f"{world.org}:personal:bob"):
        await expect_code(
            grpc.StatusCode.NOT_FOUND,
            replies.ListReplies(
                pb.ListRepliesRequest(collection_id=coll), metadata=bearer(world.ana)
            ),
        )
    got = await replies.GetReply(
        pb.GetReplyRequest(reply_id=r_wa, channel_id="wa-1"), metadata=bearer(world.ana)
    )
    assert got.title == "WA hello"
    rendered = await replies.RenderReply(
        pb.RenderReplyRequest(reply_id=r_wa, channel_id="wa-1"), metadata=bearer(world.ana)
    )
    assert rendered.text == "wa"
    # bob's token grants no channel: naming wa-1 behaves as if nothing were shared with it
    assert {r.reply.reply_id for r in await search(replies, world.bob, "hello", "wa-1")} == {
        r_support,
        r_bob,
    }
    listed_bob = await replies.ListCollections(
        pb.ListCollectionsRequest(channel_id="wa-1"), metadata=bearer(world.bob)
    )
    assert wa not in {c.collection_id for c in listed_bob.collections}
    for call in (
        replies.GetReply(
            pb.GetReplyRequest(reply_id=r_wa, channel_id="wa-1"), metadata=bearer(world.bob)
        ),
        replies.RenderReply(
            pb.RenderReplyRequest(reply_id=r_wa, channel_id="wa-1"), metadata=bearer(world.bob)
        ),
        replies.RecordReplyUsed(
            pb.RecordReplyUsedRequest(reply_id=r_wa, channel_id="wa-1"), metadata=bearer(world.bob)
        ),
        replies.ListReplies(
            pb.ListRepliesRequest(collection_id=wa, channel_id="wa-1"), metadata=bearer(world.bob)
        ),
    ):
        await expect_code(grpc.StatusCode.NOT_FOUND, call)
    page = await replies.ListReplies(
        pb.ListRepliesRequest(collection_id=sales), metadata=bearer(world.ana)
    )
    assert [r.reply_id for r in page.replies] == [r_sales]
    # another org's admin cannot touch our shared collection
    await expect_code(
        grpc.StatusCode.NOT_FOUND,
        replies.DeleteCollection(
            pb.DeleteCollectionRequest(collection_id=sales), metadata=bearer(world.eve)
        ),
    )


async def test_writes_are_authorised(replies: Stub, world: World) -> None:
    sales = await create_collection(replies, world.admin, "Sales", teams=("t-sales",))
    await expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        replies.CreateReply(
            pb.CreateReplyRequest(collection_id=sales, title="t", body="b"),
            metadata=bearer(world.ana),
        ),
    )
    await expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        replies.CreateCollection(pb.CreateCollectionRequest(name="x"), metadata=bearer(world.ana)),
    )
    mine = await create_reply(replies, world.ana, "", "Mine", body="b")
    await expect_code(
        grpc.StatusCode.NOT_FOUND,
        replies.DeleteReply(pb.DeleteReplyRequest(reply_id=mine), metadata=bearer(world.admin)),
    )
    await replies.DeleteReply(pb.DeleteReplyRequest(reply_id=mine), metadata=bearer(world.ana))
    await expect_code(
        grpc.StatusCode.NOT_FOUND,
        replies.GetReply(pb.GetReplyRequest(reply_id=mine), metadata=bearer(world.ana)),
    )
    await expect_code(
        grpc.StatusCode.UNAUTHENTICATED,
        replies.ListCollections(pb.ListCollectionsRequest()),
    )


async def test_ranking_shortcut_then_title_then_body_with_usage_tiebreak(
    replies: Stub, replies_app: Any, world: World, infra: Infra
) -> None:
    faq = await create_collection(replies, world.admin, "FAQ", teams=("t-sales",))
    body = await create_reply(replies, world.admin, faq, "Money back", body="we refund you")
    title_a = await create_reply(replies, world.admin, faq, "Refund A", body="a")
    title_b = await create_reply(replies, world.admin, faq, "Refund B", body="b")
    prefix = await create_reply(replies, world.admin, faq, "Returns", body="c", shortcut="/refund")
    results = await search(replies, world.ana, "/ref")
    assert [(r.reply.reply_id, r.match) for r in results] == [
        (prefix, pb.MATCH_KIND_SHORTCUT_PREFIX),
        (title_a, pb.MATCH_KIND_TITLE),
        (title_b, pb.MATCH_KIND_TITLE),
        (body, pb.MATCH_KIND_BODY),
    ]

    # use "Refund B" twice: usage is counted from the SavedReplyUsed events and breaks the tie
    async with TopicProbe(infra.kafka_bootstrap, REPLIES.name) as probe:
        for use in ("u1", "u2", "u2"):  # u2 retried: counted once
            await replies.RecordReplyUsed(
                pb.RecordReplyUsedRequest(reply_id=title_b, use_id=use, conversation_id="conv-1"),
                metadata=bearer(world.ana),
            )
        records = await probe.wait_for(
            lambda r: json.loads(r.value)["data"]["reply_id"] == title_b, count=3
        )
    data = json.loads(records[0].value)["data"]
    assert data | {"occurred_at": None} == {
        "org_id": world.org,
        "reply_id": title_b,
        "collection_id": faq,
        "agent_id": "ana",
        "conversation_id": "conv-1",
        "occurred_at": None,
    }
    assert records[0].key == title_b.encode()

    async def counted() -> bool:
        got = await replies.GetReply(
            pb.GetReplyRequest(reply_id=title_b), metadata=bearer(world.ana)
        )
        return bool(got.usage_count == 2)

    await wait_until(counted, timeout=45, interval=0.3)

    async def reranked() -> bool:
        ids = [r.reply.reply_id for r in await search(replies, world.ana, "refund")]
        return ids[1:3] == [title_b, title_a]

    await wait_until(reranked, timeout=10, interval=0.3)


async def test_shortcut_conflicts_and_shadowing(replies: Stub, world: World) -> None:
    a = await create_collection(replies, world.admin, "A", teams=("t-sales",))
    b = await create_collection(replies, world.admin, "B", teams=("t-support",))
    shared = await create_reply(replies, world.admin, a, "Thanks", body="t", shortcut="thanks")
    err = await expect_code(
        grpc.StatusCode.ALREADY_EXISTS,
        replies.CreateReply(
            pb.CreateReplyRequest(collection_id=b, title="x", body="y", shortcut="/thanks"),
            metadata=bearer(world.admin),
        ),
    )
    assert "/thanks" in (err.details() or "")
    mine = await create_reply(replies, world.ana, "", "My thanks", body="m", shortcut="thanks")
    results = await search(replies, world.ana, "/thanks")
    assert [(r.reply.reply_id, r.match) for r in results] == [
        (mine, pb.MATCH_KIND_SHORTCUT_EXACT),
        (shared, pb.MATCH_KIND_TITLE),
    ]
    # deleting the collection deletes its replies and frees the shortcut
    deleted = await replies.DeleteCollection(
        pb.DeleteCollectionRequest(collection_id=a), metadata=bearer(world.admin)
    )
    assert deleted.deleted_replies == 1
    await create_reply(replies, world.admin, b, "Thanks again", body="y", shortcut="thanks")


@pytest.mark.parametrize(
    ("field", "request_kwargs"),
    [
        ("title", {"title": "x" * 501, "body": "b"}),
        ("body", {"title": "t", "body": "x" * 2001}),
        ("body", {"title": "t", "body": "Hi {{contact.first_name"}),
        ("body", {"title": "t", "body": "Hi {{customer.name}}"}),
        ("body", {"title": "t", "body": "Hi {{contact.name | fallback: there}}"}),
        ("body", {"title": "t", "body": "Hi {{contact.name | shout}}"}),
        ("shortcut", {"title": "t", "body": "b", "shortcut": "/No Spaces"}),
        ("title", {"title": "", "body": "b"}),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    replies: Stub, world: World, field: str, request_kwargs: dict[str, Any]
) -> None:
    err = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        replies.CreateReply(pb.CreateReplyRequest(**request_kwargs), metadata=bearer(world.ana)),
    )
    assert violated_field(err) == field


async def test_limits_are_inclusive_and_other_fields_validated(replies: Stub, world: World) -> None:
    await create_reply(replies, world.ana, "", "x" * 500, body="y" * 2000)
    err = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        replies.SearchReplies(
            pb.SearchRepliesRequest(query="x", page_size=1000), metadata=bearer(world.ana)
        ),
    )
    assert violated_field(err) == "page_size"
    err = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        replies.CreateCollection(
            pb.CreateCollectionRequest(name="n" * 201), metadata=bearer(world.admin)
        ),
    )
    assert violated_field(err) == "name"


async def test_render_against_the_real_contacts_service(
    replies: Stub, world: World, seed_contact: Any, unique: Callable[[str], str], make_token: Any
) -> None:
    contact = unique("contact")
    await seed_contact(
        world.org, contact, {"name": "Maria Muster", "membership": "gold"}, world.ana
    )
    body = (
        'Hi {{contact.first_name | fallback: "there"}}, your {{contact.membership}} plan. '
        'Account: {{contact.account_number}}. Lang: {{contact.language | fallback: "en"}}. '
        "-- {{agent.name}}"
    )
    reply = await create_reply(replies, world.ana, "", "Greeting", body=body)
    out = await replies.RenderReply(
        pb.RenderReplyRequest(reply_id=reply, contact_id=contact), metadata=bearer(world.ana)
    )
    assert out.text == "Hi Maria, your gold plan. Account: . Lang: en. -- ana"
    assert list(out.missing_placeholders) == ["contact.account_number"]
    assert list(out.fallback_placeholders) == ["contact.language"]
    assert out.contact_found

    # agent name from the token's `name` claim
    import jwt
    from inbox_testing import TEST_JWT_SECRET

    claims = jwt.decode(world.ana, TEST_JWT_SECRET, algorithms=["HS256"]) | {"name": "Ana Lima"}
    named = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    out = await replies.RenderReply(
        pb.RenderReplyRequest(reply_id=reply, contact_id=contact), metadata=bearer(named)
    )
    assert out.text.endswith("-- Ana Lima")

    # the same contact id seen from another org does not exist: fallbacks / missing only
    other = make_token(world.other_org, "zed")
    reply_other = await create_reply(replies, other, "", "Greeting", body=body)
    out = await replies.RenderReply(
        pb.RenderReplyRequest(reply_id=reply_other, contact_id=contact), metadata=bearer(other)
    )
    assert not out.contact_found
    assert out.text == "Hi there, your  plan. Account: . Lang: en. -- zed"
    assert set(out.missing_placeholders) == {"contact.membership", "contact.account_number"}
    assert set(out.fallback_placeholders) == {"contact.first_name", "contact.language"}
