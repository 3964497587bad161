"""The contact cache's freshness rules (no I/O: loads are coroutines the tests control)."""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from contacts_service.adapters.contact_cache import ContactCache
from contacts_service.entrypoints.change_feed import ChangeFeed
from inbox_contracts import CloudEvent
from inbox_contracts.events import ContactsChanged
from inbox_contracts.topics import CONTACT_CHANGES
from inbox_testing import consumer_record

KEY = ("org", "c1")


class Store:
    """Stands in for the database: counts reads; a read can be held open by the test."""

    def __init__(self) -> None:
        self.value = b"v1"
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def load(self) -> bytes | None:
        self.reads += 1
        value = self.value  # what the database returned at the moment it was read
        if self.gate is not None:
            await self.gate.wait()
        return value


def cache(
    max_entries: int = 10, max_age: float = 60, clock: Callable[[], float] = time.monotonic
) -> ContactCache:
    c = ContactCache(max_entries=max_entries, max_age=max_age, clock=clock)
    c.enable()
    return c


async def test_a_hit_does_not_read_the_store_and_a_notice_makes_the_next_read_fresh() -> None:
    store, c = Store(), cache()
    assert await c.get(KEY, store.load) == b"v1"
    assert await c.get(KEY, store.load) == b"v1"
    assert store.reads == 1
    store.value = b"v2"
    c.invalidate([KEY, ("org", "never-read")])
    assert await c.get(KEY, store.load) == b"v2"
    assert store.reads == 2


async def test_a_read_overtaken_by_a_notice_is_returned_but_not_cached() -> None:
    store, c = Store(), cache()
    store.gate = asyncio.Event()
    slow = asyncio.create_task(c.get(KEY, store.load))
    await asyncio.sleep(0)  # the slow read has fetched v1 and waits
    store.value = b"v2"  # the writer stores v2 and announces it
    c.invalidate([KEY])
    store.gate.set()
    assert await slow == b"v1"
    assert len(c) == 0
    assert await c.get(KEY, store.load) == b"v2"
    assert await c.get(KEY, store.load) == b"v2"
    assert store.reads == 2


async def test_a_read_started_after_the_notice_is_cached_even_if_an_older_one_is_not() -> None:
    store, c = Store(), cache()
    store.gate = asyncio.Event()
    old = asyncio.create_task(c.get(KEY, store.load))
    await asyncio.sleep(0)
    store.value = b"v2"
    c.invalidate([KEY])
    new = asyncio.create_task(c.get(KEY, store.load))
    await asyncio.sleep(0)
    store.gate.set()
    assert (await old, await new) == (b"v1", b"v2")
    store.gate = None
    assert await c.get(KEY, store.load) == b"v2"
    assert store.reads == 2


async def test_off_until_enabled_and_after_disable_and_loads_spanning_it_are_not_kept() -> None:
    store = Store()
    c = ContactCache(max_entries=10, max_age=60)
    await c.get(KEY, store.load)
    await c.get(KEY, store.load)
    assert store.reads == 2 and len(c) == 0
    # A read that began before the feed was positioned may predate an unseen notice.
    store.gate = asyncio.Event()
    early = asyncio.create_task(c.get(KEY, store.load))
    await asyncio.sleep(0)
    c.enable()
    store.gate.set()
    await early
    assert len(c) == 0
    store.gate = None
    await c.get(KEY, store.load)
    assert len(c) == 1
    c.disable()
    assert len(c) == 0 and not c.enabled
    await c.get(KEY, store.load)
    assert len(c) == 0


async def test_bounded_by_entries_least_recently_used_first_and_by_age() -> None:
    store, c = Store(), cache(max_entries=2)
    await c.get(("org", "a"), store.load)
    await c.get(("org", "b"), store.load)
    await c.get(("org", "a"), store.load)  # a is now the most recently used
    await c.get(("org", "c"), store.load)  # evicts b
    assert store.reads == 3
    await c.get(("org", "a"), store.load)
    assert store.reads == 3
    await c.get(("org", "b"), store.load)
    assert store.reads == 4
    now = [100.0]
    aged = cache(max_age=0.01, clock=lambda: now[0])
    await aged.get(KEY, store.load)
    now[0] += 0.005
    await aged.get(KEY, store.load)  # still fresh
    assert store.reads == 5
    now[0] += 0.01
    await aged.get(KEY, store.load)
    assert store.reads == 6


async def test_unknown_contacts_are_not_cached_and_zero_entries_means_off() -> None:
    c = cache()

    async def missing() -> bytes | None:
        return None

    assert await c.get(KEY, missing) is None
    assert len(c) == 0
    off = ContactCache(max_entries=0, max_age=60)
    off.enable()
    assert not off.enabled


async def test_the_change_feed_drops_named_contacts_and_everything_on_a_malformed_notice() -> None:
    store, c = Store(), cache()
    feed = ChangeFeed(c, bootstrap_servers="unused")
    for contact_id in ("c1", "c2", "c3"):
        await c.get(("org", contact_id), store.load)
    await c.get(("other-org", "c1"), store.load)
    notice = ContactsChanged(org_id="org", contact_ids=["c1", "c2"], occurred_at=datetime.now(UTC))
    feed._apply(
        consumer_record(
            CONTACT_CHANGES.name, CloudEvent.wrap(notice, source="/tests").to_json_bytes()
        )
    )
    assert [("org", "c3") in c, ("other-org", "c1") in c, len(c)] == [True, True, 2]
    feed._apply(consumer_record(CONTACT_CHANGES.name, b"{not json"))
    assert len(c) == 0 and c.enabled


async def test_clear_also_drops_what_loads_in_flight_would_bring_back() -> None:
    store, c = Store(), cache()
    store.gate = asyncio.Event()
    in_flight = asyncio.create_task(c.get(KEY, store.load))
    await asyncio.sleep(0)
    c.clear()
    store.gate.set()
    assert await in_flight == b"v1"
    assert len(c) == 0 and c.enabled
