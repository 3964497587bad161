"""The console's HTTP/JSON API: one route per gRPC method it exposes, and the translation.

A route names the gRPC method; the request message is built from the path parameters, the
query string (GET, DELETE) and the JSON body (POST, PUT, PATCH) with protobuf's JSON mapping
(``json_format``: proto field names, enums by name, int64 as strings or numbers), and the
response message is returned in the same mapping. So the HTTP API is the gRPC API, with the
proto comments as its reference; docs/console.md lists the routes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from inbox.contacts.v1 import contacts_pb2 as contacts
from inbox.presence.v1 import presence_pb2 as presence
from inbox.replies.v1 import replies_pb2 as replies
from inbox.routing.v1 import routing_pb2 as routing

from console_service.domain.problems import ProblemError, invalid_argument


@dataclass(frozen=True)
class ApiRoute:
    method: str  # HTTP method
    path: str  # Starlette path template, e.g. "/api/attributes/{key}"
    service: str  # presence | routing | contacts | replies
    rpc: str  # gRPC method name
    request_type: type[Message]

    @property
    def takes_body(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH"}


def _r(method: str, path: str, service: str, rpc: str, request_type: type[Message]) -> ApiRoute:
    return ApiRoute(method, "/api" + path, service, rpc, request_type)


ROUTES: tuple[ApiRoute, ...] = (
    # contacts: attribute definitions and the contact card
    _r("GET", "/attributes", "contacts", "ListAttributeDefinitions",
       contacts.ListAttributeDefinitionsRequest),
    _r("POST", "/attributes", "contacts", "CreateAttributeDefinition",
       contacts.CreateAttributeDefinitionRequest),
    _r("PATCH", "/attributes/{key}", "contacts", "UpdateAttributeDefinition",
       contacts.UpdateAttributeDefinitionRequest),
    _r("DELETE", "/attributes/{key}", "contacts", "DeleteAttributeDefinition",
       contacts.DeleteAttributeDefinitionRequest),
    _r("PUT", "/attributes:reorder", "contacts", "ReorderAttributeDefinitions",
       contacts.ReorderAttributeDefinitionsRequest),
    _r("GET", "/contacts/{contact_id}", "contacts", "GetContact", contacts.GetContactRequest),
    _r("GET", "/contacts/{contact_id}/card", "contacts", "GetContactCard",
       contacts.GetContactCardRequest),
    # routing: settings, automatic assignment, conversations, audit trail
    _r("GET", "/routing/settings", "routing", "GetRoutingSettings",
       routing.GetRoutingSettingsRequest),
    _r("PUT", "/routing/settings", "routing", "UpdateRoutingSettings",
       routing.UpdateRoutingSettingsRequest),
    _r("GET", "/routing/assignment-settings", "routing", "GetAssignmentSettings",
       routing.GetAssignmentSettingsRequest),
    _r("PUT", "/routing/assignment-settings", "routing", "UpdateAssignmentSettings",
       routing.UpdateAssignmentSettingsRequest),
    _r("GET", "/routing/waiting", "routing", "ListWaitingConversations",
       routing.ListWaitingConversationsRequest),
    _r("GET", "/routing/agent-loads", "routing", "ListAgentLoads", routing.ListAgentLoadsRequest),
    _r("GET", "/conversations", "routing", "ListConversations", routing.ListConversationsRequest),
    _r("GET", "/conversations/{conversation_id}", "routing", "GetConversation",
       routing.GetConversationRequest),
    _r("GET", "/conversations/{conversation_id}/audit", "routing", "GetAuditTrail",
       routing.GetAuditTrailRequest),
    # presence: who is signed in; the caller's own session; admin force sign-out
    _r("GET", "/presence", "presence", "GetPresence", presence.GetPresenceRequest),
    _r("GET", "/presence/signed-in", "presence", "ListSignedInAgents",
       presence.ListSignedInAgentsRequest),
    _r("POST", "/presence/sign-in", "presence", "SignIn", presence.SignInRequest),
    _r("POST", "/presence/heartbeat", "presence", "Heartbeat", presence.HeartbeatRequest),
    _r("POST", "/presence/sign-out", "presence", "SignOut", presence.SignOutRequest),
    _r("POST", "/presence/agents/{agent_id}/force-sign-out", "presence", "ForceSignOut",
       presence.ForceSignOutRequest),
    # replies: collections, replies, search, rendering
    _r("GET", "/collections", "replies", "ListCollections", replies.ListCollectionsRequest),
    _r("POST", "/collections", "replies", "CreateCollection", replies.CreateCollectionRequest),
    _r("PUT", "/collections/{collection_id}", "replies", "UpdateCollection",
       replies.UpdateCollectionRequest),
    _r("DELETE", "/collections/{collection_id}", "replies", "DeleteCollection",
       replies.DeleteCollectionRequest),
    _r("GET", "/collections/{collection_id}/replies", "replies", "ListReplies",
       replies.ListRepliesRequest),
    _r("GET", "/replies:search", "replies", "SearchReplies", replies.SearchRepliesRequest),
    _r("POST", "/replies", "replies", "CreateReply", replies.CreateReplyRequest),
    _r("GET", "/replies/{reply_id}", "replies", "GetReply", replies.GetReplyRequest),
    _r("PUT", "/replies/{reply_id}", "replies", "UpdateReply", replies.UpdateReplyRequest),
    _r("DELETE", "/replies/{reply_id}", "replies", "DeleteReply", replies.DeleteReplyRequest),
    _r("POST", "/replies/{reply_id}/render", "replies", "RenderReply",
       replies.RenderReplyRequest),
)  # fmt: skip

_NO_FIELD = re.compile(r'has no field named "([^"]+)"')
_BAD_FIELD = re.compile(r"Failed to parse (\w+) field")


def build_request(
    route: ApiRoute,
    *,
    path_params: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    body: Any,
) -> Message:
    """The gRPC request message for one HTTP request; :class:`ProblemError` if malformed."""
    fields: dict[str, Any] = {}
    if route.takes_body:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ProblemError(invalid_argument("body", "must be a JSON object"))
        fields.update(body)
    else:
        descriptor = route.request_type.DESCRIPTOR
        for key, value in query:
            proto_field = descriptor.fields_by_name.get(key)
            if proto_field is None:
                raise ProblemError(invalid_argument(key, "unknown query parameter"))
            if proto_field.is_repeated:
                fields.setdefault(key, []).append(value)
            else:
                fields[key] = value
    fields.update(path_params)
    try:
        return json_format.ParseDict(fields, route.request_type(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        text = str(exc)
        match = _NO_FIELD.search(text) or _BAD_FIELD.search(text)
        raise ProblemError(invalid_argument(match.group(1) if match else "body", text)) from exc


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
