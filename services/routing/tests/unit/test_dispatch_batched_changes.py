"""The owner's changes as one record per org and batch (``ConversationsDispatchChanged``)
drive the dispatcher exactly as one ``ConversationDispatchChanged`` per change: the same
proposals, with the same ids, in the same order. Both go through the wire format (JSON
bytes, decoded by the consumers' decoder) and the dispatcher's ``handle``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord
from inbox_contracts import CloudEvent, EncodedEvent
from inbox_contracts.events import (
    AssignmentSettingsChanged,
    ConversationDispatchChanged,
    ConversationsDispatchChanged,
)
from inbox_contracts.events.dispatch import MAX_DISPATCH_CHANGES
from inbox_contracts.topics import ROUTING_DISPATCH
from inbox_kit.inbound import InboundDecoder
from routing_service.domain.model import ConversationLog, SettingsHistory, fold
from routing_service.service_layer.auto_assign import AutoAssigner
from routing_service.service_layer.dispatcher import (
    Dispatcher,
    DispatchRecord,
    PartitionState,
    decoded_proposals,
)
from routing_service.service_layer.translate import conversation_entry
from routing_testing import inbound, signed_in

ORG, OTHER = "org-b", "org-o"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Outbox:
    def __init__(self) -> None:
        self.events: list[CloudEvent[Any]] = []

    async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
        self.events.extend(events)

    async def publish_auto_assigned(self, events: Sequence[CloudEvent[Any]]) -> None:
        raise AssertionError("no proposal is reviewed here")

    async def publish_proposals(self, proposals: Sequence[EncodedEvent]) -> None:
        self.events.extend(decoded_proposals(proposals))


async def no_timelines(_: object) -> dict[Any, Any]:
    return {}


async def owner_changes(*, batched: bool, conversations: int) -> list[CloudEvent[Any]]:
    """What an owner publishes after one batch that started ``conversations`` conversations
    in each of two orgs (every one waiting)."""
    outbox = Outbox()
    assigner = AutoAssigner(outbox, no_timelines, batched=batched)
    for i in range(conversations):
        for org in (ORG, OTHER):
            lg = ConversationLog(org, f"c-{i}", i % 3)
            message = inbound(org, f"c-{i}", T0 + timedelta(milliseconds=i), f"in-{org}-{i}")
            entry = conversation_entry(message)
            assert entry is not None and lg.add(entry)
            result = fold(
                org,
                lg.conversation_id,
                lg.entries.values(),
                timelines={},
                settings=SettingsHistory(),
                final_until=T0 + timedelta(seconds=1),
            )
            assigner.observe(lg, result, presence_final=T0 + timedelta(seconds=1))
    await assigner.flush()
    return outbox.events


class NoStore:
    def serialize(self, state: PartitionState) -> Any:
        return state


async def proposals_from(
    changes: Sequence[CloudEvent[Any]],
) -> dict[str, list[tuple[str, str, str]]]:
    """Per org, in order, the proposals of a dispatcher fed: settings on, two agents signed
    in per org, then ``changes`` — every record as JSON bytes through the consumers' decoder
    (the orgs are independent streams: only the order within one is defined)."""
    inputs: list[CloudEvent[Any]] = []
    for org in (ORG, OTHER):
        inputs.append(
            CloudEvent.wrap(
                AssignmentSettingsChanged(
                    org_id=org, enabled=True, default_capacity=3, changed_by="boss", occurred_at=T0
                ),
                source="/test",
            )
        )
        inputs += [signed_in(org, a, T0) for a in ("ana", "bob")]
    decoder = InboundDecoder()
    records = []
    for offset, event in enumerate([*inputs, *changes]):
        raw = event.to_json_bytes()
        consumed = ConsumerRecord(
            ROUTING_DISPATCH.name, 0, offset, 0, 0, b"k", raw, None, 1, len(raw), []
        )
        records.append(DispatchRecord(0, offset, decoder.decode(consumed)))
    published = Outbox()
    dispatcher = Dispatcher(NoStore(), published, snapshot_seconds=3600, view_seconds=3600)  # type: ignore[arg-type]
    dispatcher.partitions[0] = PartitionState(0)
    await dispatcher.handle(records)
    out: dict[str, list[tuple[str, str, str]]] = {}
    for e in published.events:
        out.setdefault(e.data.org_id, []).append((e.id, e.data.conversation_id, e.data.agent_id))
    return out


async def test_one_record_per_org_gives_the_proposals_of_one_record_per_change() -> None:
    batched = await owner_changes(batched=True, conversations=4)
    single = await owner_changes(batched=False, conversations=4)
    assert [type(e.data) for e in batched] == [ConversationsDispatchChanged] * 2
    assert [e.data.org_id for e in batched] == [ORG, OTHER]
    assert all(isinstance(e.data, ConversationDispatchChanged) for e in single)
    assert len(single) == 8
    expected = await proposals_from(single)
    # per org: four waiting, two agents with room for three each: every one is proposed
    assert {org: [p[1] for p in ps] for org, ps in expected.items()} == {
        org: [f"c-{i}" for i in range(4)] for org in (ORG, OTHER)
    }
    assert await proposals_from(batched) == expected


async def test_more_changes_than_a_record_holds_go_out_as_several_in_order() -> None:
    batched = await owner_changes(batched=True, conversations=MAX_DISPATCH_CHANGES + 1)
    sizes = [(e.data.org_id, len(e.data.changes)) for e in batched]
    assert sizes == [
        (ORG, MAX_DISPATCH_CHANGES),
        (ORG, 1),
        (OTHER, MAX_DISPATCH_CHANGES),
        (OTHER, 1),
    ]
    ids = [c.conversation_id for e in batched if e.data.org_id == ORG for c in e.data.changes]
    assert ids == [f"c-{i}" for i in range(MAX_DISPATCH_CHANGES + 1)]
    assert len({e.id for e in batched}) == 4
