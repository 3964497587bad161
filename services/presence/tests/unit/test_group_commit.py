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
