from __future__ import annotations

from typing import Any

import pytest
from inbox_kit.auth import Principal, Role
from inbox_kit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from replies_service.domain.model import Viewer
from replies_service.domain.search import Match
from replies_service.service_layer import handlers as h
from replies_service.service_layer.handlers import Deps

ADMIN = Viewer("org", "boss", True, frozenset({"t-admin"}))
ANA = Viewer("org", "ana", False, frozenset({"t-sales"}))
BOB = Viewer("org", "bob", False, frozenset({"t-support"}))
EVE = Viewer("other-org", "eve", True, frozenset({"t-sales"}))


async def shared(deps: Deps, teams: tuple[str, ...] = (), channels: tuple[str, ...] = ()) -> str:
    c = await h.create_collection(
        deps, ADMIN, name="FAQ", description="", team_ids=teams, channel_ids=channels
    )
    return c.collection_id


async def add(deps: Deps, viewer: Viewer, collection_id: str, title: str, **kw: Any) -> str:
    r = await h.create_reply(
        deps,
        viewer,
        collection_id=collection_id,
        title=title,
        body=kw.get("body", "body"),
        shortcut=kw.get("shortcut", ""),
        tags=kw.get("tags", ()),
    )
    return r.reply_id


async def search_ids(deps: Deps, viewer: Viewer, query: str = "") -> list[str]:
    page = await h.search_replies(deps, viewer, query=query, page_size=100, page_token="")
    return [hit.view.reply.reply_id for hit in page.hits]


async def test_visibility_matrix(deps: Deps) -> None:
    sales = await shared(deps, teams=("t-sales",))
    support = await shared(deps, teams=("t-support",))
    wa = await shared(deps, channels=("whatsapp-1",))
    r_sales = await add(deps, ADMIN, sales, "sales")
    r_support = await add(deps, ADMIN, support, "support")
    r_wa = await add(deps, ADMIN, wa, "wa")
    r_bob = await add(deps, BOB, "", "bob's own")
    r_eve = await add(deps, EVE, "", "eve's own")

    assert set(await search_ids(deps, ANA)) == {r_sales}
    ana_wa = Viewer("org", "ana", False, frozenset({"t-sales"}), channel_id="whatsapp-1")
    assert set(await search_ids(deps, ana_wa)) == {r_sales, r_wa}
    assert set(await search_ids(deps, BOB)) == {r_support, r_bob}

    names = [c.collection_id for c in await h.list_collections(deps, ANA)]
    assert names == [ANA.personal_collection_id, sales]
    for invisible in (r_support, r_wa, r_bob, r_eve):
        with pytest.raises(NotFound):
            await h.get_reply(deps, ANA, invisible)
        with pytest.raises(NotFound):
            await h.render_reply(deps, ANA, caller("t"), reply_id=invisible, contact_id="")
    assert (await h.get_reply(deps, ana_wa, r_wa)).reply.title == "wa"
    with pytest.raises(NotFound):
        await h.list_replies(
            deps, ANA, collection_id=BOB.personal_collection_id, page_size=0, page_token=""
        )
    with pytest.raises(NotFound):  # another org's admin sees nothing of ours
        await h.get_reply(deps, EVE, r_sales)


async def test_writes_need_admin_for_shared_and_owner_for_personal(deps: Deps) -> None:
    sales = await shared(deps, teams=("t-sales",))
    with pytest.raises(PermissionDenied):
        await add(deps, ANA, sales, "nope")
    with pytest.raises(PermissionDenied):
        await h.create_collection(deps, ANA, name="x", description="", team_ids=(), channel_ids=())
    r_ana = await add(deps, ANA, "", "mine")
    with pytest.raises(NotFound):
        await h.delete_reply(deps, BOB, r_ana)
    with pytest.raises(NotFound):  # admins do not see agents' personal collections either
        await h.delete_reply(deps, ADMIN, r_ana)
    with pytest.raises(PermissionDenied):
        await h.delete_collection(deps, ANA, ANA.personal_collection_id)


async def test_shortcut_rules(deps: Deps) -> None:
    a = await shared(deps, teams=("t-sales",))
    b = await shared(deps, teams=("t-support",))
    await add(deps, ADMIN, a, "Refund", shortcut="/refund")
    with pytest.raises(AlreadyExists, match="/refund"):
        await add(deps, ADMIN, b, "Other refund", shortcut="refund")
    mine = await add(deps, ANA, "", "My refund", shortcut="refund")  # shadows the shared one
    with pytest.raises(AlreadyExists):
        await add(deps, ANA, "", "Again", shortcut="refund")
    await add(deps, BOB, "", "Bob refund", shortcut="refund")  # another agent's namespace
    page = await h.search_replies(deps, ANA, query="/refund", page_size=10, page_token="")
    assert next((x.view.reply.reply_id, x.match) for x in page.hits) == (
        mine,
        Match.SHORTCUT_EXACT,
    )
    # rename releases the old shortcut
    await h.update_reply(
        deps, ANA, reply_id=mine, title="My refund", body="b", shortcut="money", tags=()
    )
    await add(deps, ANA, "", "Again", shortcut="refund")


async def test_stale_claim_is_taken_over(deps: Deps, store: Any) -> None:
    store.shortcuts["org:shared:hello"] = "ghost-reply"
    c = await shared(deps)
    await add(deps, ADMIN, c, "Hello", shortcut="hello")
    assert store.shortcuts["org:shared:hello"] != "ghost-reply"


async def test_delete_collection_deletes_replies_and_releases_shortcuts(
    deps: Deps, store: Any
) -> None:
    c = await shared(deps, teams=("t-sales",))
    r = await add(deps, ADMIN, c, "Hello", shortcut="hello")
    assert await h.delete_collection(deps, ADMIN, c) == 1
    assert r not in store.replies
    assert store.shortcuts == {}
    assert await search_ids(deps, ANA) == []


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("title", {"title": "x" * 501}),
        ("title", {"title": "  "}),
        ("body", {"body": "x" * 2001}),
        ("body", {"body": "{{contact.name"}),
        ("shortcut", {"shortcut": "/Bad Shortcut"}),
        ("tags", {"tags": ["", "a"]}),
    ],
)
async def test_invalid_input_names_the_field(
    deps: Deps, field: str, kwargs: dict[str, Any]
) -> None:
    args: dict[str, Any] = {"title": "t", "body": "b", "shortcut": "", "tags": ()} | kwargs
    with pytest.raises(InvalidArgument) as exc:
        await h.create_reply(deps, ANA, collection_id="", **args)
    assert exc.value.field == field


async def test_limits_are_inclusive(deps: Deps) -> None:
    await add(deps, ANA, "", "x" * 500, body="y" * 2000)


async def test_index_reloads_only_after_writes(deps: Deps, store: Any) -> None:
    c = await shared(deps, teams=("t-sales",))
    await add(deps, ADMIN, c, "one")
    await search_ids(deps, ANA)
    loads = store.loads
    await search_ids(deps, ANA)
    assert store.loads == loads
    await add(deps, ADMIN, c, "two")
    assert len(await search_ids(deps, ANA, "")) == 2
    assert store.loads == loads + 1


async def test_paging_lists_every_reply_once(deps: Deps) -> None:
    for i in range(7):
        await add(deps, ANA, "", f"reply {i}")
    seen: list[str] = []
    token = ""
    while True:
        page = await h.list_replies(
            deps, ANA, collection_id=ANA.personal_collection_id, page_size=3, page_token=token
        )
        seen += [v.reply.title for v in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"reply {i}" for i in range(7)]
    with pytest.raises(InvalidArgument) as exc:
        await h.list_replies(deps, ANA, collection_id="x", page_size=0, page_token="%%%")
    assert exc.value.field == "page_token"


def caller(token: str, name: str = "") -> Principal:
    """ANA's verified principal carrying ``token``."""
    return Principal(
        "org", "ana", Role.AGENT, frozenset({"t-sales"}), name=name, bearer_token=token
    )


async def test_render_uses_contacts_port_with_callers_token(deps: Deps, contacts: Any) -> None:
    contacts.org_of_token["tok"] = "org"
    contacts.contacts[("org", "c1")] = {"name": "Maria Muster", "plan": "gold"}
    r = await add(
        deps,
        ANA,
        "",
        "greet",
        body='Hi {{contact.first_name | fallback: "there"}}, {{contact.plan}} '
        '{{contact.city}} {{contact.zip | fallback: "?"}} -- {{agent.name}}',
    )
    out = await h.render_reply(deps, ANA, caller("tok"), reply_id=r, contact_id="c1")
    assert out.rendered.text == "Hi Maria, gold  ? -- ana"
    assert out.rendered.missing == ("contact.city",)
    assert out.rendered.fallbacks == ("contact.zip",)
    assert contacts.calls == [("c1", "tok")]
    unknown = await h.render_reply(
        deps, ANA, caller("tok", name="Ana A."), reply_id=r, contact_id="nobody"
    )
    assert not unknown.contact_found
    assert unknown.rendered.text.startswith("Hi there,")
    assert unknown.rendered.text.endswith("-- Ana A.")


async def test_record_use_publishes_and_counting_is_idempotent(deps: Deps, publisher: Any) -> None:
    r = await add(deps, ANA, "", "x")
    e1 = await h.record_reply_used(deps, ANA, reply_id=r, use_id="u1", conversation_id="conv")
    e2 = await h.record_reply_used(deps, ANA, reply_id=r, use_id="u1", conversation_id="conv")
    assert e1 == e2
    assert publisher.events[0].data.conversation_id == "conv"
    for event in publisher.events:
        await h.count_use(deps, event.data, event.id)
    assert (await h.get_reply(deps, ANA, r)).usage_count == 1
    with pytest.raises(NotFound):
        await h.record_reply_used(deps, BOB, reply_id=r, use_id="u2", conversation_id="")


async def test_search_usage_is_rescanned_only_after_counted_uses(
    deps: Deps, store: Any, publisher: Any
) -> None:
    scans = 0
    real_counts = store.usage_counts

    async def counting(org_id: str) -> dict[str, int]:
        nonlocal scans
        scans += 1
        return dict(await real_counts(org_id))

    store.usage_counts = counting
    a = await add(deps, ANA, "", "alpha")
    b = await add(deps, ANA, "", "beta")

    async def settle() -> None:  # let the background refresh (every search here) finish
        await h.search_replies(deps, ANA, query="", page_size=10, page_token="")
        for task in list(deps.index._usage_tasks.values()):
            await task

    await settle()
    before = scans
    await settle()
    await settle()
    assert scans == before  # token unchanged: no full read of the counters
    await h.record_reply_used(deps, ANA, reply_id=b, use_id="u1", conversation_id="")
    await h.count_use(deps, publisher.events[-1].data, publisher.events[-1].id)
    await settle()
    assert scans == before + 1
    assert await search_ids(deps, ANA) == [b, a]  # the used reply now ranks first
    await h.count_use(deps, publisher.events[-1].data, publisher.events[-1].id)  # redelivery
    await settle()
    assert scans == before + 2  # a duplicate bumps too (it may follow a crash before a bump)
