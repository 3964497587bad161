"""Every RPC of every service, fed requests generated from its proto descriptor (hypothesis),
against the service processes on the real Kafka + FerretDB: no call may end INTERNAL or
UNKNOWN (or hang past its deadline), no process may exit, and health stays SERVING throughout.

``INBOX_FUZZ_EXAMPLES`` sets the examples per RPC (default 50, what CI runs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inbox.contacts.v1 import contacts_pb2
from inbox.presence.v1 import presence_pb2
from inbox.replies.v1 import replies_pb2
from inbox.routing.v1 import routing_pb2
from inbox_kit.auth import mint_token
from inbox_testing import TEST_JWT_SECRET
from inbox_testing.proto_strategies import message_strategy

pytestmark = [pytest.mark.e2e, pytest.mark.infra]

EXAMPLES = int(os.environ.get("INBOX_FUZZ_EXAMPLES", "50"))
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
FILES = {
    "presence": presence_pb2.DESCRIPTOR,
    "routing": routing_pb2.DESCRIPTOR,
    "contacts": contacts_pb2.DESCRIPTOR,
    "replies": replies_pb2.DESCRIPTOR,
}
ORG = "org-fuzz"


@dataclass(frozen=True)
class Rpc:
    service: str
    path: str
    method: Any  # MethodDescriptor

    def __str__(self) -> str:
        return self.path.rsplit("/", 2)[-2].split(".")[-1] + "." + self.path.rsplit("/", 1)[-1]


def all_rpcs() -> list[Rpc]:
    rpcs = []
    for service, file in FILES.items():
        for svc in file.services_by_name.values():
            for method in svc.methods:
                rpcs.append(Rpc(service, f"/{svc.full_name}/{method.name}", method))
    return rpcs


RPCS = all_rpcs()


def _tokens() -> list[str]:
    return [
        mint_token(
            TEST_JWT_SECRET,
            org_id=ORG,
            agent_id="fuzz-admin",
            role="admin",
            teams=["t-1"],
            channels=["wa-1"],
        ),
        mint_token(
            TEST_JWT_SECRET, org_id=ORG, agent_id="fuzz-agent", teams=["t-1"], channels=["wa-1"]
        ),
    ]


@pytest.fixture(scope="module")
def known_ids(stack: Any) -> Iterator[list[str]]:
    """Ids that exist, so generated requests also reach past validation."""
    admin = (("authorization", f"Bearer {_tokens()[0]}"),)
    replies = stack.channel("replies")
    create_collection = replies.unary_unary(
        "/inbox.replies.v1.RepliesService/CreateCollection",
        request_serializer=replies_pb2.CreateCollectionRequest.SerializeToString,
        response_deserializer=replies_pb2.Collection.FromString,
    )
    collection = create_collection(
        replies_pb2.CreateCollectionRequest(name="fuzz", team_ids=["t-1"], channel_ids=["wa-1"]),
        metadata=admin,
        timeout=20,
    )
    create_reply = replies.unary_unary(
        "/inbox.replies.v1.RepliesService/CreateReply",
        request_serializer=replies_pb2.CreateReplyRequest.SerializeToString,
        response_deserializer=replies_pb2.SavedReply.FromString,
    )
    reply = create_reply(
        replies_pb2.CreateReplyRequest(
            collection_id=collection.collection_id,
            title="hello",
            body='Hi {{contact.first_name | fallback: "there"}}',
            shortcut="hi",
        ),
        metadata=admin,
        timeout=20,
    )
    sign_in = stack.channel("presence").unary_unary(
        "/inbox.presence.v1.PresenceService/SignIn",
        request_serializer=presence_pb2.SignInRequest.SerializeToString,
        response_deserializer=presence_pb2.SignInResponse.FromString,
    )
    session = sign_in(presence_pb2.SignInRequest(), metadata=admin, timeout=20)
    yield [
        collection.collection_id,
        reply.reply_id,
        session.session_id,
        f"{ORG}:personal:fuzz-agent",
        "fuzz-admin",
        "fuzz-agent",
        "wa-1",
        "t-1",
        "email",
        "first_name",
        "hi",
    ]


def _call(stack: Any, rpc: Rpc, request: Any, token: str) -> grpc.StatusCode:
    response_class = message_factory.GetMessageClass(rpc.method.output_type)
    call = stack.channel(rpc.service).unary_unary(
        rpc.path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    try:
        call(request, metadata=(("authorization", f"Bearer {token}"),), timeout=15)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.timeout(600)
@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_no_request_breaks_a_service(stack: Any, known_ids: list[str], rpc: Rpc) -> None:
    tokens = _tokens()
    seen: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        request=message_strategy(rpc.method.input_type, known_ids), token=st.sampled_from(tokens)
    )
    def check(request: Any, token: str) -> None:
        code = _call(stack, rpc, request, token)
        seen[code.name] = seen.get(code.name, 0) + 1
        assert code not in FORBIDDEN, f"{rpc} answered {code.name} to {request!r}"[:2000]

    check()
    assert seen  # fields-less requests have one example only; others get EXAMPLES
    assert not stack.problems(), stack.problems()
    print(f"{rpc}: {seen}")
