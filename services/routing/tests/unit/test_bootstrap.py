"""Routing built by ``bootstrap`` without any I/O: every component exists before ``start()``
(the database and Kafka named here do not exist), wired to each other; over in-memory fakes,
one flow runs through them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from inbox_contracts import CloudEvent, EventData
from inbox_contracts.topics import (
    MESSAGES,
    PRESENCE,
    ROUTING_COMMANDS,
    ROUTING_DISPATCH,
    ROUTING_PROPOSALS,
)
from inbox_testing import free_port, wait_until
from inbox_testing.plugin import TEST_JWT_SECRET
from routing_service.adapters.memory import InMemoryPublisher, InMemoryStore
from routing_service.bootstrap import Routing, bootstrap
from routing_service.domain.model import Queue, Reason, SettingChange
from routing_service.service_layer.owner import Delivery, release_when_final
from routing_service.service_layer.presence import PresenceRecord
from routing_service.settings import RoutingSettings
from routing_testing import (
    FAR_FUTURE,
    SimClock,
    assigned,
    complete_now,
    inbound,
    partition_of,
    progress_mark,
    signed_in,
    signed_out,
    topic_of,
)

ORG = "org-1"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def settings() -> RoutingSettings:
    """Dependencies that do not exist: nothing may connect while building."""
    return RoutingSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/",
        grpc_port=0,
        metrics_port=0,
        jwt_secret=TEST_JWT_SECRET,
    )


async def test_bootstrap_builds_every_component_up_front_without_io() -> None:
    started = time.monotonic()
    routing = bootstrap(settings())
    assert time.monotonic() - started < 2.0  # nothing waited for the absent dependencies
    owner_loop, presence_loop, dispatch_loop = routing.loops
    assert MESSAGES.name in owner_loop._topics and owner_loop.lock is routing.pipeline.owner_lock
    assert presence_loop._topics == [PRESENCE.name]
    assert dispatch_loop._topics == [ROUTING_DISPATCH.name]
    assert all(loop.consumer is None for loop in routing.loops)  # not connected
    assert routing.owner is routing.pipeline.owner and routing.views is routing.pipeline.views
    assert routing.runtime.background and routing.runtime.cleanups


async def test_roles_choose_the_consumers_a_process_runs() -> None:
    base = settings()
    owner_only = bootstrap(base.model_copy(update={"roles": "owner"}))
    assert [loop.name for loop in owner_only.loops] == ["owner", "presence"]
    dispatcher_only = bootstrap(base.model_copy(update={"roles": "dispatcher"}))
    assert [loop.name for loop in dispatcher_only.loops] == ["dispatcher"]
    assert [loop.name for loop in bootstrap(base).loops] == ["owner", "presence", "dispatcher"]
    # normalised to the known order; unknown or empty roles are refused at start-up
    assert RoutingSettings(**_fields(base), roles=" dispatcher, owner").roles == "owner,dispatcher"
    for bad in ("", "owner,router", ","):
        with pytest.raises(ValueError, match="roles"):
            RoutingSettings(**_fields(base), roles=bad)


async def test_only_the_owner_sizes_its_batches_if_asked_and_takes_proposals_first() -> None:
    routing = bootstrap(settings().model_copy(update={"owner_batch_target_ms": 100}))
    p = routing.pipeline
    sizing = p.owner_loop.sizing
    assert sizing is not None
    assert (sizing.target_seconds, sizing.low, sizing.high) == (0.1, 250, 1000)
    assert p.owner_loop._priority_topics == {ROUTING_PROPOSALS.name, ROUTING_COMMANDS.name}
    assert p.presence_loop.sizing is None and p.dispatch_loop.sizing is None
    fixed = bootstrap(settings())  # the default: always up to ROUTING_BATCH_MAX_RECORDS
    assert fixed.pipeline.owner_loop.sizing is None
    assert fixed.pipeline.owner_loop._priority_topics == p.owner_loop._priority_topics
    small = bootstrap(
        settings().model_copy(update={"owner_batch_target_ms": 100, "batch_max_records": 100})
    )
    assert small.pipeline.owner_loop.sizing is not None
    assert small.pipeline.owner_loop.sizing.low == 100  # never above the maximum


def _fields(s: RoutingSettings) -> dict[str, object]:
    return {k: getattr(s, k) for k in ("kafka_bootstrap_servers", "mongodb_uri", "jwt_secret")}


async def over_fakes() -> tuple[Routing, InMemoryStore, InMemoryPublisher]:
    """Routing bootstrapped over the in-memory store and publisher, every input complete, its
    consumers' partitions assigned by hand, the org's remove-assignment setting on."""
    store, publisher = InMemoryStore(), InMemoryPublisher(partitions=3, presence_partitions=1)
    routing = bootstrap(
        settings(),
        store=store,
        publisher=publisher,
        complete_as_of=complete_now(SimClock(FAR_FUTURE)),
    )
    routing.pipeline.recorder.partition_counts(3, 1)
    routing.pipeline.recorder.assigned({0})
    await routing.owner.assign({0, 1, 2})
    await store.append_setting(ORG, SettingChange(T0 - timedelta(days=1), True, "admin-1"))
    return routing, store, publisher


async def test_bootstrapped_over_fakes_a_sign_out_unassigns_the_new_conversation() -> None:
    """One flow through the components ``bootstrap`` wired: presence recorder → relayed
    progress command → owner → R1 decision published and the view written."""
    routing, store, publisher = await over_fakes()
    owner, recorder = routing.owner, routing.pipeline.recorder

    async def to_owner(*events: CloudEvent[EventData]) -> None:
        await owner.handle([Delivery(topic_of(e), partition_of(e.subject, 3), e) for e in events])

    await recorder.handle([PresenceRecord(0, signed_in(ORG, "ana", T0))])
    await to_owner(inbound(ORG, "c1", T0), assigned(ORG, "c1", "ana", T0 + timedelta(seconds=1)))
    sign_out = signed_out(ORG, "ana", T0 + timedelta(seconds=2))
    await recorder.handle(
        [PresenceRecord(0, sign_out), PresenceRecord(0, progress_mark(0, FAR_FUTURE))]
    )
    await recorder.relay()
    commands, publisher.pending = publisher.pending, []
    await owner.handle([Delivery(ROUTING_COMMANDS.name, c.data.partition, c) for c in commands])

    [decision] = publisher.published
    assert (decision.conversation_id, decision.reason, decision.cause_event_id) == (
        "c1",
        Reason.R1_SIGNED_OUT,
        sign_out.id,
    )
    await routing.views.flush()
    view = store.views[(ORG, "c1")]
    assert (view.state.queue, view.state.assignee_id) == (Queue.NEW, None)


async def test_presence_progress_noted_in_the_process_wakes_the_owner_without_the_relay() -> None:
    """The owner of the same process learns presence progress when its presence consumer
    notes a mark (no relayed command delivered): a due R1 decision is released at once."""
    routing, _, publisher = await over_fakes()
    owner, recorder = routing.owner, routing.pipeline.recorder
    await recorder.handle([PresenceRecord(0, signed_in(ORG, "ana", T0))])
    await owner.handle(
        [
            Delivery(topic_of(e), partition_of(e.subject, 3), e)
            for e in (inbound(ORG, "c1", T0), assigned(ORG, "c1", "ana", T0 + timedelta(seconds=1)))
        ]
    )
    sign_out = signed_out(ORG, "ana", T0 + timedelta(seconds=2))
    await recorder.handle([PresenceRecord(0, sign_out)])
    sweeps, publisher.pending = publisher.pending, []
    await owner.handle([Delivery(ROUTING_COMMANDS.name, c.data.partition, c) for c in sweeps])
    assert publisher.published == [] and owner.due  # presence has not progressed yet

    # the timer alone would take 60 s: only the wake-up can release it in time
    releasing = asyncio.create_task(
        release_when_final(owner, routing.pipeline.owner_lock, tick=60.0)
    )
    try:
        await recorder.handle([PresenceRecord(0, progress_mark(0, FAR_FUTURE))])
        await wait_until(lambda: publisher.published, timeout=10, interval=0.01)
    finally:
        releasing.cancel()
    [decision] = publisher.published
    assert (decision.reason, decision.cause_event_id) == (Reason.R1_SIGNED_OUT, sign_out.id)
    assert publisher.pending == []  # no relayed command was needed
