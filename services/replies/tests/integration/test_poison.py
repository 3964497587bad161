"""Poison on ``inbox.replies.v1`` (issue 12): dead-lettered with the right reason, the partition
goes on; binary-mode uses and uses with unknown fields are counted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from inbox.replies.v1 import replies_pb2 as pb
from inbox_contracts import CloudEvent
from inbox_contracts.events import SavedReplyUsed
from inbox_contracts.topics import REPLIES
from inbox_testing import Infra, TopicProbe, bearer, wait_until
from inbox_testing.poison import (
    expect_parked,
    poison_cases,
    send_binary,
    send_poison,
    with_unknown_fields,
)

from .test_replies_api import Stub, World, create_collection, create_reply

pytestmark = pytest.mark.infra


async def test_usage_poison_is_parked_and_binary_and_extended_uses_are_counted(
    replies: Stub, make_token: Callable[..., str], unique: Callable[[str], str], infra: Infra
) -> None:
    world = World(make_token, unique)
    collection = await create_collection(replies, world.admin, "Poison", teams=("t-sales",))
    reply = await create_reply(replies, world.admin, collection, "Hello", body="hi")

    def used() -> CloudEvent[SavedReplyUsed]:
        data = SavedReplyUsed(
            org_id=world.org,
            reply_id=reply,
            collection_id=collection,
            agent_id="ana",
            occurred_at=datetime.now(UTC),
        )
        return CloudEvent.wrap(data, source="/tests/replies")

    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        async with TopicProbe(infra.kafka_bootstrap, REPLIES.dead_letter) as dlq:
            key = reply.encode()
            await send_poison(producer, REPLIES.name, key, poison_cases(used()))
            await send_binary(producer, REPLIES.name, key, used())
            await producer.send_and_wait(REPLIES.name, with_unknown_fields(used()), key=key)
            await expect_parked(dlq, key)
    finally:
        await producer.stop()

    async def counted() -> bool:
        got = await replies.GetReply(pb.GetReplyRequest(reply_id=reply), metadata=bearer(world.ana))
        return bool(got.usage_count == 2)

    await wait_until(counted, timeout=45, interval=0.3)
