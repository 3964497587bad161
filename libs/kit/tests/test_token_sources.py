"""Unit tests: required expiry and lifetime, identity-provider keys (JWKS file and URL),
issuer/audience, and the refusal of the development secret outside development mode."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from inbox_kit.auth import (
    DEVELOPMENT_SECRET,
    InsecureConfiguration,
    TokenVerifier,
    mint_token,
    verifier_from_settings,
)
from inbox_kit.errors import Unauthenticated
from inbox_kit.settings import ServiceSettings

SECRET = "unit-test-secret-0123456789abcdef"
JWKS_PORT = 12100  # this worktree's range for extra servers


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"org": "o", "sub": "a", "iat": now, "exp": now + 300, **extra}


def reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as failure:
        verifier.verify(token)
    return failure.value.reason


def test_exp_is_required_and_the_lifetime_bounded() -> None:
    verifier = TokenVerifier(SECRET, max_lifetime_seconds=3600)
    no_exp = {k: v for k, v in claims().items() if k != "exp"}
    assert reason_of(verifier, jwt.encode(no_exp, SECRET)) == "TOKEN_CLAIMS_INVALID"
    too_long = claims(exp=int(time.time()) + 7200)
    assert reason_of(verifier, jwt.encode(too_long, SECRET)) == "TOKEN_CLAIMS_INVALID"
    no_iat = {k: v for k, v in too_long.items() if k != "iat"}
    assert reason_of(verifier, jwt.encode(no_iat, SECRET)) == "TOKEN_CLAIMS_INVALID"
    assert verifier.verify(jwt.encode(claims(), SECRET)).agent_id == "a"
    expired = claims(iat=int(time.time()) - 600, exp=int(time.time()) - 60)
    assert reason_of(verifier, jwt.encode(expired, SECRET)) == "TOKEN_EXPIRED"


def test_every_documented_claim_reaches_the_principal() -> None:
    token = mint_token(
        SECRET, org_id="o", agent_id="a", teams=["t"], channels=["wa-1"], name=" Ana "
    )
    p = TokenVerifier(SECRET).verify(token)
    assert (p.teams, p.channels, p.name, p.role.value) == (
        frozenset({"t"}),
        frozenset({"wa-1"}),
        "Ana",
        "agent",
    )
    assert p.bearer_token == token
    bad = jwt.encode(claims(channels="wa-1"), SECRET)
    assert reason_of(TokenVerifier(SECRET), bad) == "TOKEN_CLAIMS_INVALID"
    long_org = jwt.encode(claims(org="x" * 300), SECRET)
    assert reason_of(TokenVerifier(SECRET), long_org) == "TOKEN_CLAIMS_INVALID"


def _jwk(public_key: Any, kid: str, alg: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[alg].to_jwk(public_key)
    )
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
    }


@pytest.fixture(scope="module")
def jwks(keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [_jwk(k.public_key(), f"kid-{alg}", alg) for alg, k in keys.items()]}


def test_rs256_and_es256_from_a_jwks_file(
    keys: dict[str, Any], jwks: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    verifier = TokenVerifier(None, jwks_file=str(path), issuer="https://idp", audience="inbox")
    good = claims(iss="https://idp", aud="inbox")
    for alg, key in keys.items():
        token = jwt.encode(good, key, algorithm=alg, headers={"kid": f"kid-{alg}"})
        assert verifier.verify(token).org_id == "o"
        wrong_aud = jwt.encode(
            {**good, "aud": "other"}, key, algorithm=alg, headers={"kid": f"kid-{alg}"}
        )
        assert reason_of(verifier, wrong_aud) == "TOKEN_CLAIMS_INVALID"
    no_iss = jwt.encode(claims(aud="inbox"), keys["RS256"], "RS256", headers={"kid": "kid-RS256"})
    assert reason_of(verifier, no_iss) == "TOKEN_CLAIMS_INVALID"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(good, other_key, algorithm="RS256", headers={"kid": "kid-RS256"})
    assert reason_of(verifier, forged) == "TOKEN_INVALID"
    # no shared secret configured: HS256 is not accepted at all
    assert reason_of(verifier, jwt.encode(good, SECRET)) == "TOKEN_INVALID"


@pytest.fixture
def jwks_url(jwks: dict[str, Any]) -> Iterator[tuple[str, list[int]]]:
    hits = [0]
    body = json.dumps(jwks).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", JWKS_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{JWKS_PORT}/jwks.json", hits
    finally:
        server.shutdown()
        server.server_close()


def test_keys_from_a_jwks_url_are_fetched_once_and_unknown_kids_do_not_refetch(
    keys: dict[str, Any], jwks_url: tuple[str, list[int]]
) -> None:
    url, hits = jwks_url
    verifier = TokenVerifier(None, jwks_url=url)
    token = jwt.encode(claims(), keys["ES256"], algorithm="ES256", headers={"kid": "kid-ES256"})
    assert verifier.verify(token).agent_id == "a"
    assert hits[0] == 1
    for i in range(5):
        unknown = jwt.encode(claims(n=i), keys["ES256"], "ES256", headers={"kid": f"made-up-{i}"})
        assert reason_of(verifier, unknown) == "TOKEN_INVALID"
    assert hits[0] == 1


def test_the_development_secret_is_refused_outside_development_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INBOX_DEVELOPMENT_MODE", raising=False)
    with pytest.raises(InsecureConfiguration, match="INBOX_DEVELOPMENT_MODE"):
        verifier_from_settings(ServiceSettings())
    dev = verifier_from_settings(ServiceSettings(development_mode=True))
    token = mint_token(DEVELOPMENT_SECRET, org_id="o", agent_id="a")
    assert dev.verify(token).org_id == "o"
    proper = verifier_from_settings(ServiceSettings(jwt_secret=SECRET))  # type: ignore[arg-type]
    assert proper.verify(mint_token(SECRET, org_id="o", agent_id="a")).org_id == "o"


def test_with_a_jwks_the_development_secret_only_disables_hs256(
    jwks: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INBOX_DEVELOPMENT_MODE", raising=False)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    verifier = verifier_from_settings(ServiceSettings(jwt_jwks_file=str(path)))
    dev_token = mint_token(DEVELOPMENT_SECRET, org_id="o", agent_id="a")
    assert reason_of(verifier, dev_token) == "TOKEN_INVALID"
