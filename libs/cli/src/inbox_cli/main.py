"""``inboxctl``: the developer/admin command line for the inbox services.

Identity: every call carries a development bearer token minted from ``--org``, ``--agent``,
``--role`` and ``--team`` (or ``INBOX_ORG``, ``INBOX_AGENT``, ``INBOX_ROLE``, ``INBOX_TEAMS``)
with the stack's shared secret (``INBOX_JWT_SECRET``, default: the kit's development secret),
or an explicit ``--token``. Addresses: see ``inbox_cli.config`` (defaults 127.0.0.1:7061-4).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from inbox_kit.auth import mint_token

from inbox_cli.commands import contacts, presence, publish, replies, routing
from inbox_cli.config import SERVICES, jwt_secret
from inbox_cli.output import STATE, emit
from inbox_cli.run_all import health

app = typer.Typer(
    help="Developer and admin CLI for the inbox backend (presence, routing, contacts, replies).",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(presence.app, name="presence")
app.add_typer(routing.app, name="routing")
app.add_typer(contacts.app, name="contacts")
app.add_typer(replies.app, name="replies")
app.add_typer(publish.app, name="publish")


@app.callback()
def _global(
    org: Annotated[str, typer.Option(envvar="INBOX_ORG", help="Organization id.")] = "org-demo",
    agent: Annotated[
        str, typer.Option(envvar="INBOX_AGENT", help="Agent id the call is made as.")
    ] = "agent-dev",
    role: Annotated[
        str, typer.Option(envvar="INBOX_ROLE", help="agent or admin (admin-only commands).")
    ] = "agent",
    team: Annotated[
        list[str] | None,
        typer.Option("--team", envvar="INBOX_TEAMS", help="Team id (repeatable)."),
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            envvar="INBOX_CHANNELS",
            help="Channel id the agent may answer on (repeatable; the token's channels claim).",
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="INBOX_TOKEN", help="Use this bearer token as is.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON output.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Per-call deadline, seconds.")] = 10.0,
) -> None:
    """Global identity and output options (put them before the command)."""
    STATE.org, STATE.agent, STATE.role = org, agent, role
    STATE.teams = [t for item in team or [] for t in item.split(",") if t]
    STATE.channels = [c for item in channel or [] for c in item.split(",") if c]
    STATE.token, STATE.json, STATE.timeout = token, json_output, timeout


# --- token + health ---------------------------------------------------------------------------


@app.command("token")
def token_cmd(
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a development bearer token (HS256, exp = now + ttl) with --team and --channel."""

    tok = mint_token(
        jwt_secret(),
        org_id=STATE.org,
        agent_id=STATE.agent,
        role=STATE.role,
        teams=tuple(STATE.teams),
        channels=tuple(STATE.channels),
        ttl_seconds=ttl,
    )
    if STATE.json:
        emit(
            {
                "token": tok,
                "org": STATE.org,
                "agent": STATE.agent,
                "role": STATE.role,
                "teams": STATE.teams,
                "channels": STATE.channels,
                "expires_in": ttl,
            }
        )
    else:
        print(tok)


@app.command("health")
def health_cmd() -> None:
    """gRPC health of the four services."""
    rows = [
        {"service": s.name, "address": s.address(), "health": health(s.address())} for s in SERVICES
    ]
    emit(rows, ["service", "address", "health"])
    if any(r["health"] != "SERVING" for r in rows):
        raise typer.Exit(3)


_GLOBAL_FLAGS = {"--json"}
_GLOBAL_OPTIONS = {"--org", "--agent", "--role", "--team", "--channel", "--token", "--timeout"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Let global options follow the command too: ``inboxctl contacts card c1 --json``."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg == "--":
            rest += argv[i:]
            break
        if arg in _GLOBAL_FLAGS or (name in _GLOBAL_OPTIONS and "=" in arg):
            front.append(arg)
        elif arg in _GLOBAL_OPTIONS and i + 1 < len(argv):
            front += [arg, argv[i + 1]]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main() -> None:
    app(args=hoist_global_options(sys.argv[1:]), prog_name="inboxctl")


if __name__ == "__main__":
    main()
