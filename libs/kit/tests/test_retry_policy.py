"""Unit tests: which failures are outages (redeliver) and which are the message's fault."""

from __future__ import annotations

import pytest
from inbox_kit.kafka import RetryPolicy
from pymongo.errors import AutoReconnect, BulkWriteError, DuplicateKeyError, OperationFailure


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("primary went away"),
        OperationFailure("database is locked (5) (SQLITE_BUSY)", code=1),
        BulkWriteError({"writeErrors": [{"index": 0, "code": 1, "errmsg": "database is locked"}]}),
        TimeoutError(),
    ],
)
def test_outages_are_transient(error: BaseException) -> None:
    assert RetryPolicy().is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        OperationFailure("unknown operator", code=2),
        DuplicateKeyError("x"),
        BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000"}]}),
    ],
)
def test_message_faults_are_not_transient(error: BaseException) -> None:
    assert not RetryPolicy().is_transient(error)
