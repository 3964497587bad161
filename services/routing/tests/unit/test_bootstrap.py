"""Routing built by ``bootstrap`` without any I/O: every component exists before ``start()``
(the database and Kafka named here do not exist), wired to each other."""

from __future__ import annotations

import time

from inbox_contracts.topics import MESSAGES, PRESENCE, ROUTING_DISPATCH
from inbox_testing import free_port
from inbox_testing.plugin import TEST_JWT_SECRET
from routing_service.bootstrap import bootstrap
from routing_service.settings import RoutingSettings


async def test_bootstrap_builds_every_component_up_front_without_io() -> None:
    settings = RoutingSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/",
        grpc_port=0,
        metrics_port=0,
        jwt_secret=TEST_JWT_SECRET,
    )
    started = time.monotonic()
    routing = bootstrap(settings)
    assert time.monotonic() - started < 2.0  # nothing waited for the absent dependencies
    owner_loop, presence_loop, dispatch_loop = routing.loops
    assert MESSAGES.name in owner_loop._topics and owner_loop.lock is routing.pipeline.owner_lock
    assert presence_loop._topics == [PRESENCE.name]
    assert dispatch_loop._topics == [ROUTING_DISPATCH.name]
    assert all(loop.consumer is None for loop in routing.loops)  # not connected
    assert routing.owner is routing.pipeline.owner and routing.views is routing.pipeline.views
    assert routing.runtime.background and routing.runtime.cleanups
