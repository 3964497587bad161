"""``google.protobuf.Timestamp`` from ``datetime`` without protobuf's pure-Python
``FromDatetime`` (a calendar round trip that costs about a quarter of a cheap call's handler).

Same result as ``Timestamp.FromDatetime``: an aware datetime at its UTC instant, a naive one
taken as UTC, microsecond precision, ``nanos`` always in 0..999,999,999.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def set_timestamp(target: Timestamp, value: datetime) -> None:
    """Write ``value`` into ``target`` (e.g. a response field: ``set_timestamp(r.expires_at,
    t)``, which also spares building and copying a separate message)."""
    delta = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = delta.microseconds * 1_000


def timestamp(value: datetime) -> Timestamp:
    """A new ``Timestamp`` of ``value``."""
    ts = Timestamp()
    set_timestamp(ts, value)
    return ts
