"""``inboxctl contacts``: contact attributes and contact cards (contacts gRPC)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import grpc
import typer
from inbox.contacts.v1 import contacts_pb2, contacts_pb2_grpc

from inbox_cli import api
from inbox_cli.output import STATE, call, emit

app = typer.Typer(
    help="Contact attributes and contact cards (contacts gRPC).", no_args_is_help=True
)


def _contacts() -> Callable[[grpc.Channel], Any]:
    return contacts_pb2_grpc.ContactsServiceStub


def _definitions() -> Any:
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


@app.command("attributes")
def contacts_attributes() -> None:
    """List the org's attribute definitions in the admin's order."""
    _emit_definitions(_definitions())


@app.command("reorder")
def contacts_reorder(
    keys: Annotated[list[str], typer.Argument(help="Attribute keys in the new order.")],
) -> None:
    """Submit a new attribute order (admin). Keys not named keep their relative order after."""
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


@app.command("enable")
def contacts_enable(key: Annotated[str, typer.Argument(help="Attribute key.")]) -> None:
    """Show an attribute on the contact card (admin)."""
    _toggle(key, True)


@app.command("disable")
def contacts_disable(key: Annotated[str, typer.Argument(help="Attribute key.")]) -> None:
    """Hide an attribute from the contact card (admin)."""
    _toggle(key, False)


@app.command("create-attribute")
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
    kind = contacts_pb2.AttributeType.Value(f"ATTRIBUTE_TYPE_{type_.upper()}")
    request = contacts_pb2.CreateAttributeDefinitionRequest(
        key=key, label=label, type=kind, options=option or [], enabled=not disabled
    )
    emit(call("contacts", _contacts(), "CreateAttributeDefinition", request))


@app.command("card")
def contacts_card(contact: Annotated[str, typer.Argument(help="Contact id.")]) -> None:
    """The contact card: enabled attributes in the admin's order, with labels and values."""
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


@app.command("get")
def contacts_get(contacts: Annotated[list[str], typer.Argument(help="Contact ids.")]) -> None:
    """Contacts by id (all attributes, enabled or not)."""
    reply = call(
        "contacts",
        _contacts(),
        "BatchGetContacts",
        contacts_pb2.BatchGetContactsRequest(contact_ids=contacts),
    )
    emit(api.to_dict(reply)["contacts"], ["contact_id", "attributes", "identities", "updated_at"])


@app.command("find")
def contacts_find(
    channel: Annotated[str, typer.Argument(help="Channel, e.g. whatsapp.")],
    handle: Annotated[str, typer.Argument(help="Handle on that channel.")],
) -> None:
    """Find a contact by channel identity."""
    emit(
        call(
            "contacts",
            _contacts(),
            "FindContactByIdentity",
            contacts_pb2.FindContactByIdentityRequest(channel=channel, handle=handle),
        )
    )
