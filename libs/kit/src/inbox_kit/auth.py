"""Bearer-token authentication: who is calling, on behalf of which org.

Tokens are JWTs. Production tokens come from an identity provider, signed RS256 or ES256 with
keys published as a JWKS (``<PREFIX>JWT_JWKS_URL`` or ``<PREFIX>JWT_JWKS_FILE``); HS256 with a
shared secret (``<PREFIX>JWT_SECRET``) is for development and tests. Claims
(docs/authentication.md has the full table):

- ``exp`` (required): expiry, seconds since the epoch; lifetime (``exp - iat``, or
  ``exp - now`` without ``iat``) at most ``<PREFIX>JWT_MAX_LIFETIME_SECONDS``;
- ``org`` (required): the organization; ``sub`` (required): the agent id;
- ``role``: ``agent`` (default) or ``admin``;
- ``teams``: team ids (default none); ``channels``: channel ids the agent may answer on
  (default none); ``name``: display name (default: none, the agent id is shown);
- ``iss`` / ``aud``: checked when ``<PREFIX>JWT_ISSUER`` / ``<PREFIX>JWT_AUDIENCE`` are set.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import jwt

from inbox_kit.errors import PermissionDenied, Unauthenticated
from inbox_kit.validation import id_problem

log = logging.getLogger(__name__)

#: The HS256 algorithm of development tokens (kept under this name for older callers).
ALGORITHM = "HS256"
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
#: The secret a fresh checkout uses. A service refuses it unless development mode is on.
DEVELOPMENT_SECRET = "inbox-development-secret-change-me-please"
DEFAULT_MAX_LIFETIME_SECONDS = 24 * 3600
DEVELOPMENT_MODE_ENV = "INBOX_DEVELOPMENT_MODE"


class Role(StrEnum):
    AGENT = "agent"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The verified caller. ``bearer_token`` is the verified token itself, for calls a
    service makes to another service on the caller's behalf."""

    org_id: str
    agent_id: str
    role: Role
    teams: frozenset[str] = field(default_factory=frozenset)
    channels: frozenset[str] = field(default_factory=frozenset)
    name: str = ""
    bearer_token: str = field(default="", repr=False, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied("this operation needs the admin role", reason="ADMIN_REQUIRED")


class InsecureConfiguration(SystemExit):
    """Refusing to start (printed as one line, exit status 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"refusing to start: {message}")


class AuthSettings(Protocol):
    """The settings fields ``verifier_from_settings`` reads (``ServiceSettings`` has them)."""

    @property
    def env_prefix(self) -> str: ...
    @property
    def jwt_secret_value(self) -> str: ...
    @property
    def jwt_jwks_url(self) -> str: ...
    @property
    def jwt_jwks_file(self) -> str: ...
    @property
    def jwt_issuer(self) -> str: ...
    @property
    def jwt_audience(self) -> str: ...
    @property
    def jwt_max_lifetime_seconds(self) -> int: ...
    @property
    def development_mode(self) -> bool: ...


class _Jwks:
    """Signing keys by ``kid`` from a JWKS file (read once) or URL (PyJWT's ``PyJWKClient``).

    An unknown ``kid`` refetches the URL at most once per ``refresh_interval`` seconds, so
    tokens with made-up key ids cannot turn every call into a fetch.
    """

    def __init__(self, url: str, path: str, *, refresh_interval: float = 30.0) -> None:
        self._client = jwt.PyJWKClient(url, cache_keys=False, timeout=5) if url else None
        self._refresh_interval = refresh_interval
        self._last_fetch = -refresh_interval
        self._keys: dict[str, jwt.PyJWK] = {}
        if path:
            self._remember(jwt.PyJWKSet.from_dict(json.loads(Path(path).read_text())))

    def _remember(self, keys: jwt.PyJWKSet) -> None:
        self._keys = {k.key_id or "": k for k in keys.keys}

    def key(self, kid: str) -> jwt.PyJWK | None:
        key = self._keys.get(kid) or (self._keys.get("") if len(self._keys) == 1 else None)
        now = time.monotonic()
        if (
            key is None
            and self._client is not None
            and now - self._last_fetch > self._refresh_interval
        ):
            self._last_fetch = now
            try:
                self._remember(self._client.get_jwk_set(refresh=True))
            except jwt.PyJWKClientError:
                log.exception("cannot fetch the JWKS")
            key = self._keys.get(kid)
        return key


class TokenVerifier:
    """Verifies bearer tokens, remembering the ones it already verified.

    Verification costs about as much CPU as a whole cheap gRPC call, and a client sends the
    same token on every call, so the principal is cached per exact token string until the
    token's own ``exp`` (at most ``max_age`` seconds). A cached entry is exactly what verifying
    again would return, so the cache changes no decision.
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        jwks_url: str = "",
        jwks_file: str = "",
        issuer: str = "",
        audience: str = "",
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        leeway_seconds: float = 5.0,
        max_entries: int = 10_000,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._secret = secret or None
        self._jwks = _Jwks(jwks_url, jwks_file) if (jwks_url or jwks_file) else None
        self._issuer = issuer or None
        self._audience = audience or None
        self._max_lifetime = max_lifetime_seconds
        self._leeway = leeway_seconds
        self._max_entries = max_entries
        self._max_age = max_age
        self._cache: dict[str, tuple[float, Principal]] = {}

    def verify(self, token: str) -> Principal:
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None and now < hit[0]:
            return hit[1]
        claims = self._decode(token)
        _check_times(claims, now, self._max_lifetime, self._leeway)
        principal = _principal(claims, token)
        expires = min(now + self._max_age, float(claims["exp"]))
        if len(self._cache) >= self._max_entries:
            self._cache.clear()  # crude but bounded; refills with the tokens in use
        self._cache[token] = (expires, principal)
        return principal

    def _key(self, token: str) -> tuple[Any, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}", reason="TOKEN_INVALID") from exc
        algorithm = header.get("alg")
        if algorithm == ALGORITHM and self._secret is not None:
            return self._secret, algorithm
        if algorithm in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            kid = header.get("kid")
            key = self._jwks.key(kid if isinstance(kid, str) else "")
            if key is None:
                raise Unauthenticated("invalid token: unknown signing key", reason="TOKEN_INVALID")
            return key, algorithm
        raise Unauthenticated(
            f"invalid token: algorithm {algorithm!r} is not accepted here", reason="TOKEN_INVALID"
        )

    def _decode(self, token: str) -> dict[str, Any]:
        key, algorithm = self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "org", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_exp": False,  # _check_times, on our clock
                },
            )
        except (
            jwt.MissingRequiredClaimError,
            jwt.InvalidIssuerError,
            jwt.InvalidAudienceError,
            jwt.ImmatureSignatureError,
            jwt.InvalidIssuedAtError,
        ) as exc:
            raise Unauthenticated(f"invalid token: {exc}", reason="TOKEN_CLAIMS_INVALID") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}", reason="TOKEN_INVALID") from exc
        return claims


def _bad_claims(message: str) -> Unauthenticated:
    return Unauthenticated(f"invalid token: {message}", reason="TOKEN_CLAIMS_INVALID")


def _check_times(claims: dict[str, Any], now: float, max_lifetime: int, leeway: float) -> None:
    exp, iat = claims["exp"], claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _bad_claims("exp must be a number")
    if exp + leeway <= now:
        raise Unauthenticated("token expired", reason="TOKEN_EXPIRED")
    start = iat if isinstance(iat, int | float) and not isinstance(iat, bool) else now
    if exp - start > max_lifetime:
        raise _bad_claims(f"lifetime longer than the accepted {max_lifetime} s")


def _string_list(claims: dict[str, Any], name: str) -> frozenset[str]:
    values = claims.get(name, [])
    if not isinstance(values, list) or not all(
        isinstance(v, str) and id_problem(v) is None for v in values
    ):
        raise _bad_claims(f"{name} must be a list of ids")
    return frozenset(values)


def _principal(claims: dict[str, Any], token: str) -> Principal:
    try:
        role = Role(claims.get("role", Role.AGENT))
    except (ValueError, TypeError) as exc:
        raise _bad_claims(f"unknown role {claims.get('role')!r}") from exc
    org, sub, name = claims["org"], claims["sub"], claims.get("name", "")
    if not (isinstance(org, str) and isinstance(sub, str)):
        raise _bad_claims("org and sub must be strings")
    if id_problem(org) or id_problem(sub):
        raise _bad_claims("org and sub must be ids (1-256 characters, no control characters)")
    if not isinstance(name, str):
        raise _bad_claims("name must be a string")
    return Principal(
        org_id=org,
        agent_id=sub,
        role=role,
        teams=_string_list(claims, "teams"),
        channels=_string_list(claims, "channels"),
        name=name.strip(),
        bearer_token=token,
    )


def verifier_from_settings(settings: AuthSettings) -> TokenVerifier:
    """The service's verifier; refuses the built-in development secret outside development
    mode (``INBOX_DEVELOPMENT_MODE=1``)."""
    secret: str | None = settings.jwt_secret_value
    has_jwks = bool(settings.jwt_jwks_url or settings.jwt_jwks_file)
    if secret == DEVELOPMENT_SECRET and not settings.development_mode:
        if not has_jwks:
            raise InsecureConfiguration(
                f"{settings.env_prefix}JWT_SECRET is the built-in development secret; set "
                f"{settings.env_prefix}JWT_JWKS_URL (identity provider), a real "
                f"{settings.env_prefix}JWT_SECRET, or {DEVELOPMENT_MODE_ENV}=1 for local "
                "development"
            )
        secret = None  # identity-provider tokens only
    if secret and not settings.development_mode:
        log.warning("HS256 shared-secret tokens are accepted; use a JWKS in production")
    return TokenVerifier(
        secret,
        jwks_url=settings.jwt_jwks_url,
        jwks_file=settings.jwt_jwks_file,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
    )


def mint_token(
    secret: str,
    *,
    org_id: str,
    agent_id: str,
    role: Role | str = Role.AGENT,
    teams: Sequence[str] = (),
    channels: Sequence[str] = (),
    name: str = "",
    ttl_seconds: int = 3600,
) -> str:
    """A development/test token (HS256). Production tokens come from the identity provider."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "org": org_id,
        "sub": agent_id,
        "role": str(Role(role)),
        "teams": list(teams),
        "channels": list(channels),
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("inbox_principal")


def current_principal() -> Principal:
    """The authenticated caller of the gRPC call being served."""
    try:
        return _current.get()
    except LookupError:
        raise Unauthenticated("no authenticated caller", reason="TOKEN_MISSING") from None


def set_current_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _current.set(principal)


def reset_current_principal(token: contextvars.Token[Principal]) -> None:
    _current.reset(token)
