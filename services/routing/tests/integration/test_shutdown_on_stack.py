"""A stopped routing instance stops its consumers (nothing of aiokafka left running).

Before, stopping cancelled the consumer loops twice; the second cancel interrupted their own
stop, so their consumers kept fetching and heartbeating after the runtime had stopped, and
re-joined their groups once the broker had dropped them ("local member_id was not
recognized"): a restart of the loop set after a failure consumed next to the leftovers, and
a benchmark's later phases ran next to the earlier phases' consumers.
"""

from __future__ import annotations

import contextlib

import pytest
from aiokafka import AIOKafkaConsumer
from inbox_testing import wait_until

from .conftest import Stack

pytestmark = pytest.mark.infra


def _still_running(consumer: AIOKafkaConsumer) -> list[str]:
    """What of ``consumer`` is still at work: its own tasks only (other tests' consumers in
    the same event loop, stopped or leaked, keep creating fetch tasks of their own)."""
    left = [] if consumer._closed else ["not stopped"]
    fetcher, coordinator = consumer._fetcher, consumer._coordinator
    if fetcher is not None:
        left += ["fetch routine"] if not fetcher._fetch_task.done() else []
        left += ["fetch request" for t in fetcher._pending_tasks if not t.done()]
    for name in ("_coordination_task", "_heartbeat_task"):
        task = getattr(coordinator, name, None)
        if task is not None and not task.done():
            left.append(name)
    return left


async def test_a_stopped_instance_leaves_no_consumer_running(stack: Stack) -> None:
    routing = await stack.start_routing()
    await wait_until(lambda: all(loop.consumer is not None for loop in routing.loops), timeout=30)
    consumers = [loop.consumer for loop in routing.loops if loop.consumer is not None]
    assert len(consumers) == len(routing.loops) == 3  # owner, presence, dispatcher
    assert any(_still_running(c) for c in consumers)  # the check sees running consumers

    await routing.runtime.stop()

    # a stopped consumer's last fetch tasks end a moment after its stop returns (under load,
    # not at once); a consumer left running keeps its heartbeat and fetch loops for good
    async def nothing_left() -> bool:
        return not any(_still_running(c) for c in consumers)

    with contextlib.suppress(AssertionError):  # the assert below names what is left
        await wait_until(nothing_left, timeout=10, interval=0.05)
    assert [_still_running(c) for c in consumers] == [[] for _ in consumers]
