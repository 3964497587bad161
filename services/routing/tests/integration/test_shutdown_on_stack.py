"""A stopped routing instance stops its consumers (nothing of aiokafka left running).

Before, stopping cancelled the consumer loops twice; the second cancel interrupted their own
stop, so their consumers kept fetching and heartbeating after the runtime had stopped, and
re-joined their groups once the broker had dropped them ("local member_id was not
recognized"): a restart of the loop set after a failure consumed next to the leftovers, and
a benchmark's later phases ran next to the earlier phases' consumers.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from inbox_testing import wait_until

from .conftest import Stack

pytestmark = pytest.mark.infra


def _aiokafka_tasks(tasks: set[asyncio.Task[object]]) -> list[str]:
    return [
        t.get_coro().__qualname__  # type: ignore[union-attr]
        for t in tasks
        if not t.done() and "aiokafka" in t.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    ]


async def test_a_stopped_instance_leaves_no_consumer_running(stack: Stack) -> None:
    before = asyncio.all_tasks()
    routing = await stack.start_routing()
    assert _aiokafka_tasks(asyncio.all_tasks() - before)  # the check sees running consumers

    await routing.runtime.stop()

    # a stopped consumer's last fetch tasks end a moment after its stop returns (under load,
    # not at once); a consumer left running keeps its heartbeat and fetch loops for good
    async def nothing_left() -> bool:
        return not _aiokafka_tasks(asyncio.all_tasks() - before)

    with contextlib.suppress(AssertionError):  # the assert below names what is left
        await wait_until(nothing_left, timeout=10, interval=0.05)
    assert _aiokafka_tasks(asyncio.all_tasks() - before) == []
