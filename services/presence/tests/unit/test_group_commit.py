"""Group commit: what queues behind a busy gate is flushed as one batch; errors reach callers."""

from __future__ import annotations

import asyncio

import pytest
from presence_service.adapters.group_commit import GroupCommit
from presence_service.adapters.write_gate import WriteGate


async def test_items_queued_behind_the_gate_flush_together_and_errors_reach_their_caller() -> None:
    gate = WriteGate(1)
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[BaseException | None]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [ValueError(f"bad {i}") if i == 3 else None for i in items]

    commit = GroupCommit[int](gate, flush)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0.001)  # 0 is being flushed; the next ones queue up
    rest = [asyncio.create_task(commit.submit(i)) for i in range(1, 6)]
    outcomes = await asyncio.gather(first, *rest, return_exceptions=True)
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert [type(o).__name__ for o in outcomes] == ["NoneType"] * 3 + ["ValueError"] + [
        "NoneType"
    ] * 2


async def test_a_failed_command_fails_every_item_of_the_batch() -> None:
    async def flush(items: list[int]) -> list[BaseException | None]:
        raise ConnectionError("database down")

    commit = GroupCommit[int](WriteGate(1), flush)
    results = await asyncio.gather(*(commit.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    with pytest.raises(ConnectionError):  # and it keeps working for later calls
        await commit.submit(9)


async def test_then_follows_the_commit_outside_the_gate_for_the_written_items_only() -> None:
    gate = WriteGate(1)
    seen: list[list[int]] = []
    gate_free_during_then: list[bool] = []
    release, entered = asyncio.Event(), asyncio.Event()

    async def flush(items: list[int]) -> list[BaseException | None]:
        return [ValueError("duplicate") if i == 2 else None for i in items]

    async def then(items: list[int]) -> None:
        seen.append(items)
        entered.set()
        async with gate.slot():  # another writer is not held up by the reads after a commit
            gate_free_during_then.append(True)
        await release.wait()
        if 4 in items:
            raise ConnectionError("read failed")

    commit = GroupCommit[int](gate, flush, then=then)
    first = asyncio.gather(*(commit.submit(i) for i in (1, 2, 3)), return_exceptions=True)
    await entered.wait()
    assert not first.done()  # the callers are not woken before ``then`` is done
    release.set()
    assert [type(o).__name__ for o in await first] == ["NoneType", "ValueError", "NoneType"]
    assert seen == [[1, 3]] and gate_free_during_then == [True]
    with pytest.raises(ConnectionError):  # written, but what had to follow failed
        await commit.submit(4)
