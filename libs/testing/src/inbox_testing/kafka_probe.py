"""Watch a topic from "now on" and wait for the events a test expects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


class TopicProbe:
    """A group-less consumer positioned at the end of every partition of ``topic``."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._topic = topic
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def start(self) -> TopicProbe:
        await self._consumer.start()
        # A group-less consumer has no metadata for topics it did not subscribe to yet.
        cluster = await self._consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(self._topic) or set()
        if not partitions:
            await self._consumer.stop()
            raise RuntimeError(f"topic {self._topic} does not exist")
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, so nothing produced after start is missed
            await self._consumer.position(tp)
        return self

    async def stop(self) -> None:
        await self._consumer.stop()

    async def drain(self, seconds: float = 0.2) -> list[ConsumerRecord[bytes, bytes]]:
        batches = await self._consumer.getmany(timeout_ms=int(seconds * 1000))
        for batch in batches.values():
            self.records.extend(batch)
        return self.records

    async def read_to_end(self, timeout: float = 15.0) -> list[ConsumerRecord[bytes, bytes]]:
        """Consume up to the end offsets as of now: everything published before this call."""
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while any([await self._consumer.position(tp) < ends[tp] for tp in tps]):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {self._topic} to its end in {timeout}s")
            await self.drain(0.1)
        return self.records

    async def wait_for(
        self,
        predicate: Callable[[ConsumerRecord[bytes, bytes]], bool],
        *,
        count: int = 1,
        timeout: float = 15.0,
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Return matching records once ``count`` arrived; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            matches = [r for r in self.records if predicate(r)]
            if len(matches) >= count:
                return matches
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"expected {count} matching records on {self._topic}, got {len(matches)} "
                    f"within {timeout}s (of {len(self.records)} seen)"
                )
            await self.drain(min(remaining, 0.5))

    async def __aenter__(self) -> TopicProbe:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


async def wait_until(
    check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.1
) -> Any:
    """Poll an async or sync ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
