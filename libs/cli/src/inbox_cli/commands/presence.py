"""``inboxctl presence``: agent sessions (presence gRPC)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import grpc
import typer
from inbox.presence.v1 import presence_pb2, presence_pb2_grpc

from inbox_cli import api
from inbox_cli.output import STATE, call, emit, err

app = typer.Typer(help="Agent sessions (presence gRPC).", no_args_is_help=True)


def _presence() -> Callable[[grpc.Channel], Any]:
    return presence_pb2_grpc.PresenceServiceStub


@app.command("sign-in")
def presence_sign_in(
    client: Annotated[str, typer.Option(help="Client description.")] = "inboxctl",
) -> None:
    """Sign the agent in (starts a session; heartbeat it or it expires)."""
    reply = call(
        "presence", _presence(), "SignIn", presence_pb2.SignInRequest(client_description=client)
    )
    emit(reply, title=f"{STATE.agent} signed in")


@app.command("heartbeat")
def presence_heartbeat(session: Annotated[str, typer.Argument(help="Session id.")]) -> None:
    """Keep a session alive."""
    emit(
        call(
            "presence", _presence(), "Heartbeat", presence_pb2.HeartbeatRequest(session_id=session)
        )
    )


@app.command("sign-out")
def presence_sign_out(
    session: Annotated[
        str | None, typer.Option(help="Session id (default: every live session of the agent).")
    ] = None,
) -> None:
    """Sign the agent out (explicit sign-out of one or all of their sessions)."""
    sessions = [session] if session else _live_sessions(STATE.agent)
    if not sessions:
        err.print(f"{STATE.agent} has no live session")
        raise typer.Exit(1)
    rows = []
    for sid in sessions:
        reply = call(
            "presence", _presence(), "SignOut", presence_pb2.SignOutRequest(session_id=sid)
        )
        rows.append({"session_id": sid, "agent_signed_out": reply.agent_signed_out})
    emit(rows, ["session_id", "agent_signed_out"])


def _live_sessions(agent_id: str) -> list[str]:
    reply = call(
        "presence",
        _presence(),
        "GetPresence",
        presence_pb2.GetPresenceRequest(agent_ids=[agent_id]),
    )
    return [s.session_id for p in reply.presences for s in p.sessions]


@app.command("force-sign-out")
def presence_force_sign_out(agent: Annotated[str, typer.Argument(help="Agent id.")]) -> None:
    """End every session of an agent (admin)."""
    emit(
        call(
            "presence",
            _presence(),
            "ForceSignOut",
            presence_pb2.ForceSignOutRequest(agent_id=agent),
        )
    )


@app.command("show")
def presence_show(
    agents: Annotated[
        list[str] | None, typer.Argument(help="Agent ids (default: --agent).")
    ] = None,
) -> None:
    """Who is signed in, since when, with which sessions."""
    reply = call(
        "presence",
        _presence(),
        "GetPresence",
        presence_pb2.GetPresenceRequest(agent_ids=agents or [STATE.agent]),
    )
    rows = []
    for p in api.to_dict(reply)["presences"]:
        rows.append({**p, "sessions": len(p.get("sessions", []))})
    emit(
        rows if not STATE.json else api.to_dict(reply)["presences"],
        ["agent_id", "signed_in", "since", "availability", "sessions"],
    )


@app.command("list")
def presence_list(page_size: Annotated[int, typer.Option()] = 50) -> None:
    """Agents of the org that are signed in."""
    reply = call(
        "presence",
        _presence(),
        "ListSignedInAgents",
        presence_pb2.ListSignedInAgentsRequest(page_size=page_size),
    )
    emit(api.to_dict(reply)["agents"], ["agent_id", "since", "availability"])
