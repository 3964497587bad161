"""Kafka consumer of ``inbox.contacts.v1``: batches of profile updates → ProfileIngestion.

Own aiokafka loop (instead of the kit's one-message-at-a-time ``subscribe``) so a batch of
records costs a handful of database round trips. Same conventions as the kit: at least once
(offsets committed after the batch is stored, announced on ``inbox.contacts.changes.v1`` and
dead-lettered — so a crash in between replays the batch, announcements included), malformed
or invalid messages are copied unchanged to ``inbox.contacts.v1.dlq`` with the reason in
``x-dlq-*`` headers (immediately: a validation error will not go away by retrying), and
infrastructure failures are retried until they succeed — never dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import CommitFailedError, KafkaError
from inbox_contracts import CloudEvent, EventData, MalformedEvent, decode
from inbox_contracts.events import ContactProfileUpserted, ContactsChanged
from inbox_contracts.topics import CONTACT_CHANGES, CONTACTS
from inbox_kit.kafka import CONSUMED, DeadLetters, Outcome, RawPublish, RetryPolicy
from pymongo.errors import ConnectionFailure

from contacts_service.service_layer.contacts import ProfileIngestion, RawProfile

log = logging.getLogger(__name__)

#: Outages and load: never the message's fault, retried until they pass.
_POLICY = RetryPolicy(transient=(ConnectionFailure, KafkaError, OSError, asyncio.TimeoutError))
is_transient = _POLICY.is_transient


Record: TypeAlias = "ConsumerRecord[Any, Any]"


class PermanentError(ValueError):
    """The message can never be processed (wrong type on this topic, invalid value)."""


def to_raw_profile(event: CloudEvent[EventData]) -> RawProfile:
    data = event.data
    if not isinstance(data, ContactProfileUpserted):
        raise PermanentError(f"unexpected event type {event.type!r} on {CONTACTS.name}")
    return RawProfile(
        event_id=event.id,
        org_id=data.org_id,
        contact_id=data.contact_id,
        occurred_at=data.occurred_at,
        attributes=data.attributes,
        identities=tuple((i.channel, i.handle) for i in data.identities),
    )


#: Contacts named per ContactsChanged notice (the event's limit).
NOTICE_CHUNK = 1000


def change_notices(changed: dict[str, list[str]]) -> list[CloudEvent[ContactsChanged]]:
    """ContactsChanged events announcing ``changed`` (org → contact ids), ≤ 1,000 ids each."""
    now = datetime.now(UTC)
    return [
        CloudEvent.wrap(
            ContactsChanged(
                org_id=org_id,
                contact_ids=contact_ids[start : start + NOTICE_CHUNK],
                occurred_at=now,
            ),
            source="/contacts",
        )
        for org_id, contact_ids in changed.items()
        for start in range(0, len(contact_ids), NOTICE_CHUNK)
    ]


class ProfileConsumer:
    def __init__(
        self,
        ingestion: ProfileIngestion,
        *,
        bootstrap_servers: str,
        group_id: str,
        max_batch: int = 500,
        retry_backoff: float = 0.5,
        offset_reset: str = "earliest",
    ) -> None:
        self._offset_reset = offset_reset
        self._ingestion = ingestion
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._max_batch = max_batch
        self._retry_backoff = retry_backoff
        #: Set once partitions are assigned and their positions resolved.
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            CONTACTS.name,
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset=self._offset_reset,
            client_id=f"contacts-{self._group_id}",
            max_poll_records=self._max_batch,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            await consumer.start()
            try:
                publish = _raw_publish(producer)
                while True:
                    batches = await consumer.getmany(
                        timeout_ms=500 if self.ready.is_set() else 100,
                        max_records=self._max_batch,
                    )
                    if not self.ready.is_set() and consumer.assignment():
                        for tp in consumer.assignment():  # resolve positions before "ready"
                            await consumer.position(tp)
                        self.ready.set()
                    records = [r for batch in batches.values() for r in batch]
                    if not records:
                        continue
                    await self._process_until_done(records, publish)
                    try:
                        await consumer.commit()
                    except CommitFailedError:
                        log.warning("commit failed (rebalance); the batch will be redelivered")
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    async def _process_until_done(self, records: list[Record], publish: RawPublish) -> None:
        """Retry outages forever; if the batch fails for another reason, isolate the culprit:
        process record by record and dead-letter the ones that still fail."""
        dead_letters = DeadLetters(publish, self._group_id)
        try:
            await self._retrying(lambda: self.process(records, publish))
        except Exception:
            log.exception("batch failed; processing it record by record")
            for record in records:
                try:
                    await self._retrying(partial(self.process, [record], publish))
                except Exception as exc:
                    await self._retrying(partial(dead_letters.send, record, exc, 1))
                    CONSUMED.labels(record.topic, self._group_id, Outcome.DEAD_LETTERED).inc()

    async def _retrying(self, step: Callable[[], Awaitable[None]]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await step()
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("transient failure; retrying", exc_info=True)
                await asyncio.sleep(min(self._retry_backoff * attempt, 5.0))

    async def process(self, records: list[Record], publish: RawPublish) -> None:
        """Store and announce the valid records, dead-letter the rest. Idempotent."""
        profiles: list[RawProfile] = []
        sources: list[Record] = []
        failures: list[tuple[Record, BaseException]] = []
        for record in records:
            try:
                profiles.append(to_raw_profile(decode(record.value or b"")))
                sources.append(record)
            except (MalformedEvent, PermanentError) as exc:
                failures.append((record, exc))
        result = await self._ingestion.ingest(profiles)
        await asyncio.gather(
            *(
                publish(CONTACT_CHANGES.name, notice.to_json_bytes(), notice.key, {})
                for notice in change_notices(result.changed)
            )
        )
        for index, reason in sorted(result.rejected.items()):
            failures.append((sources[index], PermanentError(reason)))
        dead_letters = DeadLetters(publish, self._group_id)
        for record, error in failures:
            await dead_letters.send(record, error, attempts=1)
            CONSUMED.labels(record.topic, self._group_id, Outcome.DEAD_LETTERED).inc()
        processed = len(records) - len(failures)
        if processed:
            CONSUMED.labels(CONTACTS.name, self._group_id, Outcome.PROCESSED).inc(processed)


def _raw_publish(producer: AIOKafkaProducer) -> RawPublish:
    async def publish(topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        await producer.send_and_wait(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )

    return publish
