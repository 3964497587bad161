"""The console edge over a real in-process gRPC server (the kit's, with its auth guard and
error mapping): errors reach the browser as the documented HTTP status with the field, the
user's token is forwarded as is, and the dev login exists only in development mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from console_service.adapters.grpc_backends import GrpcBackends
from console_service.domain.problems import HTTP_STATUS, Problem
from console_service.entrypoints.http_app import create_app
from console_service.settings import ConsoleSettings
from inbox.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from inbox.routing.v1 import routing_pb2, routing_pb2_grpc
from inbox_kit.auth import TokenVerifier, current_principal, mint_token
from inbox_kit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from inbox_kit.grpc_server import GrpcServer, ServiceRegistration
from pydantic import SecretStr

SECRET = "console-test-secret-0123456789abcdef"
FAILURES = {
    "invalid": InvalidArgument("contact_id", "must look like c-123"),
    "missing": NotFound("no such contact"),
    "denied": PermissionDenied("this operation needs the admin role"),
    "stale": Aborted("the definitions changed meanwhile"),
    "built-in": FailedPrecondition("built-ins cannot be deleted", reason="BUILT_IN"),
    "taken": AlreadyExists("key taken"),
}


class FakeContacts(contacts_pb2_grpc.ContactsServiceServicer):
    async def GetContact(self, request: Any, context: Any) -> contacts_pb2.Contact:
        if request.contact_id in FAILURES:
            raise FAILURES[request.contact_id]
        who = current_principal()
        return contacts_pb2.Contact(contact_id=f"{request.contact_id}@{who.org_id}/{who.agent_id}")

    async def ReorderAttributeDefinitions(
        self, request: Any, context: Any
    ) -> contacts_pb2.ListAttributeDefinitionsResponse:
        return contacts_pb2.ListAttributeDefinitionsResponse(
            definitions=[contacts_pb2.AttributeDefinition(key=k) for k in request.keys],
            version=request.expected_version + 1,
        )


class FakeRouting(routing_pb2_grpc.RoutingServiceServicer):
    """Echoes the automatic-assignment settings and serves a fixed dispatcher view."""

    async def UpdateAssignmentSettings(
        self, request: Any, context: Any
    ) -> routing_pb2.AssignmentSettings:
        return routing_pb2.AssignmentSettings(
            enabled=request.enabled,
            default_capacity=request.default_capacity,
            team_capacities=request.team_capacities,
            channel_teams=request.channel_teams,
            updated_by=current_principal().agent_id,
        )

    async def GetAssignmentSettings(
        self, request: Any, context: Any
    ) -> routing_pb2.AssignmentSettings:
        return routing_pb2.AssignmentSettings()

    async def ListWaitingConversations(
        self, request: Any, context: Any
    ) -> routing_pb2.ListWaitingConversationsResponse:
        waiting = routing_pb2.WaitingConversation(
            conversation_id="conv-1", team="t1", reason="no eligible agent: 1 away", away=1
        )
        return routing_pb2.ListWaitingConversationsResponse(conversations=[waiting], total=1)

    async def ListAgentLoads(
        self, request: Any, context: Any
    ) -> routing_pb2.ListAgentLoadsResponse:
        load = routing_pb2.AgentLoad(agent_id="agent-7", signed_in=True, held=2, capacity=3)
        return routing_pb2.ListAgentLoadsResponse(agents=[load])


@pytest.fixture
async def grpc_address() -> AsyncIterator[str]:
    server = GrpcServer(
        [
            ServiceRegistration(
                "inbox.contacts.v1.ContactsService",
                contacts_pb2_grpc.add_ContactsServiceServicer_to_server,
                FakeContacts(),
            ),
            ServiceRegistration(
                "inbox.routing.v1.RoutingService",
                routing_pb2_grpc.add_RoutingServiceServicer_to_server,
                FakeRouting(),
            ),
        ],
        verifier=TokenVerifier(SECRET),
    )
    await server.start()
    yield server.address
    await server.stop(0)


async def _client(address: str, *, dev_mode: bool) -> tuple[httpx.AsyncClient, GrpcBackends]:
    backends = GrpcBackends({"contacts": address}, timeout=5)
    backends.open()  # httpx's ASGI transport does not run the app's lifespan
    settings = ConsoleSettings(dev_mode=dev_mode, jwt_secret=SecretStr(SECRET))
    app = create_app(settings, backends)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://console.test"), backends


@pytest.fixture
async def client(grpc_address: str) -> AsyncIterator[httpx.AsyncClient]:
    http, backends = await _client(grpc_address, dev_mode=False)
    async with http:
        yield http
    await backends.close()


def _auth(agent: str = "a1", role: str = "admin") -> dict[str, str]:
    token = mint_token(SECRET, org_id="org-1", agent_id=agent, role=role)
    return {"authorization": f"Bearer {token}"}


def test_every_grpc_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == {c.name for c in grpc.StatusCode}
    expected = {
        "INVALID_ARGUMENT": 400,
        "NOT_FOUND": 404,
        "PERMISSION_DENIED": 403,
        "UNAUTHENTICATED": 401,
        "FAILED_PRECONDITION": 409,
        "ABORTED": 409,
        "ALREADY_EXISTS": 409,
        "UNAVAILABLE": 503,
    }
    assert {code: HTTP_STATUS[code] for code in expected} == expected
    assert Problem("SOMETHING_NEW", "x").http_status == 500


async def test_the_token_is_forwarded_and_the_service_sees_the_caller(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.get("/api/contacts/c-1", headers=_auth("agent-7", "agent"))
    assert reply.status_code == 200
    assert reply.json()["contact_id"] == "c-1@org-1/agent-7"
    assert reply.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("contact_id", "status", "code"),
    [
        ("invalid", 400, "INVALID_ARGUMENT"),
        ("missing", 404, "NOT_FOUND"),
        ("denied", 403, "PERMISSION_DENIED"),
        ("stale", 409, "ABORTED"),
        ("built-in", 409, "FAILED_PRECONDITION"),
        ("taken", 409, "ALREADY_EXISTS"),
    ],
)
async def test_domain_errors_map_to_http_status(
    client: httpx.AsyncClient, contact_id: str, status: int, code: str
) -> None:
    reply = await client.get(f"/api/contacts/{contact_id}", headers=_auth())
    assert reply.status_code == status
    error = reply.json()["error"]
    assert (error["code"], error["status"]) == (status, code)
    assert error["message"] == FAILURES[contact_id].message


async def test_invalid_argument_carries_the_field(client: httpx.AsyncClient) -> None:
    error = (await client.get("/api/contacts/invalid", headers=_auth())).json()["error"]
    assert error["field"] == "contact_id"
    assert error["field_violations"] == [
        {"field": "contact_id", "description": "must look like c-123"}
    ]


async def test_error_info_reason_is_passed_on(client: httpx.AsyncClient) -> None:
    error = (await client.get("/api/contacts/built-in", headers=_auth())).json()["error"]
    assert error["reason"] == "BUILT_IN"


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer not-a-jwt"}, {"authorization": "Basic dXNlcjpwdw=="}],
)
async def test_missing_or_bad_tokens_are_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    reply = await client.get("/api/contacts/c-1", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["status"] == "UNAUTHENTICATED"


async def test_request_body_uses_the_proto_json_mapping(client: httpx.AsyncClient) -> None:
    reply = await client.put(
        "/api/attributes:reorder",
        json={"keys": ["email", "name"], "expected_version": "41"},
        headers=_auth(),
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [d["key"] for d in body["definitions"]] == ["email", "name"]
    assert body["version"] == "42"  # int64 as a string, as proto3 JSON says


async def test_automatic_assignment_routes_reach_routing(grpc_address: str) -> None:
    backends = GrpcBackends({"routing": grpc_address}, timeout=5)
    backends.open()
    app = create_app(ConsoleSettings(dev_mode=False, jwt_secret=SecretStr(SECRET)), backends)
    transport = httpx.ASGITransport(app=app)
    settings = {
        "enabled": True,
        "default_capacity": 3,
        "team_capacities": {"t1": 2},
        "channel_teams": {"whatsapp-1": "t1"},
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as http:
        saved = await http.put("/api/routing/assignment-settings", json=settings, headers=_auth())
        waiting = await http.get("/api/routing/waiting", headers=_auth())
        loads = await http.get("/api/routing/agent-loads", headers=_auth())
        unknown = await http.get("/api/routing/assignment-settings?enabled=1", headers=_auth())
    await backends.close()
    assert saved.status_code == 200, saved.text
    assert {k: saved.json()[k] for k in settings} == settings
    assert saved.json()["updated_by"] == "a1"
    assert waiting.json()["conversations"][0]["reason"] == "no eligible agent: 1 away"
    assert waiting.json()["total"] == 1
    assert loads.json()["agents"][0] == {
        "agent_id": "agent-7",
        "signed_in": True,
        "available": False,
        "teams": [],
        "held": 2,
        "capacity": 3,
        "team_capacities": {},
    }
    assert unknown.status_code == 400
    assert unknown.json()["error"]["field"] == "enabled"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("PUT", "/api/attributes:reorder", {"json": {"keys": "name"}}, "keys"),
        ("PUT", "/api/attributes:reorder", {"json": {"colour": "red"}}, "colour"),
        ("PUT", "/api/attributes:reorder", {"content": b"{not json"}, "body"),
        ("PUT", "/api/attributes:reorder", {"json": ["name"]}, "body"),
        ("GET", "/api/conversations", {"params": {"bogus": "1"}}, "bogus"),
        ("GET", "/api/conversations", {"params": {"page_size": "many"}}, "page_size"),
    ],
)
async def test_malformed_requests_are_400_with_the_field(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any], field: str
) -> None:
    reply = await client.request(method, path, headers=_auth(), **kwargs)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["field"] == field


async def test_unknown_api_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    reply = await client.get("/api/nothing-here", headers=_auth())
    assert reply.status_code == 404
    assert reply.json()["error"]["status"] == "NOT_FOUND"


async def test_unreachable_service_is_503(client: httpx.AsyncClient) -> None:
    # routing is not configured in this client's backends: port 9 refuses connections
    backends = GrpcBackends({"routing": "127.0.0.1:9"}, timeout=2)
    backends.open()
    app = create_app(ConsoleSettings(), backends)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://console.test"
    ) as http:
        reply = await http.get("/api/routing/settings", headers=_auth())
    await backends.close()
    assert reply.status_code == 503
    assert reply.json()["error"]["status"] == "UNAVAILABLE"


async def test_dev_login_is_refused_outside_development_mode(client: httpx.AsyncClient) -> None:
    reply = await client.post("/api/dev/login", json={"org_id": "o", "agent_id": "a"})
    assert reply.status_code == 403
    assert reply.json()["error"]["reason"] == "DEV_LOGIN_DISABLED"
    assert (await client.get("/api/config")).json() == {"dev_mode": False}


async def test_dev_login_mints_a_short_lived_token_the_services_accept(grpc_address: str) -> None:
    http, backends = await _client(grpc_address, dev_mode=True)
    async with http:
        assert (await http.get("/api/config")).json() == {"dev_mode": True}
        bad = await http.post("/api/dev/login", json={"org_id": "o", "role": "owner"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "agent_id"
        minted = await http.post(
            "/api/dev/login",
            json={
                "org_id": "org-9",
                "agent_id": "boss",
                "role": "admin",
                "teams": ["t1"],
                "channels": ["ch-1", "ch-2"],
                "name": "The Boss",
            },
        )
        assert minted.status_code == 200, minted.text
        token = minted.json()["token"]
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert (claims["org"], claims["sub"], claims["role"], claims["teams"]) == (
            "org-9",
            "boss",
            "admin",
            ["t1"],
        )
        assert (claims["channels"], claims["name"]) == (["ch-1", "ch-2"], "The Boss")
        assert 0 < claims["exp"] - claims["iat"] <= ConsoleSettings().dev_token_ttl_seconds
        card = await http.get("/api/contacts/c-2", headers={"authorization": f"Bearer {token}"})
        assert card.json()["contact_id"] == "c-2@org-9/boss"
    await backends.close()


async def test_readiness_follows_the_services_grpc_health(grpc_address: str) -> None:
    up = GrpcBackends({"contacts": grpc_address}, timeout=5)
    down = GrpcBackends({"contacts": grpc_address, "routing": "127.0.0.1:9"}, timeout=5)
    for backends, status, state in ((up, 200, "ready"), (down, 503, "not ready")):
        backends.open()
        app = create_app(ConsoleSettings(), backends)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://console.test"
        ) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            reply = await http.get("/readyz")
        await backends.close()
        assert (reply.status_code, reply.json()["status"]) == (status, state)
    assert reply.json()["services"] == {"contacts": "SERVING", "routing": "UNREACHABLE"}


async def test_serves_the_built_console_with_a_strict_csp(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>console</title>")
    for settings, expected in (
        (ConsoleSettings(static_dir=str(tmp_path)), "<title>console</title>"),
        (ConsoleSettings(static_dir=str(tmp_path / "missing")), "not built"),
    ):
        app = create_app(settings, GrpcBackends({}, timeout=1))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://console.test"
        ) as http:
            page = await http.get("/")
        assert page.status_code == 200 and expected in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert page.headers["x-frame-options"] == "DENY"
