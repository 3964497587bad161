"""The write gate: bounded concurrency, request-path writes before background ones."""

from __future__ import annotations

import asyncio

import pytest
from presence_service.adapters.write_gate import WriteGate
from presence_service.service_layer.io_priority import background_io


async def test_one_slot_serializes_and_foreground_overtakes_background() -> None:
    gate = WriteGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            order.append("holder")
            await release.wait()

    async def writer(name: str, *, background: bool) -> None:
        if background:
            with background_io():
                async with gate.slot():
                    order.append(name)
        else:
            async with gate.slot():
                order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    tasks = [
        asyncio.create_task(writer("bg1", background=True)),
        asyncio.create_task(writer("fg1", background=False)),
        asyncio.create_task(writer("bg2", background=True)),
        asyncio.create_task(writer("fg2", background=False)),
    ]
    await asyncio.sleep(0.01)
    assert order == ["holder"]  # everyone else waits for the single slot
    assert gate.waiting == 4
    release.set()
    await asyncio.gather(first, *tasks)
    assert order == ["holder", "fg1", "fg2", "bg1", "bg2"]


async def test_cancelled_waiter_does_not_leak_the_slot() -> None:
    gate = WriteGate(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            await release.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(gate.slot().__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await waiter
    async with asyncio.timeout(1):  # the slot is free again
        async with gate.slot():
            pass


async def test_slots_bound_concurrency() -> None:
    gate = WriteGate(2)
    running = peak = 0

    async def write() -> None:
        nonlocal running, peak
        async with gate.slot():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001)
            running -= 1

    await asyncio.gather(*(write() for _ in range(20)))
    assert peak == 2


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError):
        WriteGate(0)
