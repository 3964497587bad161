"""``inbox_kit.timestamps`` gives exactly what protobuf's ``FromDatetime`` gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from inbox_kit.timestamps import set_timestamp, timestamp

_RANGE = {"min_value": datetime(1, 1, 2), "max_value": datetime(9999, 12, 30)}


def _reference(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


@given(
    st.datetimes(**_RANGE),
    st.sampled_from(
        [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
def test_same_as_from_datetime(value: datetime, tz: timezone | None) -> None:
    dated = value if tz is None else value.replace(tzinfo=tz)
    assert timestamp(dated) == _reference(dated)


def test_before_the_epoch_nanos_stay_positive() -> None:
    value = datetime(1969, 12, 31, 23, 59, 59, 250_000, tzinfo=UTC)
    ts = Timestamp()
    set_timestamp(ts, value)
    assert (ts.seconds, ts.nanos) == (-1, 250_000_000)
    assert ts.ToDatetime(tzinfo=UTC) == value
