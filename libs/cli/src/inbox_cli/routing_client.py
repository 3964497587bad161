"""Calls to the routing service's gRPC API, shared by ``inboxctl routing`` and the demo.

Results are normalised to plain dicts (``queue`` is ``NEW``/``PENDING``/``RESOLVED``,
``assignee_id`` is ``""`` when unassigned), so callers do not depend on message layouts.
The request/response messages are found through the proto descriptors of
``inbox.routing.v1.RoutingService`` by their documented field names.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from inbox_cli import api

_QUEUE_PREFIXES = ("CONVERSATION_QUEUE_", "QUEUE_")


def _service() -> Any:
    from inbox.routing.v1 import routing_pb2  # type: ignore[import-not-found,unused-ignore]

    services = routing_pb2.DESCRIPTOR.services_by_name
    return next(iter(services.values()))


def _method(*candidates: str, contains: tuple[str, ...] = ()) -> MethodDescriptor:
    service = _service()
    methods = service.methods_by_name
    for name in candidates:
        if name in methods:
            return methods[name]  # type: ignore[no-any-return]
    for name, method in methods.items():
        if contains and all(part in name for part in contains):
            return method  # type: ignore[no-any-return]
    raise ImportError(
        f"{service.full_name} has none of {candidates or contains}: {sorted(methods)}"
    )


def _request(method: MethodDescriptor) -> Message:
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(method.input_type)
    return cls()


async def _call(stub: Any, method: MethodDescriptor, request: Message, metadata: Any) -> Any:
    return await getattr(stub, method.name)(request, metadata=metadata, timeout=10)


def _setting_field(message: Message) -> tuple[Message, Any] | None:
    """The bool field of the remove-assignment setting, possibly inside a nested message."""
    for fd in message.DESCRIPTOR.fields:
        if fd.type == FieldDescriptor.TYPE_BOOL and "remove_assignment" in fd.name:
            return message, fd
    for fd in message.DESCRIPTOR.fields:
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not _is_repeated(fd):
            nested = getattr(message, fd.name)
            if nested.DESCRIPTOR.full_name.startswith("google.protobuf."):
                continue
            found = _setting_field(nested)
            if found is not None:
                return found
    return None


def _is_repeated(fd: Any) -> bool:
    repeated = getattr(fd, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(fd.label == FieldDescriptor.LABEL_REPEATED)


def settings_dict(reply: Message) -> dict[str, Any]:
    return api.to_dict(reply)


async def get_settings(stub: Any, metadata: Any) -> Message:
    method = _method("GetRoutingSettings", "GetSettings", contains=("Get", "Settings"))
    return await _call(stub, method, _request(method), metadata)  # type: ignore[no-any-return]


async def get_remove_assignment(stub: Any, metadata: Any) -> bool:
    reply = await get_settings(stub, metadata)
    found = _setting_field(reply)
    if found is None:
        raise ImportError(f"no remove_assignment field in {reply.DESCRIPTOR.full_name}")
    message, fd = found
    return bool(getattr(message, fd.name))


async def set_remove_assignment(stub: Any, metadata: Any, enabled: bool) -> bool:
    method = _method(
        "UpdateRoutingSettings",
        "SetRoutingSettings",
        "UpdateSettings",
        contains=("Settings",),
    )
    if method.name.startswith("Get"):
        method = next(
            m for n, m in _service().methods_by_name.items() if "Settings" in n and n != method.name
        )
    request = _request(method)
    found = _setting_field(request)
    if found is None:
        raise ImportError(f"no remove_assignment field in {request.DESCRIPTOR.full_name}")
    message, fd = found
    setattr(message, fd.name, enabled)
    # A field mask, if the update takes one, names the setting (relative to the settings).
    for top in request.DESCRIPTOR.fields:
        if top.message_type is not None and top.message_type.full_name == (
            "google.protobuf.FieldMask"
        ):
            getattr(request, top.name).paths.append(fd.name)
    reply = await _call(stub, method, request, metadata)
    after = _setting_field(reply)
    if after is None:
        return await get_remove_assignment(stub, metadata)
    m, f = after
    return bool(getattr(m, f.name))


def _normalise_conversation(data: dict[str, Any]) -> dict[str, Any]:
    if "conversation" in data and isinstance(data["conversation"], dict):
        data = data["conversation"]
    queue = str(data.get("queue", ""))
    for prefix in _QUEUE_PREFIXES:
        queue = queue.removeprefix(prefix)
    assignee = data.get("assignee_id", data.get("assignee_agent_id", data.get("assignee", "")))
    return {**data, "queue": queue, "assignee_id": assignee or ""}


async def get_conversation(stub: Any, metadata: Any, conversation_id: str) -> dict[str, Any]:
    method = _method("GetConversation", contains=("Get", "Conversation"))
    request = _request(method)
    request.conversation_id = conversation_id  # type: ignore[attr-defined]
    reply = await _call(stub, method, request, metadata)
    return _normalise_conversation(api.to_dict(reply))


async def get_audit_trail(stub: Any, metadata: Any, conversation_id: str) -> list[dict[str, Any]]:
    method = _method(
        "GetAuditTrail",
        "ListAuditTrail",
        "ListAuditEntries",
        "ListAuditEvents",
        contains=("Audit",),
    )
    request = _request(method)
    request.conversation_id = conversation_id  # type: ignore[attr-defined]
    if "page_size" in request.DESCRIPTOR.fields_by_name:
        request.page_size = 100  # type: ignore[attr-defined]
    reply = await _call(stub, method, request, metadata)
    data = api.to_dict(reply)
    for value in data.values():
        if isinstance(value, list):
            return value
    return []


def describe_audit_entry(entry: dict[str, Any]) -> str:
    """One readable line per audit entry, whatever its exact field names."""
    when = next((str(v) for k, v in entry.items() if k.endswith("_at") or k == "time"), "")
    rest = {
        k: v
        for k, v in entry.items()
        if v not in ("", None, [], {})
        and not str(v).endswith("_UNSPECIFIED")
        and not (k.endswith("_at") or k == "time")
    }
    return f"{when}  " + "  ".join(
        f"{k}={api.to_dict(v) if isinstance(v, Message) else v}" for k, v in rest.items()
    )
