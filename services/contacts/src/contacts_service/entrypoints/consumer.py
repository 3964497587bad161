"""Kafka consumer of ``inbox.contacts.v1``: batches of profile updates → ProfileIngestion.

Runs on the kit's ``BatchConsumer`` (group ``contacts``), so a batch of records costs a
handful of database round trips and follows the kit's conventions: at least once (offsets
committed after the batch is stored, announced on ``inbox.contacts.changes.v1`` and
dead-lettered — so a crash in between replays the batch, announcements included); malformed
or invalid messages are copied unchanged to ``inbox.contacts.v1.dlq`` with the reason in
``x-dlq-*`` headers (invalid ones at once: a validation error will not go away by retrying);
infrastructure failures are retried until they succeed — never dead-lettered.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError
from inbox_contracts import CloudEvent, EventData
from inbox_contracts.events import ContactProfileUpserted, ContactsChanged
from inbox_contracts.topics import CONTACT_CHANGES, CONTACTS
from inbox_kit.batch_consumer import Batch, BatchConsumer, Record
from inbox_kit.inbound import InboundDecoder
from inbox_kit.kafka import (
    DeadLetters,
    EventPublisher,
    PartitionedPublish,
    RawPublish,
    RetryPolicy,
    cloudevent_headers,
)
from pymongo.errors import ConnectionFailure

from contacts_service.service_layer.contacts import ProfileIngestion, RawProfile

#: Outages and load: never the message's fault, retried until they pass.
_POLICY = RetryPolicy(transient=(ConnectionFailure, KafkaError, OSError, asyncio.TimeoutError))
is_transient = _POLICY.is_transient


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
        publish: RawPublish,
        repartition: PartitionedPublish | None = None,
        decoder: InboundDecoder | None = None,
        max_batch: int = 500,
        offset_reset: str = "earliest",
    ) -> None:
        """``publish`` sends dead letters and change notices (the process's ``EventPublisher``
        in production); ``repartition`` forwards misplaced profiles (``inbox_kit.repartition``)."""
        self._ingestion = ingestion
        self._publish = publish
        self.loop = BatchConsumer(
            name="profiles",
            bootstrap=bootstrap_servers,
            topics=[CONTACTS.name],
            group_id=group_id,
            handler=self.handle,
            dead_letters=DeadLetters(publish, group_id),
            max_records=max_batch,
            policy=_POLICY,
            initial_offset=offset_reset,
            consumer_options={"max_partition_fetch_bytes": 4 * 1024 * 1024},
            decoder=decoder,
            repartition=repartition,
        )

    @classmethod
    def over(
        cls, publisher: EventPublisher, ingestion: ProfileIngestion, **options: Any
    ) -> ProfileConsumer:
        """A consumer that publishes and repartitions through ``publisher``."""
        return cls(
            ingestion, publish=publisher.publish_raw, repartition=publisher.publish_raw, **options
        )

    async def ready(self, timeout: float = 30.0) -> None:
        """Partitions assigned and their positions resolved."""
        await self.loop.ready(timeout)

    async def run(self) -> None:
        await self.loop.run()

    async def handle(self, batch: Batch) -> list[tuple[Record, Exception]]:
        """Store and announce the valid profiles; return the refused records with the reason."""
        profiles: list[RawProfile] = []
        sources: list[Record] = []
        refused: list[tuple[Record, Exception]] = []
        for record, event in batch:
            try:
                profiles.append(to_raw_profile(event))
                sources.append(record)
            except PermanentError as exc:
                refused.append((record, exc))
        result = await self._ingestion.ingest(profiles)
        await asyncio.gather(
            *(
                self._publish(
                    CONTACT_CHANGES.name,
                    notice.to_json_bytes(),
                    notice.key,
                    cloudevent_headers(notice.type, notice.id),
                )
                for notice in change_notices(result.changed)
            )
        )
        refused += [(sources[i], PermanentError(reason)) for i, reason in result.rejected.items()]
        return refused
