"""Bearer-token authentication: who is calling, on behalf of which org.

Tokens are JWTs signed with HS256 (the secret comes from the environment). Claims: ``org``,
``sub`` (the agent id), ``role`` (``agent`` or ``admin``) and ``teams`` (list of team ids).
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jwt

from inbox_kit.errors import PermissionDenied, Unauthenticated

ALGORITHM = "HS256"


class Role(StrEnum):
    AGENT = "agent"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    org_id: str
    agent_id: str
    role: Role
    teams: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied("this operation needs the admin role")


class TokenVerifier:
    """Verifies bearer tokens, remembering the ones it already verified.

    HS256 verification costs about as much CPU as a whole cheap gRPC call, and a client sends
    the same token on every call, so the principal is cached per exact token string until the
    token's own ``exp`` (at most ``max_age`` seconds). A cached entry is exactly what verifying
    again would return, so the cache changes no decision.
    """

    def __init__(self, secret: str, *, max_entries: int = 10_000, max_age: float = 60.0) -> None:
        self._secret = secret
        self._max_entries = max_entries
        self._max_age = max_age
        self._cache: dict[str, tuple[float, Principal]] = {}

    def verify(self, token: str) -> Principal:
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and now < hit[0]:
            return hit[1]
        claims = self._decode(token)
        principal = _principal(claims)
        expires = now + self._max_age
        if isinstance(claims.get("exp"), int | float):
            expires = min(expires, float(claims["exp"]))
        if len(self._cache) >= self._max_entries:
            self._cache.clear()  # crude but bounded; refills with the tokens in use
        self._cache[token] = (expires, principal)
        return principal

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["org", "sub"]}
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        return claims


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        role = Role(claims.get("role", Role.AGENT))
    except ValueError as exc:
        raise Unauthenticated(f"invalid token: unknown role {claims.get('role')!r}") from exc
    teams = claims.get("teams", [])
    org, sub = claims["org"], claims["sub"]
    if not (isinstance(org, str) and org and isinstance(sub, str) and sub):
        raise Unauthenticated("invalid token: org and sub must be non-empty strings")
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        raise Unauthenticated("invalid token: teams must be a list of strings")
    return Principal(org_id=org, agent_id=sub, role=role, teams=frozenset(teams))


def mint_token(
    secret: str,
    *,
    org_id: str,
    agent_id: str,
    role: Role | str = Role.AGENT,
    teams: list[str] | tuple[str, ...] = (),
    ttl_seconds: int = 3600,
) -> str:
    """A development/test token. Production tokens come from the identity provider."""
    now = int(time.time())
    claims = {
        "org": org_id,
        "sub": agent_id,
        "role": str(Role(role)),
        "teams": list(teams),
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("inbox_principal")


def current_principal() -> Principal:
    """The authenticated caller of the gRPC call being served."""
    try:
        return _current.get()
    except LookupError:
        raise Unauthenticated("no authenticated caller") from None


def set_current_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _current.set(principal)


def reset_current_principal(token: contextvars.Token[Principal]) -> None:
    _current.reset(token)
