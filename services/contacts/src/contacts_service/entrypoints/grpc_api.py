"""gRPC servicer: translate protobuf ↔ domain, call a handler, translate back. Thin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from inbox.contacts.v1 import contacts_pb2 as pb
from inbox.contacts.v1 import contacts_pb2_grpc as pb_grpc
from inbox_kit.auth import current_principal
from inbox_kit.errors import InvalidArgument

from contacts_service.domain.attributes import (
    AttributeDefinition,
    AttributeType,
    Definitions,
    Value,
    display,
)
from contacts_service.domain.contact import Contact
from contacts_service.service_layer.contacts import ContactsService
from contacts_service.service_layer.definitions import DefinitionsService

SERVICE_NAME = "inbox.contacts.v1.ContactsService"

_TYPE_TO_PB: dict[AttributeType, int] = {
    AttributeType.TEXT: pb.ATTRIBUTE_TYPE_TEXT,
    AttributeType.NUMBER: pb.ATTRIBUTE_TYPE_NUMBER,
    AttributeType.EMAIL: pb.ATTRIBUTE_TYPE_EMAIL,
    AttributeType.PHONE: pb.ATTRIBUTE_TYPE_PHONE,
    AttributeType.URL: pb.ATTRIBUTE_TYPE_URL,
    AttributeType.DATE: pb.ATTRIBUTE_TYPE_DATE,
    AttributeType.BOOLEAN: pb.ATTRIBUTE_TYPE_BOOLEAN,
    AttributeType.LIST: pb.ATTRIBUTE_TYPE_LIST,
}
_PB_TO_TYPE = {v: k for k, v in _TYPE_TO_PB.items()}

Context = grpc.aio.ServicerContext[Any, Any]


def _value_pb(value: Value) -> pb.AttributeValue:
    if isinstance(value, bool):
        return pb.AttributeValue(bool_value=value, display=display(value))
    if isinstance(value, float | int):
        return pb.AttributeValue(number_value=float(value), display=display(value))
    return pb.AttributeValue(text_value=value, display=value)


def _timestamp(micros: int) -> Timestamp:
    return Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def _identities_pb(contact: Contact) -> list[pb.ChannelIdentity]:
    return [pb.ChannelIdentity(channel=i.channel, handle=i.handle) for i in contact.identities]


def contact_pb(contact: Contact, definitions: Definitions) -> pb.Contact:
    values: Mapping[str, Value] = contact.values(definitions)
    return pb.Contact(
        contact_id=contact.contact_id,
        attributes={k: _value_pb(v) for k, v in values.items()},
        identities=_identities_pb(contact),
        updated_at=_timestamp(contact.updated_micros),
    )


def definition_pb(definition: AttributeDefinition, position: int) -> pb.AttributeDefinition:
    return pb.AttributeDefinition(
        key=definition.key,
        label=definition.label,
        type=_TYPE_TO_PB[definition.type],  # type: ignore[arg-type]
        options=list(definition.options),
        enabled=definition.enabled,
        position=position,
        built_in=definition.built_in,
    )


def definitions_pb(definitions: Definitions) -> pb.ListAttributeDefinitionsResponse:
    return pb.ListAttributeDefinitionsResponse(
        definitions=[definition_pb(d, i) for i, d in enumerate(definitions.items)],
        version=definitions.version,
    )


class ContactsServicer(pb_grpc.ContactsServiceServicer):
    def __init__(self, contacts: ContactsService, definitions: DefinitionsService) -> None:
        self._contacts = contacts
        self._definitions = definitions

    async def BatchGetContacts(
        self, request: pb.BatchGetContactsRequest, context: Context
    ) -> pb.BatchGetContactsResponse:
        contacts, definitions = await self._contacts.batch_get(
            current_principal(), list(request.contact_ids)
        )
        return pb.BatchGetContactsResponse(contacts=[contact_pb(c, definitions) for c in contacts])

    async def GetContact(self, request: pb.GetContactRequest, context: Context) -> pb.Contact:
        contact, definitions = await self._contacts.get(current_principal(), request.contact_id)
        return contact_pb(contact, definitions)

    async def GetContactCard(
        self, request: pb.GetContactCardRequest, context: Context
    ) -> pb.ContactCard:
        card = await self._contacts.card(current_principal(), request.contact_id)
        fields = [
            pb.ContactCardField(
                key=f.definition.key,
                label=f.definition.label,
                type=_TYPE_TO_PB[f.definition.type],  # type: ignore[arg-type]
                has_value=True,
                value=_value_pb(f.value),
            )
            if f.value is not None
            else pb.ContactCardField(
                key=f.definition.key,
                label=f.definition.label,
                type=_TYPE_TO_PB[f.definition.type],  # type: ignore[arg-type]
                has_value=False,
            )
            for f in card.fields
        ]
        return pb.ContactCard(
            contact_id=card.contact.contact_id,
            fields=fields,
            identities=_identities_pb(card.contact),
            updated_at=_timestamp(card.contact.updated_micros),
            definitions_version=card.definitions_version,
        )

    async def FindContactByIdentity(
        self, request: pb.FindContactByIdentityRequest, context: Context
    ) -> pb.Contact:
        contact, definitions = await self._contacts.find_by_identity(
            current_principal(), request.channel, request.handle
        )
        return contact_pb(contact, definitions)

    async def ListAttributeDefinitions(
        self, request: pb.ListAttributeDefinitionsRequest, context: Context
    ) -> pb.ListAttributeDefinitionsResponse:
        return definitions_pb(await self._definitions.list(current_principal()))

    async def CreateAttributeDefinition(
        self, request: pb.CreateAttributeDefinitionRequest, context: Context
    ) -> pb.AttributeDefinition:
        principal = current_principal()
        principal.require_admin()
        type_ = _PB_TO_TYPE.get(request.type)
        if type_ is None:
            raise InvalidArgument("type", "must be an ATTRIBUTE_TYPE_* value, not UNSPECIFIED")
        definitions, created = await self._definitions.create(
            principal,
            key=request.key,
            label=request.label,
            type_=type_,
            options=list(request.options),
            enabled=request.enabled if request.HasField("enabled") else True,
        )
        return definition_pb(created, definitions.items.index(created))

    async def UpdateAttributeDefinition(
        self, request: pb.UpdateAttributeDefinitionRequest, context: Context
    ) -> pb.AttributeDefinition:
        if request.expected_version < 0:
            raise InvalidArgument("expected_version", "must not be negative")
        definitions, updated = await self._definitions.update(
            current_principal(),
            key=request.key,
            label=request.label if request.HasField("label") else None,
            enabled=request.enabled if request.HasField("enabled") else None,
            options=list(request.options) if request.update_options else None,
            expected_version=request.expected_version,
        )
        return definition_pb(updated, definitions.items.index(updated))

    async def DeleteAttributeDefinition(
        self, request: pb.DeleteAttributeDefinitionRequest, context: Context
    ) -> pb.DeleteAttributeDefinitionResponse:
        if request.expected_version < 0:
            raise InvalidArgument("expected_version", "must not be negative")
        definitions = await self._definitions.delete(
            current_principal(), key=request.key, expected_version=request.expected_version
        )
        return pb.DeleteAttributeDefinitionResponse(version=definitions.version)

    async def ReorderAttributeDefinitions(
        self, request: pb.ReorderAttributeDefinitionsRequest, context: Context
    ) -> pb.ListAttributeDefinitionsResponse:
        principal = current_principal()
        principal.require_admin()
        if request.expected_version < 0:
            raise InvalidArgument("expected_version", "must not be negative")
        if not request.keys:
            raise InvalidArgument("keys", "must list every attribute key in the new order")
        definitions = await self._definitions.reorder(
            principal, keys=list(request.keys), expected_version=request.expected_version
        )
        return definitions_pb(definitions)
