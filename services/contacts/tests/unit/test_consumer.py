from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from contacts_service.entrypoints.consumer import ProfileConsumer
from contacts_service.service_layer.contacts import RawProfile
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactProfileUpserted
from inbox_kit.kafka import H_ERROR, DeadLetters


def record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="inbox.contacts.v1",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def profile(contact_id: str) -> bytes:
    data = ContactProfileUpserted(
        org_id="org", contact_id=contact_id, occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return CloudEvent.wrap(data, source="/tests").to_json_bytes()


class FakeIngestion:
    """Stores profiles; a batch containing contact ``poison`` fails (a non-transient bug)."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    async def ingest(self, profiles: Sequence[RawProfile]) -> dict[int, str]:
        if any(p.contact_id == "poison" for p in profiles):
            raise ValueError("cannot store this one")
        rejected = {i: "bad" for i, p in enumerate(profiles) if p.contact_id == "invalid"}
        self.stored += [p.contact_id for i, p in enumerate(profiles) if i not in rejected]
        return rejected


async def test_a_batch_failing_for_a_non_transient_reason_is_isolated_record_by_record() -> None:
    sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        sent.append((topic, value, headers))

    ingestion = FakeIngestion()
    consumer = ProfileConsumer(ingestion, bootstrap_servers="unused", group_id="g")  # type: ignore[arg-type]
    records = [
        record(0, profile("a")),
        record(1, profile("poison")),
        record(2, b"{not json"),
        record(3, profile("invalid")),
        record(4, profile("b")),
    ]
    await consumer._process_until_done(records, DeadLetters(publish, "g"))
    assert ingestion.stored == ["a", "b"]
    assert [(t, v) for t, v, _ in sent] == [
        ("inbox.contacts.v1.dlq", records[1].value),
        ("inbox.contacts.v1.dlq", records[2].value),
        ("inbox.contacts.v1.dlq", records[3].value),
    ]
    assert sent[0][2][H_ERROR] == "cannot store this one"
    assert sent[2][2][H_ERROR] == "bad"


def test_lock_contention_and_outages_are_transient_but_bugs_are_not() -> None:
    from contacts_service.entrypoints.consumer import is_transient
    from pymongo.errors import AutoReconnect, BulkWriteError, OperationFailure

    assert is_transient(AutoReconnect("down"))
    assert is_transient(OperationFailure("database is locked (5) (SQLITE_BUSY)"))
    locked = {"writeErrors": [{"index": 0, "code": 1, "errmsg": "database is locked"}]}
    assert is_transient(BulkWriteError(locked))
    assert not is_transient(BulkWriteError({"writeErrors": [{"index": 0, "code": 2}]}))
    assert not is_transient(ValueError("bug"))
