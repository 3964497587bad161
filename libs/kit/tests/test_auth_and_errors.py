"""Unit tests: tokens and the domain-error → gRPC status mapping."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from inbox_kit.auth import Role, TokenVerifier, mint_token
from inbox_kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    carries_code,
)
from inbox_kit.grpc_server import _status_for, error_domain

SECRET = "unit-test-secret-0123456789abcdef"


def test_a_minted_token_verifies_to_its_principal() -> None:
    token = mint_token(SECRET, org_id="org", agent_id="ana", role="admin", teams=["t1", "t2"])
    principal = TokenVerifier(SECRET).verify(token)
    assert (principal.org_id, principal.agent_id, principal.role) == ("org", "ana", Role.ADMIN)
    assert principal.teams == frozenset({"t1", "t2"})
    principal.require_admin()


def test_agents_are_not_admins() -> None:
    principal = TokenVerifier(SECRET).verify(mint_token(SECRET, org_id="o", agent_id="a"))
    with pytest.raises(PermissionDenied):
        principal.require_admin()


@pytest.mark.parametrize(
    "token",
    [
        mint_token("other-secret-0123456789abcdef0123", org_id="o", agent_id="a"),
        mint_token(SECRET, org_id="o", agent_id="a", ttl_seconds=-60),
        jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        jwt.encode({"org": "o", "sub": "a", "role": "root"}, SECRET, algorithm="HS256"),
        jwt.encode({"org": "o", "sub": "a", "teams": "t1"}, SECRET, algorithm="HS256"),
        jwt.encode({"org": "o", "sub": "a"}, SECRET, algorithm="HS512"),
        "not-a-jwt",
    ],
    ids=["wrong-secret", "expired", "no-org", "bad-role", "teams-not-list", "wrong-alg", "garbage"],
)
def test_bad_tokens_are_unauthenticated(token: str) -> None:
    with pytest.raises(Unauthenticated):
        TokenVerifier(SECRET).verify(token)


def test_invalid_argument_carries_the_field_in_a_bad_request_detail() -> None:
    status = _status_for(InvalidArgument("agent_ids", "must not be empty"))
    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "agent_ids" in status.details
    rich = rpc_status.from_call(_FakeCall(status))
    assert rich is not None
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in rich.details)
    assert bad_request.field_violations[0].field == "agent_ids"


def test_not_found_maps_to_not_found() -> None:
    assert _status_for(NotFound("no such conversation")).code is grpc.StatusCode.NOT_FOUND


class _FakeCall:
    """Just enough of a grpc.Call for rpc_status.from_call (no network involved)."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(self._status.trailing_metadata)

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details


def test_verified_tokens_are_cached_but_expire_with_the_token() -> None:
    now = [time.time()]
    verifier = TokenVerifier(SECRET, leeway_seconds=0, clock=lambda: now[0])
    token = mint_token(SECRET, org_id="o", agent_id="a", ttl_seconds=10)
    assert verifier.verify(token) is verifier.verify(token)
    now[0] += 11
    with pytest.raises(Unauthenticated) as expired:
        verifier.verify(token)
    assert expired.value.reason == "TOKEN_EXPIRED"


def _error_info(status: grpc.Status) -> error_details_pb2.ErrorInfo:
    rich = rpc_status.from_call(_FakeCall(status))
    assert rich is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in rich.details)
    return info


def test_error_info_carries_the_raise_sites_reason_and_the_services_domain() -> None:
    domain = error_domain("/inbox.presence.v1.PresenceService/Heartbeat")
    assert domain == "inbox.presence.v1"
    status = _status_for(FailedPrecondition("ended", reason="SESSION_ENDED"), domain)
    assert status.code is grpc.StatusCode.FAILED_PRECONDITION
    info = _error_info(status)
    assert (info.reason, info.domain) == ("SESSION_ENDED", "inbox.presence.v1")
    assert _error_info(_status_for(NotFound("x"), domain)).reason == "NOT_FOUND"
    bad_page = InvalidArgument("page_token", "no", reason="PAGE_TOKEN_INVALID")
    assert _error_info(_status_for(bad_page, domain)).reason == "PAGE_TOKEN_INVALID"


class _DomainRule(Exception):
    """A domain's own error: no kit import, just the two plain attributes."""

    code = "ALREADY_EXISTS"
    reason = "ATTRIBUTE_EXISTS"


def test_a_domains_own_error_class_is_mapped_by_its_plain_code() -> None:
    assert carries_code(_DomainRule("taken")) and not carries_code(ValueError("x"))
    status = _status_for(_DomainRule("taken"), "inbox.contacts.v1")
    assert status.code is grpc.StatusCode.ALREADY_EXISTS
    assert _error_info(status).reason == "ATTRIBUTE_EXISTS"
