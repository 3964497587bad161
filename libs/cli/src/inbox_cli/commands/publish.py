"""``inboxctl publish``: publish events to Kafka as a channel ingestor / the inbox app would."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

import typer

from inbox_cli import api
from inbox_cli.output import STATE, emit, err

app = typer.Typer(
    help="Publish events to Kafka as a channel ingestor / the inbox app would.",
    no_args_is_help=True,
)


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


@app.command("inbound")
def publish_inbound(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
    contact: Annotated[str, typer.Option(help="Contact who wrote.")] = "contact-1",
    channel: Annotated[str, typer.Option(help="Channel it came in on.")] = "channel-1",
    occurred_at: OccurredAt = None,
) -> None:
    """A customer wrote: InboundMessageReceived on inbox.messages.v1 (→ NEW)."""
    _publish(api.inbound(STATE.org, conversation, contact, channel, occurred_at=_when(occurred_at)))


@app.command("outbound")
def publish_outbound(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
    channel: Annotated[str, typer.Option(help="Channel.")] = "channel-1",
    occurred_at: OccurredAt = None,
) -> None:
    """The agent (--agent) replied: OutboundMessageSent (NEW → PENDING)."""
    _publish(
        api.outbound(STATE.org, conversation, STATE.agent, channel, occurred_at=_when(occurred_at))
    )


@app.command("assign")
def publish_assign(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
    assignee: Annotated[str, typer.Argument(help="Agent to assign it to.")],
    occurred_at: OccurredAt = None,
) -> None:
    """Assign by hand (as the inbox app): ConversationAssigned on inbox.conversations.v1."""
    _publish(
        api.assigned(STATE.org, conversation, assignee, STATE.agent, occurred_at=_when(occurred_at))
    )


@app.command("unassign")
def publish_unassign(conversation: Annotated[str, typer.Argument(help="Conversation id.")]) -> None:
    """Unassign by hand: ConversationUnassigned."""
    _publish(api.unassigned(STATE.org, conversation, STATE.agent))


@app.command("resolve")
def publish_resolve(conversation: Annotated[str, typer.Argument(help="Conversation id.")]) -> None:
    """Resolve: ConversationResolved (→ RESOLVED, assignee removed)."""
    _publish(api.resolved(STATE.org, conversation, STATE.agent))


@app.command("follow-up")
def publish_follow_up(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
) -> None:
    """A boomerang fired: FollowUpDue (PENDING/RESOLVED → NEW)."""
    _publish(api.follow_up_due(STATE.org, conversation))


@app.command("contact")
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
