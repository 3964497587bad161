"""``inboxctl routing``: conversations, audit trail and routing settings (routing gRPC)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import grpc
import typer
from inbox.routing.v1 import routing_pb2 as pb
from inbox.routing.v1 import routing_pb2_grpc

from inbox_cli import api
from inbox_cli import routing_client as rc
from inbox_cli.output import STATE, console, emit, err

app = typer.Typer(
    help="Conversations, audit trail and routing settings (routing gRPC).", no_args_is_help=True
)


def _routing_call(fn: Callable[[Any], Any]) -> Any:
    async def go() -> Any:
        async with grpc.aio.insecure_channel(api.address("routing")) as channel:
            return await fn(routing_pb2_grpc.RoutingServiceStub(channel))

    try:
        return asyncio.run(go())
    except grpc.RpcError as exc:
        err.print(f"error {api.describe_rpc_error(exc)}", highlight=False)
        raise typer.Exit(1) from None


@app.command("conversation")
def routing_conversation(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
) -> None:
    """A conversation's queue (NEW/PENDING/RESOLVED) and assignee."""
    emit(_routing_call(lambda s: rc.get_conversation(s, STATE.bearer(), conversation)))


@app.command("audit")
def routing_audit(conversation: Annotated[str, typer.Argument(help="Conversation id.")]) -> None:
    """The conversation's audit trail: who changed the assignment, when, and why."""
    entries = _routing_call(lambda s: rc.get_audit_trail(s, STATE.bearer(), conversation))
    if STATE.json:
        emit(entries)
    else:
        for entry in entries:
            console.print(rc.describe_audit_entry(entry), highlight=False, markup=False)
        if not entries:
            console.print("(no entries)")


@app.command("settings")
def routing_settings() -> None:
    """The org's routing settings (e.g. remove assignment on sign-out)."""
    emit(_routing_call(lambda s: rc.get_settings(s, STATE.bearer())))


@app.command("set-remove-assignment")
def routing_set_remove_assignment(
    enabled: Annotated[
        bool,
        typer.Argument(
            help="true/on or false/off.",
            parser=lambda v: str(v).lower() in {"1", "true", "on", "yes"},
        ),
    ],
) -> None:
    """Turn "Remove assignment when an agent signs out" on or off (admin)."""
    value = _routing_call(lambda s: rc.set_remove_assignment(s, STATE.bearer(), enabled))
    emit({"remove_assignment": value})


@app.command("assignment")
def routing_assignment() -> None:
    """The org's "Automatic assignment" settings (on/off, capacities, channel -> team)."""
    md = STATE.bearer()
    emit(
        _routing_call(
            lambda s: s.GetAssignmentSettings(pb.GetAssignmentSettingsRequest(), metadata=md)
        )
    )


def _pairs(values: list[str], name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            err.print(f"error: {name} takes KEY=VALUE, got {v!r}")
            raise typer.Exit(2)
        out[key] = value
    return out


@app.command("set-assignment")
def routing_set_assignment(
    enabled: Annotated[
        bool,
        typer.Argument(
            help="true/on or false/off.",
            parser=lambda v: str(v).lower() in {"1", "true", "on", "yes"},
        ),
    ],
    capacity: Annotated[int, typer.Option(help="Default capacity per agent; 0 = unlimited.")] = 0,
    team_capacity: Annotated[
        list[str] | None, typer.Option(help="TEAM=N, repeatable: capacity for a team.")
    ] = None,
    channel_team: Annotated[
        list[str] | None, typer.Option(help="CHANNEL=TEAM, repeatable: route a channel.")
    ] = None,
) -> None:
    """Replace the "Automatic assignment" settings (admin; every value is set at once)."""
    teams = {k: int(v) for k, v in _pairs(team_capacity or [], "--team-capacity").items()}
    request = pb.UpdateAssignmentSettingsRequest(
        enabled=enabled,
        default_capacity=capacity,
        team_capacities=teams,
        channel_teams=_pairs(channel_team or [], "--channel-team"),
    )
    md = STATE.bearer()
    emit(_routing_call(lambda s: s.UpdateAssignmentSettings(request, metadata=md)))


@app.command("waiting")
def routing_waiting() -> None:
    """Conversations waiting for automatic assignment, oldest first, with why they wait."""
    md = STATE.bearer()
    reply = _routing_call(
        lambda s: s.ListWaitingConversations(pb.ListWaitingConversationsRequest(), metadata=md)
    )
    rows = [api.to_dict(w) for w in reply.conversations]
    emit(
        rows,
        columns=["conversation_id", "waiting_since", "team", "reason"],
        title=f"{reply.total} waiting",
    )


@app.command("loads")
def routing_loads() -> None:
    """Each agent's load (conversations held) and capacity, as the dispatcher sees them."""
    md = STATE.bearer()
    reply = _routing_call(lambda s: s.ListAgentLoads(pb.ListAgentLoadsRequest(), metadata=md))
    rows = [api.to_dict(a) for a in reply.agents]
    emit(rows, columns=["agent_id", "signed_in", "available", "teams", "held", "capacity"])
