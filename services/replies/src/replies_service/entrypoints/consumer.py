"""Kafka consumer of our own ``inbox.replies.v1``: turns SavedReplyUsed into usage counts.

The topic is keyed by reply id, so the consumer that owns a partition is the single writer
of those replies' counters (FerretDB updates are not atomic across writers).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from inbox_contracts import CloudEvent, EventData
from inbox_contracts.events import SavedReplyUsed

from replies_service.service_layer import handlers
from replies_service.service_layer.handlers import Deps

log = logging.getLogger(__name__)


def usage_handler(deps: Deps) -> Callable[[CloudEvent[EventData]], Awaitable[None]]:
    async def handle(event: CloudEvent[EventData]) -> None:
        if isinstance(event.data, SavedReplyUsed):
            counted = await handlers.count_use(deps, event.data, event.id)
            if not counted:
                log.info("duplicate use ignored", extra={"event_id": event.id})

    return handle
