"""The contacts port over gRPC: ``inbox.contacts.v1.ContactsService/BatchGetContacts``.

The calling agent's own (verified) bearer token is forwarded, so the contacts service applies
its own org scoping: a contact of another org is simply absent. The channel follows the kit's
client conventions (``inbox_kit.grpc_client``): round_robin over the addresses of
``REPLIES_CONTACTS_ADDRESS`` (``dns:///contacts-headless:7063`` in Kubernetes), retries of this
idempotent read on UNAVAILABLE, and a timeout that never outlives the incoming call's deadline.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from inbox.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from inbox_kit.auth import Principal
from inbox_kit.errors import FailedPrecondition
from inbox_kit.grpc_client import insecure_channel, outgoing_timeout

CONTACTS_SERVICE = "inbox.contacts.v1.ContactsService"


def display_value(value: contacts_pb2.AttributeValue) -> str:
    if value.display:
        return value.display
    kind = value.WhichOneof("value")
    if kind == "text_value":
        return value.text_value
    if kind == "number_value":
        number = value.number_value
        return str(int(number)) if number.is_integer() else repr(number)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    return ""


class GrpcContactDirectory:
    def __init__(self, address: str, *, timeout_seconds: float = 2.0) -> None:
        self._address = address
        self._timeout = timeout_seconds
        self._channel: grpc.aio.Channel | None = None
        self._stub: contacts_pb2_grpc.ContactsServiceAsyncStub | None = None

    def _client(self) -> contacts_pb2_grpc.ContactsServiceAsyncStub:
        if self._stub is None:
            self._channel = insecure_channel(
                self._address, service=CONTACTS_SERVICE, idempotent_methods=["BatchGetContacts"]
            )
            self._stub = contacts_pb2_grpc.ContactsServiceStub(self._channel)
        return self._stub

    async def get_contact(self, contact_id: str, *, caller: Principal) -> Mapping[str, str] | None:
        try:
            response = await self._client().BatchGetContacts(
                contacts_pb2.BatchGetContactsRequest(contact_ids=[contact_id]),
                metadata=(("authorization", f"Bearer {caller.bearer_token}"),),
                timeout=outgoing_timeout(self._timeout),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND,):
                return None
            raise FailedPrecondition(
                f"contacts service unavailable for rendering: {exc.code().name}",
                reason="CONTACTS_UNAVAILABLE",
            ) from exc
        for contact in response.contacts:
            if contact.contact_id == contact_id:
                return {key: display_value(v) for key, v in contact.attributes.items()}
        return None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
