"""Every RPC x every way a caller can be wrong, generated from one table (``MATRIX``), against
the service processes. docs/authorization.md shows the same table (a test keeps them equal).

Cases (the caller and what it targets):
- ``no_token`` / ``bad_signature`` / ``expired`` / ``no_exp``: org A's agent ana, token missing,
  signed with another key, expired, or without ``exp`` → ``UNAUTHENTICATED``;
- ``wrong_role``: ana (role agent) calls an admin-only RPC on her org → ``PERMISSION_DENIED``;
- ``other_org``: an admin of org B names org A's resources → ``NOT_FOUND``, with the same code
  and ErrorInfo reason as an id that never existed; calls without a target answer from org B
  only (``hidden``: nothing of org A in the response);
- ``personal``: agent bob (org A) names ana's session or personal replies;
- ``not_in_team``: bob names a collection shared with a team he is not in;
- ``no_channel``: bob names a channel his token does not grant (``channels`` claim).
``hidden`` means the call succeeds and its response holds none of the targeted ids; ``—`` means
the case does not apply to that RPC.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from inbox.contacts.v1 import contacts_pb2
from inbox.presence.v1 import presence_pb2
from inbox.replies.v1 import replies_pb2
from inbox.routing.v1 import routing_pb2
from inbox_cli import api
from inbox_kit.auth import mint_token
from inbox_testing import TEST_JWT_SECRET, Infra

pytestmark = [pytest.mark.e2e, pytest.mark.infra]

CASES = (
    "no_token",
    "bad_signature",
    "expired",
    "no_exp",
    "wrong_role",
    "other_org",
    "personal",
    "not_in_team",
    "no_channel",
)
HIDDEN = "hidden"
NA = "—"
UNAUTH = "UNAUTHENTICATED"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "authorization.md"
DESCRIPTORS = {
    "presence": presence_pb2.DESCRIPTOR.services_by_name["PresenceService"],
    "routing": routing_pb2.DESCRIPTOR.services_by_name["RoutingService"],
    "contacts": contacts_pb2.DESCRIPTOR.services_by_name["ContactsService"],
    "replies": replies_pb2.DESCRIPTOR.services_by_name["RepliesService"],
}


@dataclass
class World:
    """Org A's data; ``absent`` is an id that never existed."""

    org: str
    other_org: str
    ana: str
    bob: str
    admin: str
    session: str = ""
    conversation: str = ""
    contact: str = ""
    handle: str = ""
    key: str = ""
    team_collection: str = ""
    channel_collection: str = ""
    team_reply: str = ""
    channel_reply: str = ""
    personal_reply: str = ""
    absent: str = field(default_factory=lambda: f"absent-{uuid.uuid4().hex[:10]}")
    absent_key: str = field(default_factory=lambda: f"absent{uuid.uuid4().hex[:10]}")

    @property
    def ana_collection(self) -> str:
        return f"{self.org}:personal:{self.ana}"

    def secrets(self) -> set[str]:
        return {
            self.session,
            self.conversation,
            self.contact,
            self.key,
            self.team_collection,
            self.channel_collection,
            self.team_reply,
            self.channel_reply,
            self.personal_reply,
            self.ana,
            self.bob,
            self.admin,
        }


Build = Callable[[World, str], Message | None]
"""The request for a target: ``own`` (ana's own or visible), ``absent``, ``personal`` (ana's
personal data), ``team`` (shared with ana's team), ``channel`` (shared with wa-1)."""


@dataclass(frozen=True)
class Row:
    rpc: str
    build: Build
    admin_only: bool = False
    other_org: str = "NOT_FOUND"
    personal: str = NA
    not_in_team: str = NA
    no_channel: str = NA

    def expected(self, case: str) -> str:
        if case in ("no_token", "bad_signature", "expired", "no_exp"):
            return UNAUTH
        if case == "wrong_role":
            return "PERMISSION_DENIED" if self.admin_only else NA
        return str(getattr(self, case))


def _ids(**targets: Callable[[World], Message]) -> Build:
    def build(w: World, target: str) -> Message | None:
        make = targets.get(target) or (targets.get("own") if target == "absent" else None)
        return make(w) if make else None

    return build


def _new_key() -> str:
    return f"k{uuid.uuid4().hex[:8]}"


P, RT, C, RP = presence_pb2, routing_pb2, contacts_pb2, replies_pb2


def _reply(w: World, target: str) -> str:
    return {
        "own": w.team_reply,
        "absent": w.absent,
        "personal": w.personal_reply,
        "team": w.team_reply,
        "channel": w.channel_reply,
    }.get(target, "")


def _reply_row(name: str, request: Callable[[str], Message], admin_only: bool = False) -> Row:
    """An RPC on one reply: ana's personal one, the team's, the channel's."""
    return Row(
        f"replies.{name}",
        lambda w, t: request(_reply(w, t)) if _reply(w, t) else None,
        admin_only=admin_only,
        personal="NOT_FOUND",
        not_in_team="NOT_FOUND",
        no_channel=NA if admin_only else "NOT_FOUND",
    )


MATRIX: tuple[Row, ...] = (
    # presence
    Row("presence.SignIn", _ids(own=lambda w: P.SignInRequest()), other_org=HIDDEN),
    Row(
        "presence.Heartbeat",
        lambda w, t: (
            P.HeartbeatRequest(session_id=_target(w, t, w.session))
            if t in ("own", "absent", "personal")
            else None
        ),
        personal="NOT_FOUND",
    ),
    Row(
        "presence.SignOut",
        lambda w, t: (
            P.SignOutRequest(session_id=_target(w, t, w.session))
            if t in ("own", "absent", "personal")
            else None
        ),
        personal="NOT_FOUND",
    ),
    Row(
        "presence.ForceSignOut",
        lambda w, t: (
            P.ForceSignOutRequest(agent_id=_target(w, t, w.ana)) if t in ("own", "absent") else None
        ),
        admin_only=True,
    ),
    Row(
        "presence.SetAvailability",
        _ids(own=lambda w: P.SetAvailabilityRequest(availability=P.AVAILABILITY_AWAY)),
        other_org=HIDDEN,
    ),
    Row(
        "presence.GetPresence",
        _ids(own=lambda w: P.GetPresenceRequest(agent_ids=[w.ana])),
        other_org=HIDDEN,
    ),
    Row(
        "presence.ListSignedInAgents",
        _ids(own=lambda w: P.ListSignedInAgentsRequest()),
        other_org=HIDDEN,
    ),
    # routing
    Row(
        "routing.GetRoutingSettings",
        _ids(own=lambda w: RT.GetRoutingSettingsRequest()),
        other_org=HIDDEN,
    ),
    Row(
        "routing.UpdateRoutingSettings",
        _ids(own=lambda w: RT.UpdateRoutingSettingsRequest(remove_assignment_on_sign_out=False)),
        admin_only=True,
        other_org=HIDDEN,
    ),
    Row(
        "routing.GetAssignmentSettings",
        _ids(own=lambda w: RT.GetAssignmentSettingsRequest()),
        other_org=HIDDEN,
    ),
    Row(
        "routing.UpdateAssignmentSettings",
        _ids(own=lambda w: RT.UpdateAssignmentSettingsRequest(enabled=False)),
        admin_only=True,
        other_org=HIDDEN,
    ),
    Row(
        "routing.ListWaitingConversations",
        _ids(own=lambda w: RT.ListWaitingConversationsRequest()),
        other_org=HIDDEN,
    ),
    Row(
        "routing.ListAgentLoads",
        _ids(own=lambda w: RT.ListAgentLoadsRequest()),
        other_org=HIDDEN,
    ),
    Row(
        "routing.GetConversation",
        lambda w, t: (
            RT.GetConversationRequest(conversation_id=_target(w, t, w.conversation))
            if t in ("own", "absent")
            else None
        ),
    ),
    Row(
        "routing.ListConversations",
        _ids(own=lambda w: RT.ListConversationsRequest()),
        other_org=HIDDEN,
    ),
    Row(
        "routing.GetAuditTrail",
        lambda w, t: (
            RT.GetAuditTrailRequest(conversation_id=_target(w, t, w.conversation))
            if t in ("own", "absent")
            else None
        ),
    ),
    # contacts
    Row(
        "contacts.BatchGetContacts",
        _ids(own=lambda w: C.BatchGetContactsRequest(contact_ids=[w.contact])),
        other_org=HIDDEN,
    ),
    Row(
        "contacts.GetContact",
        lambda w, t: (
            C.GetContactRequest(contact_id=_target(w, t, w.contact))
            if t in ("own", "absent")
            else None
        ),
    ),
    Row(
        "contacts.GetContactCard",
        lambda w, t: (
            C.GetContactCardRequest(contact_id=_target(w, t, w.contact))
            if t in ("own", "absent")
            else None
        ),
    ),
    Row(
        "contacts.FindContactByIdentity",
        lambda w, t: (
            C.FindContactByIdentityRequest(channel="whatsapp", handle=_target(w, t, w.handle))
            if t in ("own", "absent")
            else None
        ),
    ),
    Row(
        "contacts.ListAttributeDefinitions",
        _ids(own=lambda w: C.ListAttributeDefinitionsRequest()),
        other_org=HIDDEN,
    ),
    Row(
        "contacts.CreateAttributeDefinition",
        _ids(
            own=lambda w: C.CreateAttributeDefinitionRequest(
                key=_new_key(), label="Plan", type=C.ATTRIBUTE_TYPE_TEXT
            )
        ),
        admin_only=True,
        other_org=HIDDEN,
    ),
    Row(
        "contacts.UpdateAttributeDefinition",
        lambda w, t: (
            C.UpdateAttributeDefinitionRequest(key=_key_target(w, t), label="New")
            if t in ("own", "absent")
            else None
        ),
        admin_only=True,
    ),
    Row(
        "contacts.DeleteAttributeDefinition",
        lambda w, t: (
            C.DeleteAttributeDefinitionRequest(key=_key_target(w, t))
            if t in ("own", "absent")
            else None
        ),
        admin_only=True,
    ),
    Row(
        "contacts.ReorderAttributeDefinitions",
        lambda w, t: (
            C.ReorderAttributeDefinitionsRequest(keys=[_key_target(w, t)])
            if t in ("own", "absent")
            else None
        ),
        admin_only=True,
        other_org="ABORTED",
    ),
    # replies
    Row(
        "replies.CreateCollection",
        _ids(own=lambda w: RP.CreateCollectionRequest(name="x", team_ids=["t-sales"])),
        admin_only=True,
        other_org=HIDDEN,
    ),
    Row(
        "replies.UpdateCollection",
        lambda w, t: (
            RP.UpdateCollectionRequest(
                collection_id=_target(w, t, w.team_collection), name="renamed"
            )
            if t in ("own", "absent", "team")
            else None
        ),
        admin_only=True,
        not_in_team="NOT_FOUND",
    ),
    Row(
        "replies.DeleteCollection",
        lambda w, t: (
            RP.DeleteCollectionRequest(collection_id=_target(w, t, w.team_collection))
            if t in ("own", "absent", "team")
            else None
        ),
        admin_only=True,
        not_in_team="NOT_FOUND",
    ),
    Row(
        "replies.ListCollections",
        lambda w, t: RP.ListCollectionsRequest(channel_id="wa-1" if t == "channel" else ""),
        other_org=HIDDEN,
        personal=HIDDEN,
        not_in_team=HIDDEN,
        no_channel=HIDDEN,
    ),
    Row(
        "replies.CreateReply",
        lambda w, t: (
            RP.CreateReplyRequest(
                collection_id={"personal": w.ana_collection}.get(t)
                or _target(w, t, w.team_collection),
                title="t",
                body="b",
            )
            if t in ("own", "absent", "personal", "team")
            else None
        ),
        admin_only=True,
        personal="NOT_FOUND",
        not_in_team="NOT_FOUND",
    ),
    _reply_row(
        "UpdateReply", lambda r: RP.UpdateReplyRequest(reply_id=r, title="t", body="b"), True
    ),
    _reply_row("DeleteReply", lambda r: RP.DeleteReplyRequest(reply_id=r), True),
    _reply_row("GetReply", lambda r: RP.GetReplyRequest(reply_id=r, channel_id="wa-1")),
    _reply_row("RenderReply", lambda r: RP.RenderReplyRequest(reply_id=r, channel_id="wa-1")),
    _reply_row(
        "RecordReplyUsed", lambda r: RP.RecordReplyUsedRequest(reply_id=r, channel_id="wa-1")
    ),
    Row(
        "replies.ListReplies",
        lambda w, t: RP.ListRepliesRequest(
            collection_id={
                "own": w.team_collection,
                "absent": w.absent,
                "personal": w.ana_collection,
                "team": w.team_collection,
                "channel": w.channel_collection,
            }[t],
            channel_id="wa-1",
        ),
        personal="NOT_FOUND",
        not_in_team="NOT_FOUND",
        no_channel="NOT_FOUND",
    ),
    Row(
        "replies.SearchReplies",
        lambda w, t: RP.SearchRepliesRequest(query="hello", channel_id="wa-1"),
        other_org=HIDDEN,
        personal=HIDDEN,
        not_in_team=HIDDEN,
        no_channel=HIDDEN,
    ),
)


def _target(w: World, target: str, own: str) -> str:
    return w.absent if target == "absent" else own


def _key_target(w: World, target: str) -> str:
    """Attribute keys have their own syntax: an absent one is a valid key nobody created."""
    return w.absent_key if target == "absent" else w.key


def matrix_markdown() -> str:
    header = "| RPC | " + " | ".join(f"`{c}`" for c in CASES) + " |"
    lines = [header, "|" + "---|" * (len(CASES) + 1)]
    for row in MATRIX:
        cells = [row.expected(c) for c in CASES]
        lines.append(f"| `{row.rpc}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_the_matrix_covers_every_rpc_and_is_the_documented_one() -> None:
    rpcs = {f"{svc}.{m.name}" for svc, d in DESCRIPTORS.items() for m in d.methods}
    assert {row.rpc for row in MATRIX} == rpcs
    assert matrix_markdown() in DOCS.read_text(), "docs/authorization.md: paste matrix_markdown()"


# ------------------------------------------------------------------------------- the world


def _token(org: str, agent: str, **kw: Any) -> str:
    return mint_token(TEST_JWT_SECRET, org_id=org, agent_id=agent, **kw)


def _md(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token is not None else ()


def _method(stack: Any, rpc: str) -> Any:
    service, name = rpc.split(".")
    method = DESCRIPTORS[service].methods_by_name[name]
    return stack.channel(service).unary_unary(
        f"/{DESCRIPTORS[service].full_name}/{name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=message_factory.GetMessageClass(method.output_type).FromString,
    )


def _ok(stack: Any, rpc: str, request: Message, token: str) -> Any:
    return _method(stack, rpc)(request, metadata=_md(token), timeout=20)


def _eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture(scope="module")
def world(stack: Any, infra: Infra) -> World:
    tag = uuid.uuid4().hex[:8]
    w = World(
        org=f"org-a-{tag}",
        other_org=f"org-b-{tag}",
        ana=f"ana-{tag}",
        bob=f"bob-{tag}",
        admin=f"admin-{tag}",
    )
    admin = _token(w.org, w.admin, role="admin", teams=["t-admin"])
    ana = _token(w.org, w.ana, teams=["t-sales"], channels=["wa-1"])
    w.session = _ok(stack, "presence.SignIn", P.SignInRequest(), ana).session_id
    _ok(stack, "routing.UpdateRoutingSettings", RT.UpdateRoutingSettingsRequest(), admin)
    w.key = _new_key()
    _ok(
        stack,
        "contacts.CreateAttributeDefinition",
        C.CreateAttributeDefinitionRequest(key=w.key, label="Plan", type=C.ATTRIBUTE_TYPE_TEXT),
        admin,
    )
    team = _ok(
        stack,
        "replies.CreateCollection",
        RP.CreateCollectionRequest(name="Sales", team_ids=["t-sales"]),
        admin,
    )
    channel = _ok(
        stack,
        "replies.CreateCollection",
        RP.CreateCollectionRequest(name="WhatsApp", channel_ids=["wa-1"]),
        admin,
    )
    w.team_collection, w.channel_collection = team.collection_id, channel.collection_id

    def reply(collection: str, token: str) -> str:
        request = RP.CreateReplyRequest(collection_id=collection, title="hello", body="hello")
        return str(_ok(stack, "replies.CreateReply", request, token).reply_id)

    w.team_reply = reply(w.team_collection, admin)
    w.channel_reply = reply(w.channel_collection, admin)
    w.personal_reply = reply("", ana)

    w.conversation, w.contact, w.handle = f"conv-{tag}", f"contact-{tag}", f"+49{tag}"
    events = [
        api.inbound(w.org, w.conversation, w.contact, "wa-1"),
        api.contact_profile(w.org, w.contact, {}, identities=[("whatsapp", w.handle)]),
    ]

    def published() -> None:
        for topic, event in events:
            asyncio.run(api.publish(infra.kafka_bootstrap, topic, event))

    def has(rpc: str, request: Message) -> bool:
        published()  # the consumers start at "latest": republish until seen (idempotent)
        try:
            _ok(stack, rpc, request, admin)
        except grpc.RpcError:
            return False
        return True

    _eventually(
        lambda: has(
            "routing.GetConversation", RT.GetConversationRequest(conversation_id=w.conversation)
        ),
        "routing applied the inbound message",
    )
    _eventually(
        lambda: has("contacts.GetContact", C.GetContactRequest(contact_id=w.contact)),
        "contacts applied the profile",
    )
    return w


def _caller(w: World, case: str) -> str | None:
    if case == "no_token":
        return None
    now = int(time.time())
    ana_claims = {
        "org": w.org,
        "sub": w.ana,
        "role": "agent",
        "teams": ["t-sales"],
        "channels": ["wa-1"],
    }
    return {
        "bad_signature": jwt.encode(
            {**ana_claims, "iat": now, "exp": now + 600}, "another-secret-0123456789abcdef0123"
        ),
        "expired": jwt.encode(
            {**ana_claims, "iat": now - 7200, "exp": now - 3600}, TEST_JWT_SECRET
        ),
        "no_exp": jwt.encode({**ana_claims, "iat": now}, TEST_JWT_SECRET),
        "wrong_role": _token(w.org, w.ana, teams=["t-sales"], channels=["wa-1"]),
        "other_org": _token(
            w.other_org,
            w.ana.replace("ana-", "eve-"),
            role="admin",
            teams=["t-sales"],
            channels=["wa-1"],
        ),
    }.get(case) or _token(w.org, w.bob, teams=["t-support"])


def _target_of(case: str) -> str:
    return {"personal": "personal", "not_in_team": "team", "no_channel": "channel"}.get(case, "own")


def _outcome(stack: Any, rpc: str, request: Message, token: str | None) -> tuple[str, str, Any]:
    """(code, ErrorInfo reason, response or None)."""
    try:
        response = _method(stack, rpc)(request, metadata=_md(token), timeout=20)
    except grpc.RpcError as exc:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        reason = ""
        for detail in status.details if status else ():
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
        return exc.code().name, reason, None
    return "OK", "", response


def _leaked(w: World, case: str, rpc: str, response: Message) -> set[str]:
    targeted = {
        "other_org": w.secrets(),
        "personal": {w.personal_reply, w.ana_collection, w.session},
        "not_in_team": {w.team_reply, w.team_collection},
        "no_channel": {w.channel_reply, w.channel_collection},
    }[case]
    if rpc == "presence.GetPresence":  # echoes the requested ids; must not show ana signed in
        return {w.ana} if any(a.signed_in for a in response.presences) else set()  # type: ignore[attr-defined]
    text = str(response)
    return {s for s in targeted if s and s in text}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("row", MATRIX, ids=lambda r: r.rpc)
def test_authorization(stack: Any, world: World, row: Row, case: str) -> None:
    expected = row.expected(case)
    request = row.build(world, _target_of(case))
    if expected == NA:
        return
    assert request is not None, f"{row.rpc}/{case}: the table expects {expected}, no request"
    code, reason, response = _outcome(stack, row.rpc, request, _caller(world, case))
    if expected == HIDDEN:
        assert code == "OK", f"{row.rpc}/{case}: {code} {reason}"
        assert not _leaked(world, case, row.rpc, response), f"{row.rpc}/{case} leaked"
        return
    assert (code, reason != "") == (expected, True), f"{row.rpc}/{case}: {code} {reason}"
    if case == "other_org":  # indistinguishable from an id that never existed
        absent = row.build(world, "absent")
        assert absent is not None
        absent_code, absent_reason, _ = _outcome(stack, row.rpc, absent, _caller(world, case))
        assert (code, reason) == (absent_code, absent_reason), row.rpc
    assert not stack.problems(), stack.problems()
