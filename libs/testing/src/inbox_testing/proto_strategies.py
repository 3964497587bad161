"""Hypothesis strategies for any protobuf request, generated from its descriptor.

Fields are filled (or left unset) with values a careless integrator or an attacker would send:
empty, whitespace, control characters, very long text, huge or negative numbers, unknown enum
numbers, out-of-range timestamps, malformed page tokens — mixed with ``known`` strings (ids
that exist, so calls reach past validation) given by the caller.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

MAX_DEPTH = 3

HOSTILE_TEXT: tuple[str, ...] = (
    "",
    " ",
    "²",
    "9" * 5000,
    base64.urlsafe_b64encode(b"[" * 50_000).decode(),
    base64.urlsafe_b64encode(b'{"o": -1}').decode(),
    "\x00",
    "a\x00b",
    "\n\t",
    "%%%",
    "../../etc/passwd",
    "{{contact.first_name",
    '{{contact.x | fallback: "',
    "$where",
    '{"$gt": ""}',
    "🙂" * 300,
    "x" * 201,
    "x" * 257,
    "x" * 2001,
)
EDGE_INTS: tuple[int, ...] = (0, 1, -1, 2, 100, 101, 500, 501, 2**31 - 1, -(2**31))
EDGE_INT64: tuple[int, ...] = (*EDGE_INTS, 2**63 - 1, -(2**63), 253402300800, -62135596801)

_INT_RANGES: dict[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _text(known: Sequence[str]) -> st.SearchStrategy[str]:
    options: list[st.SearchStrategy[str]] = [
        st.sampled_from(HOSTILE_TEXT),
        st.text(max_size=40),
        st.text(min_size=150, max_size=300),
    ]
    if known:
        options.insert(0, st.sampled_from(list(known)))
    return st.one_of(options)


def _integer(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field.type]
    edges = [v for v in EDGE_INT64 if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _scalar(field: FieldDescriptor, known: Sequence[str]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _text(known)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-3, 1000))
    return _integer(field)


def _value(field: FieldDescriptor, known: Sequence[str], depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return message_strategy(field.message_type, known, depth + 1)
    return _scalar(field, known)


def _field(field: FieldDescriptor, known: Sequence[str], depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        return st.dictionaries(
            _scalar(key_field, known), _value(value_field, known, depth), max_size=4
        )
    if field.is_repeated:
        element = _value(field, known, depth)
        small = st.lists(element, max_size=3)
        if depth:
            return small
        # over the per-call limits (100, 500): one value repeated, cheap to generate
        big = st.tuples(element, st.sampled_from([101, 501])).map(lambda p: [p[0]] * p[1])
        return st.one_of(small, small, big)
    return _value(field, known, depth)


def _build(cls: type[Message]) -> Callable[[dict[str, Any]], Message]:
    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        for name, value in values.items():
            field = msg.DESCRIPTOR.fields_by_name[name]
            target = getattr(msg, name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                is_message = field.message_type.fields_by_name["value"].message_type is not None
                for k, v in value.items():
                    if is_message:
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif field.is_repeated:
                if field.message_type is not None:
                    for v in value:
                        target.add().CopyFrom(v)
                else:
                    target.extend(value)
            elif field.message_type is not None:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return build


def message_strategy(
    descriptor: Descriptor, known: Sequence[str] = (), depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type with any subset of fields set."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth >= MAX_DEPTH:
        return st.just(cls())
    optional = {f.name: _field(f, known, depth) for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=optional).map(_build(cls))
