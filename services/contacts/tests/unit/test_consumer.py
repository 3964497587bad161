from collections.abc import Sequence
from datetime import UTC, datetime

from contacts_service.entrypoints.consumer import ProfileConsumer, change_notices
from contacts_service.service_layer.contacts import IngestResult, RawProfile
from inbox_contracts import CloudEvent, decode
from inbox_contracts.events import ContactProfileUpserted, ContactsChanged
from inbox_kit.batch_consumer import Record
from inbox_kit.kafka import H_ERROR
from inbox_testing import consumer_record


def record(offset: int, value: bytes) -> Record:
    return consumer_record("inbox.contacts.v1", value, offset=offset)


def profile(contact_id: str) -> bytes:
    data = ContactProfileUpserted(
        org_id="org", contact_id=contact_id, occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return CloudEvent.wrap(data, source="/tests").to_json_bytes()


class FakeIngestion:
    """Stores profiles; a batch containing contact ``poison`` fails (a non-transient bug)."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    async def ingest(self, profiles: Sequence[RawProfile]) -> IngestResult:
        if any(p.contact_id == "poison" for p in profiles):
            raise ValueError("cannot store this one")
        rejected = {i: "bad" for i, p in enumerate(profiles) if p.contact_id == "invalid"}
        stored = [p.contact_id for i, p in enumerate(profiles) if i not in rejected]
        self.stored += stored
        return IngestResult(rejected, {"org": stored} if stored else {})


async def test_a_batch_failing_for_a_non_transient_reason_is_isolated_record_by_record() -> None:
    sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        sent.append((topic, value, headers))

    ingestion = FakeIngestion()
    consumer = ProfileConsumer(
        ingestion,  # type: ignore[arg-type]
        bootstrap_servers="unused",
        group_id="g",
        publish=publish,
    )
    records = [
        record(0, profile("a")),
        record(1, profile("poison")),
        record(2, b"{not json"),
        record(3, profile("invalid")),
        record(4, profile("b")),
    ]
    await consumer.loop.process(records)
    assert ingestion.stored == ["a", "b"]
    dead = [(t, v, h) for t, v, h in sent if t.endswith(".dlq")]
    assert [(t, v) for t, v, _ in dead] == [
        ("inbox.contacts.v1.dlq", records[1].value),
        ("inbox.contacts.v1.dlq", records[2].value),
        ("inbox.contacts.v1.dlq", records[3].value),
    ]
    assert dead[0][2][H_ERROR] == "cannot store this one"
    assert dead[2][2][H_ERROR] == "bad"
    # Every stored contact was announced, and nothing else.
    announced = [decode(v).data for t, v, _ in sent if t == "inbox.contacts.changes.v1"]
    assert all(isinstance(n, ContactsChanged) and n.org_id == "org" for n in announced)
    assert sorted(c for n in announced for c in n.contact_ids) == ["a", "b"]  # type: ignore[attr-defined]


def test_change_notices_name_at_most_1000_contacts_each_and_one_org_each() -> None:
    notices = change_notices({"org-a": [f"c{i}" for i in range(2500)], "org-b": ["x"]})
    assert [(n.data.org_id, len(n.data.contact_ids)) for n in notices] == [
        ("org-a", 1000),
        ("org-a", 1000),
        ("org-a", 500),
        ("org-b", 1),
    ]
    assert [c for n in notices[:3] for c in n.data.contact_ids] == [f"c{i}" for i in range(2500)]
    assert all(n.key == n.data.org_id.encode() for n in notices)


def test_lock_contention_and_outages_are_transient_but_bugs_are_not() -> None:
    from contacts_service.entrypoints.consumer import is_transient
    from pymongo.errors import AutoReconnect, BulkWriteError, OperationFailure

    assert is_transient(AutoReconnect("down"))
    assert is_transient(OperationFailure("database is locked (5) (SQLITE_BUSY)"))
    locked = {"writeErrors": [{"index": 0, "code": 1, "errmsg": "database is locked"}]}
    assert is_transient(BulkWriteError(locked))
    assert not is_transient(BulkWriteError({"writeErrors": [{"index": 0, "code": 2}]}))
    assert not is_transient(ValueError("bug"))
