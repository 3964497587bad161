"""``inboxctl replies``: saved-reply collections and replies (replies gRPC)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import grpc
import typer
from inbox.replies.v1 import replies_pb2, replies_pb2_grpc

from inbox_cli import api
from inbox_cli.output import STATE, call, console, emit, err

app = typer.Typer(help="Saved-reply collections and replies (replies gRPC).", no_args_is_help=True)


def _replies() -> Callable[[grpc.Channel], Any]:
    return replies_pb2_grpc.RepliesServiceStub


def _split(values: list[str] | None) -> list[str]:
    return [v for item in values or [] for v in item.split(",") if v]


@app.command("create-collection")
def replies_create_collection(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    description: Annotated[str, typer.Option(help="Description.")] = "",
    team: Annotated[list[str] | None, typer.Option(help="Share with team (repeatable).")] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="Share with channel (repeatable).")
    ] = None,
) -> None:
    """Create a collection (shared when made by an admin, personal otherwise)."""
    request = replies_pb2.CreateCollectionRequest(
        name=name, description=description, team_ids=_split(team), channel_ids=_split(channel)
    )
    emit(call("replies", _replies(), "CreateCollection", request))


@app.command("collections")
def replies_collections(
    channel: Annotated[str, typer.Option(help="Conversation's channel (adds its shares).")] = "",
) -> None:
    """Collections visible to the caller."""
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


@app.command("create")
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
    request = replies_pb2.CreateReplyRequest(
        collection_id=collection, title=title, body=body, shortcut=shortcut, tags=_split(tag)
    )
    emit(call("replies", _replies(), "CreateReply", request))


@app.command("list")
def replies_list(
    collection: Annotated[str, typer.Argument(help="Collection id.")],
    channel: Annotated[str, typer.Option(help="Conversation's channel.")] = "",
    page_size: Annotated[int, typer.Option()] = 50,
) -> None:
    """Replies in a collection."""
    reply = call(
        "replies",
        _replies(),
        "ListReplies",
        replies_pb2.ListRepliesRequest(
            collection_id=collection, channel_id=channel, page_size=page_size
        ),
    )
    emit(api.to_dict(reply)["replies"], ["reply_id", "shortcut", "title", "tags", "usage_count"])


@app.command("search")
def replies_search(
    query: Annotated[str, typer.Argument(help="Text or /shortcut.")],
    channel: Annotated[str, typer.Option(help="Conversation's channel.")] = "",
    page_size: Annotated[int, typer.Option()] = 20,
) -> None:
    """Search visible replies (shortcut above title above body)."""
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


@app.command("get")
def replies_get(reply_id: Annotated[str, typer.Argument(help="Reply id.")]) -> None:
    """One saved reply."""
    emit(call("replies", _replies(), "GetReply", replies_pb2.GetReplyRequest(reply_id=reply_id)))


@app.command("render")
def replies_render(
    reply_id: Annotated[str, typer.Argument(help="Reply id.")],
    contact: Annotated[str, typer.Option(help="Contact whose attributes fill placeholders.")] = "",
    channel: Annotated[str, typer.Option(help="Conversation's channel.")] = "",
) -> None:
    """Render a reply for a contact (placeholders filled, fallbacks applied)."""
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
