"""Publishing SavedReplyUsed on ``inbox.replies.v1`` (keyed by reply id)."""

from __future__ import annotations

from inbox_contracts import CloudEvent
from inbox_contracts.events import SavedReplyUsed
from inbox_contracts.topics import REPLIES
from inbox_kit.kafka import EventPublisher


class KafkaUsagePublisher:
    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def publish_used(self, event: CloudEvent[SavedReplyUsed]) -> None:
        await self._publisher.publish(REPLIES, event)
