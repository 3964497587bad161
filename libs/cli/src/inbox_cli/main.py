"""``inboxctl``: the developer/admin command line for the inbox services.

Identity: every call carries a development bearer token minted from ``--org``, ``--agent``,
``--role`` and ``--team`` (or ``INBOX_ORG``, ``INBOX_AGENT``, ``INBOX_ROLE``, ``INBOX_TEAMS``)
with the stack's shared secret (``INBOX_JWT_SECRET``, default: the kit's development secret),
or an explicit ``--token``. Addresses: see ``inbox_cli.config`` (defaults 127.0.0.1:50061-4).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from inbox_cli import api
from inbox_cli.config import SERVICES

app = typer.Typer(
    help="Developer and admin CLI for the inbox backend (presence, routing, contacts, replies).",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
presence_app = typer.Typer(help="Agent sessions (presence gRPC).", no_args_is_help=True)
routing_app = typer.Typer(
    help="Conversations, audit trail and routing settings (routing gRPC).", no_args_is_help=True
)
contacts_app = typer.Typer(
    help="Contact attributes and contact cards (contacts gRPC).", no_args_is_help=True
)
replies_app = typer.Typer(
    help="Saved-reply collections and replies (replies gRPC).", no_args_is_help=True
)
publish_app = typer.Typer(
    help="Publish events to Kafka as a channel ingestor / the inbox app would.",
    no_args_is_help=True,
)
app.add_typer(presence_app, name="presence")
app.add_typer(routing_app, name="routing")
app.add_typer(contacts_app, name="contacts")
app.add_typer(replies_app, name="replies")
app.add_typer(publish_app, name="publish")

console = Console()
err = Console(stderr=True)


@dataclass
class Ctx:
    org: str = "org-demo"
    agent: str = "agent-dev"
    role: str = "agent"
    teams: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    token: str | None = None
    json: bool = False
    timeout: float = 10.0

    def bearer(self) -> tuple[tuple[str, str]]:
        tok = self.token or api.token(
            self.org, self.agent, self.role, self.teams, channels=self.channels
        )
        return api.bearer(tok)


STATE = Ctx()


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


# --- output helpers ---------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        if "display" in value:
            return str(value["display"])
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def emit(data: Any, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """JSON with ``--json``; else a table (a list of rows) or key/value pairs (a dict)."""
    if isinstance(data, Message):
        data = api.to_dict(data)
    if STATE.json:
        console.print_json(json.dumps(data, default=str))
        return
    if isinstance(data, list):
        rows: list[dict[str, Any]] = data
        cols = list(columns or (rows[0].keys() if rows else []))
        table = Table(title=title, show_lines=False)
        for c in cols:
            table.add_column(c)
        for row in rows:
            table.add_row(*(_fmt(row.get(c, "")) for c in cols))
        console.print(table)
        if not rows:
            console.print("(none)")
        return
    table = Table(title=title, show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        if columns is None or key in columns:
            table.add_row(key, _fmt(value))
    console.print(table)


@contextmanager
def rpc_errors() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as exc:
        err.print(f"[red]error[/red] {api.describe_rpc_error(exc)}", markup=True, highlight=False)
        raise typer.Exit(1) from None


def _stub(service: str, factory: Callable[[grpc.Channel], Any]) -> Any:
    channel = grpc.insecure_channel(api.address(service))
    return factory(channel)


def call(service: str, factory: Callable[[grpc.Channel], Any], method: str, request: Any) -> Any:
    stub = _stub(service, factory)
    with rpc_errors():
        return getattr(stub, method)(request, metadata=STATE.bearer(), timeout=STATE.timeout)


# --- token + health ---------------------------------------------------------------------------


@app.command("token")
def token_cmd(
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a development bearer token (HS256, exp = now + ttl) with --team and --channel."""
    from inbox_kit.auth import mint_token

    from inbox_cli.config import jwt_secret

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
    from inbox_cli.run_all import health

    rows = [
        {"service": s.name, "address": s.address(), "health": health(s.address())} for s in SERVICES
    ]
    emit(rows, ["service", "address", "health"])
    if any(r["health"] != "SERVING" for r in rows):
        raise typer.Exit(3)


# --- presence -------------------------------------------------------------------------------


def _presence() -> Callable[[grpc.Channel], Any]:
    from inbox.presence.v1 import presence_pb2_grpc

    return presence_pb2_grpc.PresenceServiceStub


@presence_app.command("sign-in")
def presence_sign_in(
    client: Annotated[str, typer.Option(help="Client description.")] = "inboxctl",
) -> None:
    """Sign the agent in (starts a session; heartbeat it or it expires)."""
    from inbox.presence.v1 import presence_pb2

    reply = call(
        "presence", _presence(), "SignIn", presence_pb2.SignInRequest(client_description=client)
    )
    emit(reply, title=f"{STATE.agent} signed in")


@presence_app.command("heartbeat")
def presence_heartbeat(session: Annotated[str, typer.Argument(help="Session id.")]) -> None:
    """Keep a session alive."""
    from inbox.presence.v1 import presence_pb2

    emit(
        call(
            "presence", _presence(), "Heartbeat", presence_pb2.HeartbeatRequest(session_id=session)
        )
    )


@presence_app.command("sign-out")
def presence_sign_out(
    session: Annotated[
        str | None, typer.Option(help="Session id (default: every live session of the agent).")
    ] = None,
) -> None:
    """Sign the agent out (explicit sign-out of one or all of their sessions)."""
    from inbox.presence.v1 import presence_pb2

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
    from inbox.presence.v1 import presence_pb2

    reply = call(
        "presence",
        _presence(),
        "GetPresence",
        presence_pb2.GetPresenceRequest(agent_ids=[agent_id]),
    )
    return [s.session_id for p in reply.presences for s in p.sessions]


@presence_app.command("force-sign-out")
def presence_force_sign_out(agent: Annotated[str, typer.Argument(help="Agent id.")]) -> None:
    """End every session of an agent (admin)."""
    from inbox.presence.v1 import presence_pb2

    emit(
        call(
            "presence",
            _presence(),
            "ForceSignOut",
            presence_pb2.ForceSignOutRequest(agent_id=agent),
        )
    )


@presence_app.command("show")
def presence_show(
    agents: Annotated[
        list[str] | None, typer.Argument(help="Agent ids (default: --agent).")
    ] = None,
) -> None:
    """Who is signed in, since when, with which sessions."""
    from inbox.presence.v1 import presence_pb2

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


@presence_app.command("list")
def presence_list(page_size: Annotated[int, typer.Option()] = 50) -> None:
    """Agents of the org that are signed in."""
    from inbox.presence.v1 import presence_pb2

    reply = call(
        "presence",
        _presence(),
        "ListSignedInAgents",
        presence_pb2.ListSignedInAgentsRequest(page_size=page_size),
    )
    emit(api.to_dict(reply)["agents"], ["agent_id", "since", "availability"])


# --- routing --------------------------------------------------------------------------------


def _routing_call(fn: Callable[[Any], Any]) -> Any:
    async def go() -> Any:
        from inbox.routing.v1 import routing_pb2_grpc  # type: ignore[import-not-found,unused-ignore]

        async with grpc.aio.insecure_channel(api.address("routing")) as channel:
            return await fn(routing_pb2_grpc.RoutingServiceStub(channel))

    try:
        return asyncio.run(go())
    except grpc.RpcError as exc:
        err.print(f"error {api.describe_rpc_error(exc)}", highlight=False)
        raise typer.Exit(1) from None
    except ImportError as exc:
        err.print(f"error: the routing contract is not available: {exc}")
        raise typer.Exit(1) from None


@routing_app.command("conversation")
def routing_conversation(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
) -> None:
    """A conversation's queue (NEW/PENDING/RESOLVED) and assignee."""
    from inbox_cli import routing_client as rc

    emit(_routing_call(lambda s: rc.get_conversation(s, STATE.bearer(), conversation)))


@routing_app.command("audit")
def routing_audit(conversation: Annotated[str, typer.Argument(help="Conversation id.")]) -> None:
    """The conversation's audit trail: who changed the assignment, when, and why."""
    from inbox_cli import routing_client as rc

    entries = _routing_call(lambda s: rc.get_audit_trail(s, STATE.bearer(), conversation))
    if STATE.json:
        emit(entries)
    else:
        for entry in entries:
            console.print(rc.describe_audit_entry(entry), highlight=False, markup=False)
        if not entries:
            console.print("(no entries)")


@routing_app.command("settings")
def routing_settings() -> None:
    """The org's routing settings (e.g. remove assignment on sign-out)."""
    from inbox_cli import routing_client as rc

    emit(_routing_call(lambda s: rc.get_settings(s, STATE.bearer())))


@routing_app.command("set-remove-assignment")
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
    from inbox_cli import routing_client as rc

    value = _routing_call(lambda s: rc.set_remove_assignment(s, STATE.bearer(), enabled))
    emit({"remove_assignment": value})


@routing_app.command("assignment")
def routing_assignment() -> None:
    """The org's "Automatic assignment" settings (on/off, capacities, channel -> team)."""
    from inbox.routing.v1 import routing_pb2 as pb  # type: ignore[import-not-found,unused-ignore]

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


@routing_app.command("set-assignment")
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
    from inbox.routing.v1 import routing_pb2 as pb  # type: ignore[import-not-found,unused-ignore]

    teams = {k: int(v) for k, v in _pairs(team_capacity or [], "--team-capacity").items()}
    request = pb.UpdateAssignmentSettingsRequest(
        enabled=enabled,
        default_capacity=capacity,
        team_capacities=teams,
        channel_teams=_pairs(channel_team or [], "--channel-team"),
    )
    md = STATE.bearer()
    emit(_routing_call(lambda s: s.UpdateAssignmentSettings(request, metadata=md)))


@routing_app.command("waiting")
def routing_waiting() -> None:
    """Conversations waiting for automatic assignment, oldest first, with why they wait."""
    from inbox.routing.v1 import routing_pb2 as pb  # type: ignore[import-not-found,unused-ignore]

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


@routing_app.command("loads")
def routing_loads() -> None:
    """Each agent's load (conversations held) and capacity, as the dispatcher sees them."""
    from inbox.routing.v1 import routing_pb2 as pb  # type: ignore[import-not-found,unused-ignore]

    md = STATE.bearer()
    reply = _routing_call(lambda s: s.ListAgentLoads(pb.ListAgentLoadsRequest(), metadata=md))
    rows = [api.to_dict(a) for a in reply.agents]
    emit(rows, columns=["agent_id", "signed_in", "available", "teams", "held", "capacity"])


# --- contacts -------------------------------------------------------------------------------


def _contacts() -> Callable[[grpc.Channel], Any]:
    from inbox.contacts.v1 import contacts_pb2_grpc

    return contacts_pb2_grpc.ContactsServiceStub


def _definitions() -> Any:
    from inbox.contacts.v1 import contacts_pb2

    return call(
        "contacts",
        _contacts(),
        "ListAttributeDefinitions",
        contacts_pb2.ListAttributeDefinitionsRequest(),
    )


def _emit_definitions(reply: Any) -> None:
    data = api.to_dict(reply)
    if STATE.json:
        emit(data)
        return
    rows = [
        {**d, "type": d["type"].removeprefix("ATTRIBUTE_TYPE_").lower()}
        for d in data["definitions"]
    ]
    emit(
        rows,
        ["position", "key", "label", "type", "enabled", "built_in", "options"],
        title=f"attribute definitions (version {data.get('version', '?')})",
    )


@contacts_app.command("attributes")
def contacts_attributes() -> None:
    """List the org's attribute definitions in the admin's order."""
    _emit_definitions(_definitions())


@contacts_app.command("reorder")
def contacts_reorder(
    keys: Annotated[list[str], typer.Argument(help="Attribute keys in the new order.")],
) -> None:
    """Submit a new attribute order (admin). Keys not named keep their relative order after."""
    from inbox.contacts.v1 import contacts_pb2

    current = _definitions()
    named = [k for item in keys for k in item.split(",") if k]
    rest = [d.key for d in current.definitions if d.key not in named]
    reply = call(
        "contacts",
        _contacts(),
        "ReorderAttributeDefinitions",
        contacts_pb2.ReorderAttributeDefinitionsRequest(
            keys=named + rest, expected_version=current.version
        ),
    )
    _emit_definitions(reply)


def _toggle(key: str, enabled: bool) -> None:
    from inbox.contacts.v1 import contacts_pb2

    current = _definitions()
    reply = call(
        "contacts",
        _contacts(),
        "UpdateAttributeDefinition",
        contacts_pb2.UpdateAttributeDefinitionRequest(
            key=key, enabled=enabled, expected_version=current.version
        ),
    )
    emit(reply)


@contacts_app.command("enable")
def contacts_enable(key: Annotated[str, typer.Argument(help="Attribute key.")]) -> None:
    """Show an attribute on the contact card (admin)."""
    _toggle(key, True)


@contacts_app.command("disable")
def contacts_disable(key: Annotated[str, typer.Argument(help="Attribute key.")]) -> None:
    """Hide an attribute from the contact card (admin)."""
    _toggle(key, False)


@contacts_app.command("create-attribute")
def contacts_create_attribute(
    key: Annotated[str, typer.Argument(help="Key (never changes).")],
    label: Annotated[str, typer.Argument(help="Label shown to agents.")],
    type_: Annotated[
        str,
        typer.Option("--type", help="text, number, email, phone, url, date, boolean or list."),
    ] = "text",
    option: Annotated[list[str] | None, typer.Option(help="Option of a list (repeatable).")] = None,
    disabled: Annotated[bool, typer.Option(help="Create it hidden.")] = False,
) -> None:
    """Create a custom attribute (admin)."""
    from inbox.contacts.v1 import contacts_pb2

    kind = contacts_pb2.AttributeType.Value(f"ATTRIBUTE_TYPE_{type_.upper()}")
    request = contacts_pb2.CreateAttributeDefinitionRequest(
        key=key, label=label, type=kind, options=option or [], enabled=not disabled
    )
    emit(call("contacts", _contacts(), "CreateAttributeDefinition", request))


@contacts_app.command("card")
def contacts_card(contact: Annotated[str, typer.Argument(help="Contact id.")]) -> None:
    """The contact card: enabled attributes in the admin's order, with labels and values."""
    from inbox.contacts.v1 import contacts_pb2

    reply = call(
        "contacts",
        _contacts(),
        "GetContactCard",
        contacts_pb2.GetContactCardRequest(contact_id=contact),
    )
    data = api.to_dict(reply)
    if STATE.json:
        emit(data)
        return
    rows = [
        {
            "label": f["label"],
            "value": f["value"].get("display", "") if f.get("has_value") else "-",
            "key": f["key"],
        }
        for f in data["fields"]
    ]
    emit(rows, ["label", "value", "key"], title=f"contact {contact}")


@contacts_app.command("get")
def contacts_get(contacts: Annotated[list[str], typer.Argument(help="Contact ids.")]) -> None:
    """Contacts by id (all attributes, enabled or not)."""
    from inbox.contacts.v1 import contacts_pb2

    reply = call(
        "contacts",
        _contacts(),
        "BatchGetContacts",
        contacts_pb2.BatchGetContactsRequest(contact_ids=contacts),
    )
    emit(api.to_dict(reply)["contacts"], ["contact_id", "attributes", "identities", "updated_at"])


@contacts_app.command("find")
def contacts_find(
    channel: Annotated[str, typer.Argument(help="Channel, e.g. whatsapp.")],
    handle: Annotated[str, typer.Argument(help="Handle on that channel.")],
) -> None:
    """Find a contact by channel identity."""
    from inbox.contacts.v1 import contacts_pb2

    emit(
        call(
            "contacts",
            _contacts(),
            "FindContactByIdentity",
            contacts_pb2.FindContactByIdentityRequest(channel=channel, handle=handle),
        )
    )


# --- replies --------------------------------------------------------------------------------


def _replies() -> Callable[[grpc.Channel], Any]:
    from inbox.replies.v1 import replies_pb2_grpc

    return replies_pb2_grpc.RepliesServiceStub


def _split(values: list[str] | None) -> list[str]:
    return [v for item in values or [] for v in item.split(",") if v]


@replies_app.command("create-collection")
def replies_create_collection(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    description: Annotated[str, typer.Option(help="Description.")] = "",
    team: Annotated[list[str] | None, typer.Option(help="Share with team (repeatable).")] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="Share with channel (repeatable).")
    ] = None,
) -> None:
    """Create a collection (shared when made by an admin, personal otherwise)."""
    from inbox.replies.v1 import replies_pb2

    request = replies_pb2.CreateCollectionRequest(
        name=name, description=description, team_ids=_split(team), channel_ids=_split(channel)
    )
    emit(call("replies", _replies(), "CreateCollection", request))


@replies_app.command("collections")
def replies_collections(
    channel: Annotated[str, typer.Option(help="Conversation's channel (adds its shares).")] = "",
) -> None:
    """Collections visible to the caller."""
    from inbox.replies.v1 import replies_pb2

    reply = call(
        "replies",
        _replies(),
        "ListCollections",
        replies_pb2.ListCollectionsRequest(channel_id=channel),
    )
    rows = [
        {**c, "kind": c["kind"].removeprefix("COLLECTION_KIND_").lower()}
        for c in api.to_dict(reply)["collections"]
    ]
    emit(rows, ["collection_id", "kind", "name", "team_ids", "channel_ids", "owner_agent_id"])


@replies_app.command("create")
def replies_create(
    collection: Annotated[str, typer.Argument(help="Collection id.")],
    title: Annotated[str, typer.Argument(help="Title (≤ 500 chars).")],
    body: Annotated[
        str,
        typer.Argument(
            help='Body (≤ 2,000 chars), e.g. "Hi {{contact.first_name | fallback: \\"there\\"}}".'
        ),
    ],
    shortcut: Annotated[str, typer.Option(help="Shortcut, typed as /shortcut.")] = "",
    tag: Annotated[list[str] | None, typer.Option(help="Tag (repeatable).")] = None,
) -> None:
    """Create a saved reply in a collection."""
    from inbox.replies.v1 import replies_pb2

    request = replies_pb2.CreateReplyRequest(
        collection_id=collection, title=title, body=body, shortcut=shortcut, tags=_split(tag)
    )
    emit(call("replies", _replies(), "CreateReply", request))


@replies_app.command("list")
def replies_list(
    collection: Annotated[str, typer.Argument(help="Collection id.")],
    channel: Annotated[str, typer.Option(help="Conversation's channel.")] = "",
    page_size: Annotated[int, typer.Option()] = 50,
) -> None:
    """Replies in a collection."""
    from inbox.replies.v1 import replies_pb2

    reply = call(
        "replies",
        _replies(),
        "ListReplies",
        replies_pb2.ListRepliesRequest(
            collection_id=collection, channel_id=channel, page_size=page_size
        ),
    )
    emit(api.to_dict(reply)["replies"], ["reply_id", "shortcut", "title", "tags", "usage_count"])


@replies_app.command("search")
def replies_search(
    query: Annotated[str, typer.Argument(help="Text or /shortcut.")],
    channel: Annotated[str, typer.Option(help="Conversation's channel.")] = "",
    page_size: Annotated[int, typer.Option()] = 20,
) -> None:
    """Search visible replies (shortcut above title above body)."""
    from inbox.replies.v1 import replies_pb2

    reply = call(
        "replies",
        _replies(),
        "SearchReplies",
        replies_pb2.SearchRepliesRequest(query=query, channel_id=channel, page_size=page_size),
    )
    data = api.to_dict(reply)
    if STATE.json:
        emit(data)
        return
    rows = [
        {**r["reply"], "match": r["match"].removeprefix("MATCH_KIND_").lower()}
        for r in data["results"]
    ]
    emit(rows, ["match", "reply_id", "shortcut", "title", "collection_id"])


@replies_app.command("get")
def replies_get(reply_id: Annotated[str, typer.Argument(help="Reply id.")]) -> None:
    """One saved reply."""
    from inbox.replies.v1 import replies_pb2

    emit(call("replies", _replies(), "GetReply", replies_pb2.GetReplyRequest(reply_id=reply_id)))


@replies_app.command("render")
def replies_render(
    reply_id: Annotated[str, typer.Argument(help="Reply id.")],
    contact: Annotated[str, typer.Option(help="Contact whose attributes fill placeholders.")] = "",
    channel: Annotated[str, typer.Option(help="Conversation's channel.")] = "",
) -> None:
    """Render a reply for a contact (placeholders filled, fallbacks applied)."""
    from inbox.replies.v1 import replies_pb2

    reply = call(
        "replies",
        _replies(),
        "RenderReply",
        replies_pb2.RenderReplyRequest(reply_id=reply_id, contact_id=contact, channel_id=channel),
    )
    if STATE.json:
        emit(reply)
    else:
        console.print(reply.text, highlight=False, markup=False)
        if reply.fallback_placeholders or reply.missing_placeholders:
            err.print(
                f"fallbacks: {list(reply.fallback_placeholders)}  "
                f"missing: {list(reply.missing_placeholders)}"
            )


# --- publish (Kafka) ------------------------------------------------------------------------


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _publish(built: tuple[Any, Any]) -> None:
    topic, event = built
    try:
        where = asyncio.run(api.publish(api.kafka_bootstrap(), topic, event))
    except Exception as exc:
        err.print(f"error: publishing to {topic.name} failed: {exc}")
        raise typer.Exit(1) from None
    emit(where if not STATE.json else {**where, "event": event.to_jsonable()})


OccurredAt = Annotated[
    str | None, typer.Option(help="Event time, ISO 8601 with offset (default: now).")
]


@publish_app.command("inbound")
def publish_inbound(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
    contact: Annotated[str, typer.Option(help="Contact who wrote.")] = "contact-1",
    channel: Annotated[str, typer.Option(help="Channel it came in on.")] = "channel-1",
    occurred_at: OccurredAt = None,
) -> None:
    """A customer wrote: InboundMessageReceived on inbox.messages.v1 (→ NEW)."""
    _publish(api.inbound(STATE.org, conversation, contact, channel, occurred_at=_when(occurred_at)))


@publish_app.command("outbound")
def publish_outbound(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
    channel: Annotated[str, typer.Option(help="Channel.")] = "channel-1",
    occurred_at: OccurredAt = None,
) -> None:
    """The agent (--agent) replied: OutboundMessageSent (NEW → PENDING)."""
    _publish(
        api.outbound(STATE.org, conversation, STATE.agent, channel, occurred_at=_when(occurred_at))
    )


@publish_app.command("assign")
def publish_assign(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
    assignee: Annotated[str, typer.Argument(help="Agent to assign it to.")],
    occurred_at: OccurredAt = None,
) -> None:
    """Assign by hand (as the inbox app): ConversationAssigned on inbox.conversations.v1."""
    _publish(
        api.assigned(STATE.org, conversation, assignee, STATE.agent, occurred_at=_when(occurred_at))
    )


@publish_app.command("unassign")
def publish_unassign(conversation: Annotated[str, typer.Argument(help="Conversation id.")]) -> None:
    """Unassign by hand: ConversationUnassigned."""
    _publish(api.unassigned(STATE.org, conversation, STATE.agent))


@publish_app.command("resolve")
def publish_resolve(conversation: Annotated[str, typer.Argument(help="Conversation id.")]) -> None:
    """Resolve: ConversationResolved (→ RESOLVED, assignee removed)."""
    _publish(api.resolved(STATE.org, conversation, STATE.agent))


@publish_app.command("follow-up")
def publish_follow_up(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
) -> None:
    """A boomerang fired: FollowUpDue (PENDING/RESOLVED → NEW)."""
    _publish(api.follow_up_due(STATE.org, conversation))


@publish_app.command("contact")
def publish_contact(
    contact: Annotated[str, typer.Argument(help="Contact id.")],
    attr: Annotated[
        list[str] | None, typer.Option(help="key=value (repeatable; JSON values allowed).")
    ] = None,
    identity: Annotated[list[str] | None, typer.Option(help="channel:handle (repeatable).")] = None,
) -> None:
    """Create/update a contact profile: ContactProfileUpserted on inbox.contacts.v1."""
    attributes: dict[str, Any] = {}
    for item in attr or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint="--attr")
        try:
            attributes[key] = json.loads(raw)
        except ValueError:
            attributes[key] = raw
    identities = []
    for item in identity or []:
        channel, sep, handle = item.partition(":")
        if not sep:
            raise typer.BadParameter(f"{item!r}: expected channel:handle", param_hint="--identity")
        identities.append((channel, handle))
    _publish(api.contact_profile(STATE.org, contact, attributes, identities))


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
    import sys

    app(args=hoist_global_options(sys.argv[1:]), prog_name="inboxctl")


if __name__ == "__main__":
    main()
