"""Development-mode login: mint a short-lived bearer token for any org, agent and role.

Only when the edge runs with ``CONSOLE_DEV_MODE=true`` (``make run`` sets it). In production
the console user brings a token from the identity provider and this is refused, so the edge
can never become a token mint for the shared secret.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from inbox_kit.auth import Role, mint_token

from console_service.domain.problems import Problem, ProblemError, invalid_argument

MAX_ID = 100
MAX_LIST = 100


@dataclass(frozen=True)
class DevLogin:
    org_id: str
    agent_id: str
    role: Role
    teams: tuple[str, ...]
    channels: tuple[str, ...]
    name: str = ""


def parse_login(body: Any) -> DevLogin:
    if not isinstance(body, dict):
        raise ProblemError(invalid_argument("body", "must be a JSON object"))
    org_id = _identifier(body, "org_id")
    agent_id = _identifier(body, "agent_id")
    raw_role = body.get("role", "agent")
    try:
        role = Role(raw_role)
    except ValueError:
        raise ProblemError(invalid_argument("role", "must be 'agent' or 'admin'")) from None
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_ID:
        raise ProblemError(invalid_argument("name", f"a string of at most {MAX_ID} characters"))
    return DevLogin(
        org_id, agent_id, role, _ids(body, "teams"), _ids(body, "channels"), name.strip()
    )


def _identifier(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ProblemError(invalid_argument(name, "required (a non-empty string)"))
    if len(value) > MAX_ID:
        raise ProblemError(invalid_argument(name, f"at most {MAX_ID} characters"))
    return value.strip()


def _ids(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ProblemError(invalid_argument(name, "must be a list of non-empty strings"))
    if len(value) > MAX_LIST:
        raise ProblemError(invalid_argument(name, f"at most {MAX_LIST} entries"))
    return tuple(dict.fromkeys(v.strip() for v in value))


def dev_login_disabled() -> Problem:
    return Problem(
        "PERMISSION_DENIED",
        "development login is disabled (CONSOLE_DEV_MODE is off): bring a token from the "
        "identity provider",
        reason="DEV_LOGIN_DISABLED",
    )


def mint_dev_token(login: DevLogin, *, secret: str, ttl_seconds: int) -> dict[str, Any]:
    token = mint_token(
        secret,
        org_id=login.org_id,
        agent_id=login.agent_id,
        role=login.role,
        teams=login.teams,
        channels=login.channels,
        name=login.name,
        ttl_seconds=ttl_seconds,
    )
    return {
        "token": token,
        "expires_at": int(time.time()) + ttl_seconds,
        "org_id": login.org_id,
        "agent_id": login.agent_id,
        "role": str(login.role),
        "teams": list(login.teams),
        "channels": list(login.channels),
        "name": login.name,
    }
