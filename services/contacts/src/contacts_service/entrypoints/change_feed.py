"""Reader of ``inbox.contacts.changes.v1`` that keeps this replica's contact cache fresh.

Every replica reads every partition (no consumer group: each needs all notices) from the end
as of its start — earlier changes are already in the database, which the empty cache reads
through to. Records are decoded by the kit's one inbound path (``inbox_kit.inbound``: both
CloudEvents modes, unknown fields ignored, no event time from the future). A notice it cannot
decode is **not dead-lettered** (every replica reads it; the topic has no dead-letter topic):
whatever it named is unknown, so this replica clears its whole card cache (counted in
``contacts_change_feed_undecodable_total``). The cache only turns on once the positions are
resolved and turns off whenever this loop stops (the runtime restarts it), see
``adapters.contact_cache``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from inbox_contracts.events import ContactsChanged
from inbox_contracts.topics import CONTACT_CHANGES
from inbox_kit.inbound import InboundDecoder, Undecodable
from prometheus_client import Counter, Gauge

from contacts_service.service_layer.ports import CardCacheControl

log = logging.getLogger(__name__)

#: Seconds without partitions before the feed says so (once) in the log.
NOT_READY_WARNING = 30.0


LAG = Gauge(
    "contacts_change_feed_lag_messages",
    "Change notices published but not yet applied to this replica's contact cache.",
)

UNDECODABLE = Counter(
    "contacts_change_feed_undecodable_total",
    "Change notices this replica could not decode (each cleared its contact cache).",
    ["reason"],
)


async def _lag(consumer: AIOKafkaConsumer) -> int:
    lag = 0
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)  # as of the last fetch response
        if highwater is not None:
            lag += max(0, highwater - await consumer.position(tp))
    return lag


class ChangeFeed:
    def __init__(
        self,
        cache: CardCacheControl,
        *,
        bootstrap_servers: str,
        decoder: InboundDecoder | None = None,
    ) -> None:
        self._cache = cache
        self._decoder = decoder or InboundDecoder()
        self._bootstrap = bootstrap_servers
        #: Set while the feed is positioned and the cache is on.
        self.ready = asyncio.Event()

    async def run(self) -> None:
        # Without a group, aiokafka assigns itself every partition of the topic; with no
        # committed offsets, "latest" starts each at its end.
        consumer = AIOKafkaConsumer(
            CONTACT_CHANGES.name,
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            client_id="contacts-change-feed",
        )
        await consumer.start()
        try:
            waiting_since = time.monotonic()
            while not self.ready.is_set():
                self._apply_all(await consumer.getmany(timeout_ms=100))  # harmless: cache off
                if waiting_since and time.monotonic() - waiting_since > NOT_READY_WARNING:
                    log.warning(
                        "contact cache still off: no partitions of %s assigned yet "
                        "(does the topic exist?)",
                        CONTACT_CHANGES.name,
                    )
                    waiting_since = 0.0
                if consumer.assignment():
                    for tp in consumer.assignment():
                        await consumer.position(tp)
                    self._cache.enable()
                    self.ready.set()
            log.info("contact cache on", extra={"partitions": len(consumer.assignment())})
            while True:
                self._apply_all(await consumer.getmany(timeout_ms=1000))
                LAG.set(await _lag(consumer))
        finally:
            self.ready.clear()
            self._cache.disable()
            await consumer.stop()

    def _apply_all(self, batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        for records in batches.values():
            for record in records:
                self._apply(record)

    def _apply(self, record: ConsumerRecord[Any, Any]) -> None:
        try:
            event = self._decoder.decode(record)
        except Undecodable as exc:
            # Whatever it named is unknown: start over rather than risk serving a stale card.
            log.warning("undecodable change notice; clearing the contact cache", exc_info=True)
            UNDECODABLE.labels(exc.reason).inc()
            self._cache.clear()
            return
        data = event.data
        if isinstance(data, ContactsChanged):  # other (future) types announce nothing we cache
            self._cache.invalidate((data.org_id, contact_id) for contact_id in data.contact_ids)
