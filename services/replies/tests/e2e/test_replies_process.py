"""Two replies service processes (replicas on one database) and the contacts process, used only
over gRPC and Kafka, as clients would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from inbox.replies.v1 import replies_pb2 as pb
from inbox.replies.v1 import replies_pb2_grpc
from inbox_testing import TEST_JWT_SECRET, Infra, bearer, free_port, stop_process, wait_until
from pymongo import MongoClient

pytestmark = [pytest.mark.e2e, pytest.mark.infra]


@pytest.fixture(scope="module")
def replicas(
    infra: Infra,
    contacts_service: Any,
    wait_healthy: Callable[[str, subprocess.Popen[bytes]], None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[str]]:
    db = f"test_replies_e2e_{uuid.uuid4().hex[:8]}"
    group = f"replies-e2e-{uuid.uuid4().hex[:8]}"
    processes: list[subprocess.Popen[bytes]] = []
    addresses: list[str] = []
    logs = tmp_path_factory.mktemp("replies")
    try:
        for i in range(2):
            port = free_port()
            env = {
                **os.environ,
                "REPLIES_GRPC_PORT": str(port),
                "REPLIES_METRICS_PORT": "0",
                "REPLIES_MONGODB_URI": infra.mongodb_uri,
                "REPLIES_MONGODB_DATABASE": db,
                "REPLIES_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
                "REPLIES_JWT_SECRET": TEST_JWT_SECRET,
                "REPLIES_CONSUMER_GROUP": group,
                "REPLIES_CONTACTS_ADDRESS": contacts_service.address,
                "REPLIES_USAGE_REFRESH_SECONDS": "0.2",
                "REPLIES_REVISION_MAX_AGE_SECONDS": "0",
            }
            log = (logs / f"replica{i}.log").open("wb")
            process = subprocess.Popen(
                [sys.executable, "-m", "replies_service"], env=env, stdout=log, stderr=log
            )
            processes.append(process)
            addresses.append(f"127.0.0.1:{port}")
        for address, process in zip(addresses, processes, strict=True):
            wait_healthy(address, process)
        yield addresses
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            stop_process(process)
        with MongoClient[dict[str, Any]](infra.mongodb_uri) as client:
            client.drop_database(db)


async def test_write_on_one_replica_is_seen_by_the_other_and_usage_is_counted(
    replicas: list[str],
    make_token: Callable[..., str],
    unique: Callable[[str], str],
    seed_contact: Any,
) -> None:
    org = unique("org")
    admin = make_token(org, "boss", role="admin")
    agent = make_token(org, "ana", teams=("t-1",))
    contact = unique("contact")
    await seed_contact(org, contact, {"name": "Jo Doe"}, agent)
    async with (
        grpc.aio.insecure_channel(replicas[0]) as ch_a,
        grpc.aio.insecure_channel(replicas[1]) as ch_b,
    ):
        a, b = replies_pb2_grpc.RepliesServiceStub(ch_a), replies_pb2_grpc.RepliesServiceStub(ch_b)
        # replica b loads the org's index first (empty), then a writes
        assert not (
            await b.SearchReplies(pb.SearchRepliesRequest(), metadata=bearer(agent))
        ).results
        coll = await a.CreateCollection(
            pb.CreateCollectionRequest(name="FAQ", team_ids=["t-1"]), metadata=bearer(admin)
        )
        reply = await a.CreateReply(
            pb.CreateReplyRequest(
                collection_id=coll.collection_id,
                title="Welcome",
                body='Hello {{contact.first_name | fallback: "friend"}}!',
                shortcut="/welcome",
            ),
            metadata=bearer(admin),
        )
        found = await b.SearchReplies(pb.SearchRepliesRequest(query="/wel"), metadata=bearer(agent))
        assert [r.reply.reply_id for r in found.results] == [reply.reply_id]
        rendered = await b.RenderReply(
            pb.RenderReplyRequest(reply_id=reply.reply_id, contact_id=contact),
            metadata=bearer(agent),
        )
        assert rendered.text == "Hello Jo!"
        await a.RecordReplyUsed(
            pb.RecordReplyUsedRequest(reply_id=reply.reply_id, use_id="use-1"),
            metadata=bearer(agent),
        )

        async def counted() -> bool:
            got = await b.GetReply(
                pb.GetReplyRequest(reply_id=reply.reply_id), metadata=bearer(agent)
            )
            return bool(got.usage_count == 1)

        await wait_until(counted, timeout=60, interval=0.3)
        # deleting on b is seen by a at once
        await b.DeleteCollection(
            pb.DeleteCollectionRequest(collection_id=coll.collection_id), metadata=bearer(admin)
        )
        gone = await a.SearchReplies(
            pb.SearchRepliesRequest(query="welcome"), metadata=bearer(agent)
        )
        assert not gone.results
