"""The replies service built by ``bootstrap`` over the in-memory fakes: a reply is created,
its use is published, and the usage consumer counts it once."""

from __future__ import annotations

from typing import Any

from inbox_testing.plugin import TEST_JWT_SECRET
from replies_service.bootstrap import bootstrap
from replies_service.domain.model import Viewer
from replies_service.entrypoints.consumer import usage_handler
from replies_service.service_layer import handlers as h
from replies_service.settings import RepliesSettings

ADMIN = Viewer("org", "boss", True, frozenset())


async def test_a_published_use_is_counted_once_by_the_consumer(
    store: Any, contacts: Any, publisher: Any
) -> None:
    settings = RepliesSettings(grpc_port=0, metrics_port=0, jwt_secret=TEST_JWT_SECRET)
    app = bootstrap(settings, store=store, contacts=contacts, usage_publisher=publisher)
    assert app.runtime.background, "the usage consumer is one of the runtime's loops"
    deps = app.deps
    collection = await h.create_collection(
        deps, ADMIN, name="FAQ", description="", team_ids=(), channel_ids=()
    )
    reply = await h.create_reply(
        deps,
        ADMIN,
        collection_id=collection.collection_id,
        title="Hello",
        body="Hi there",
        shortcut="",
        tags=(),
    )
    event_id = await h.record_reply_used(
        deps, ADMIN, reply_id=reply.reply_id, use_id="use-1", conversation_id=""
    )
    [event] = publisher.events
    assert event.id == event_id

    consume = usage_handler(deps)
    await consume(event)
    await consume(event)  # a redelivery
    assert await store.usage_count(reply.reply_id) == 1
