"""Routing's per-event CPU without I/O: ``python -m bench.routing_cpu`` (no infrastructure).

The throughput phase's backlog (``ROUTING_BENCH_EVENTS`` inbound messages, two per new
conversation) decoded by the kit's ``InboundDecoder`` and handled by ``ConversationOwner`` in
batches of 1,000 on the in-memory store, in this process. Prints CPU microseconds per event
of the decode and of the owner's ``handle``, and their ratio: on the shared machine the
decode (pydantic, unchanged by owner work) is the yardstick of the machine's speed at that
moment, so compare the ratio between two trees run back to back, not the absolute times.
Not a measure of the real stack (no MongoDB, Kafka, dispatcher or read-model writes).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

from aiokafka import ConsumerRecord
from inbox_contracts.topics import MESSAGES
from inbox_kit.inbound import InboundDecoder
from routing_service.service_layer.owner import Delivery
from routing_testing import InMemoryRouting, inbound, partition_of

N_EVENTS = int(os.environ.get("ROUTING_BENCH_EVENTS", "20000"))
BATCH, PARTITIONS = 1000, 6


async def measure(n: int) -> tuple[float, float]:
    """(decode, handle) CPU us per event over a backlog of ``n`` inbound messages."""
    t = datetime.now(UTC)
    raws = [
        inbound("org-cpu", f"c-{i % (n // 2)}", t + timedelta(microseconds=i)).to_json_bytes()
        for i in range(n)
    ]
    records = [
        ConsumerRecord(MESSAGES.name, 0, i, 0, 0, b"k", raw, None, 1, len(raw), [])
        for i, raw in enumerate(raws)
    ]
    routing = InMemoryRouting(PARTITIONS)
    await routing.start()
    decoder = InboundDecoder()
    decode = handle = 0.0
    for i in range(0, n, BATCH):
        started = time.process_time()
        events = [decoder.decode(r) for r in records[i : i + BATCH]]
        decoded = time.process_time()
        await routing.owner.handle(
            [Delivery(MESSAGES.name, partition_of(e.subject, PARTITIONS), e) for e in events]
        )
        decode += decoded - started
        handle += time.process_time() - decoded
    return decode / n * 1e6, handle / n * 1e6


def main() -> None:
    decode, handle = asyncio.run(measure(N_EVENTS))
    print(
        f"decode {decode:.1f} us/event, owner handle {handle:.1f} us/event "
        f"(handle / decode = {handle / decode:.2f})"
    )


if __name__ == "__main__":
    main()
