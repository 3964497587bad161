"""Publishing SavedReplyUsed on ``inbox.replies.v1`` (keyed by reply id)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from inbox_contracts import CloudEvent
from inbox_contracts.events import SavedReplyUsed
from inbox_contracts.topics import REPLIES
from inbox_kit.kafka import publish_event


class KafkaUsagePublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish_used(self, event: CloudEvent[SavedReplyUsed]) -> None:
        await publish_event(self._broker, REPLIES, event)
