"""Group commit: what queues behind a busy gate is flushed as one batch; errors reach callers;
the linger grows the batches under load and never delays a write that finds it idle."""

from __future__ import annotations

import asyncio

import pytest
from presence_service.adapters.group_commit import GroupCommit, Linger
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


async def test_the_linger_joins_writes_after_a_large_batch_and_never_delays_an_idle_one() -> None:
    batches: list[list[str]] = []
    entered = {first: asyncio.Event() for first in ("a0", "b0")}
    release = {first: asyncio.Event() for first in ("a0", "b0")}

    async def flush(items: list[str]) -> list[BaseException | None]:
        batches.append(items)
        if items[0] in release:
            entered[items[0]].set()
            await release[items[0]].wait()
        return [None] * len(items)

    commit = GroupCommit[str](WriteGate(1), flush, linger=Linger(seconds=0.5, after=4))
    # idle: a write alone goes at once, however long the linger (the bound is not a wait)
    await asyncio.wait_for(commit.submit("alone"), timeout=0.4)

    first = asyncio.create_task(commit.submit("a0"))  # flushed alone, held
    await entered["a0"].wait()
    second = [asyncio.create_task(commit.submit(f"b{i}")) for i in range(4)]
    await asyncio.sleep(0)  # they queue behind a0
    release["a0"].set()
    await first
    await entered["b0"].wait()  # b0-b3 flushed together (after a batch of one: no linger)
    late = asyncio.create_task(commit.submit("c0"))  # queued while b0-b3 are written
    await asyncio.sleep(0)
    release["b0"].set()
    await asyncio.gather(*second)
    # after a batch of 4 the next waits the linger: what comes meanwhile joins it
    joined = [asyncio.create_task(commit.submit(f"c{i}")) for i in range(1, 3)]
    await asyncio.gather(late, *joined)
    assert batches == [["alone"], ["a0"], ["b0", "b1", "b2", "b3"], ["c0", "c1", "c2"]]
