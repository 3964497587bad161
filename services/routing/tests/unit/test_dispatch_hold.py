"""The dispatcher holds a waiting conversation until presence progress reaches it.

The owner publishes a new waiting state at once, marked ``presence_until`` when it has not
seen presence progress reach its time; presence events up to that time may still be on their
way into the dispatch stream, so judging it earlier could hand it to an agent who had gone
Away (or signed out) before the conversation started waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from inbox_contracts import CloudEvent
from inbox_contracts.events import PresenceMark, PresenceProgressRelayed
from routing_service.adapters.dispatch_store import org_records, orgs_from
from routing_service.domain.dispatch import (
    AssignmentSettings,
    Cause,
    ConversationChanged,
    OrgDispatcher,
    PresenceChanged,
    PresenceKind,
    PresenceProgressed,
    SettingsChanged,
)
from routing_service.service_layer.dispatcher import PartitionState

ORG = "org-h"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def waiting(cid: str, t: datetime, *, presence_until: datetime | None) -> ConversationChanged:
    return ConversationChanged(
        cid,
        0,
        1,
        "NEW",
        None,
        "ch",
        t,
        f"inbound-{cid}",
        t,
        Cause(f"inbound-{cid}", "inbound"),
        presence_until=presence_until,
    )


def org_with_ana_signed_in() -> OrgDispatcher:
    org = OrgDispatcher(ORG)
    org.apply(SettingsChanged(AssignmentSettings(enabled=True), at(0), Cause("s", "settings")))
    org.apply(PresenceChanged("ana", PresenceKind.SIGNED_IN, at(1), Cause("in", "signed_in")))
    return org


def test_held_until_presence_reaches_it_then_judged_with_what_came_before() -> None:
    org = org_with_ana_signed_in()
    assert org.apply(waiting("c", at(100), presence_until=at(100))) == []
    assert org.holding
    # ana went Away at 90, before the conversation started waiting: it arrives after its state
    assert org.apply(PresenceChanged("ana", PresenceKind.AWAY, at(90), Cause("a", "away"))) == []
    assert org.apply(PresenceProgressed(at(99))) == [] and org.holding
    assert org.apply(PresenceProgressed(at(100))) == [] and not org.holding
    # judged now: nobody is eligible; bob signing in gets it
    [p] = org.apply(PresenceChanged("bob", PresenceKind.SIGNED_IN, at(150), Cause("b", "in")))
    assert (p.conversation_id, p.agent_id) == ("c", "bob")


def test_without_the_mark_it_is_judged_at_once() -> None:
    org = org_with_ana_signed_in()
    [p] = org.apply(waiting("c", at(100), presence_until=None))
    assert p.agent_id == "ana"


def test_a_state_presence_already_reached_is_not_held() -> None:
    org = org_with_ana_signed_in()
    org.apply(PresenceProgressed(at(200)))
    [p] = org.apply(waiting("c", at(100), presence_until=at(100)))
    assert p.agent_id == "ana" and not org.holding


def test_the_partition_relays_progress_to_every_org_and_a_snapshot_keeps_the_hold() -> None:
    state = PartitionState(0)
    org = state.org(ORG)
    org.apply(SettingsChanged(AssignmentSettings(enabled=True), at(0), Cause("s", "settings")))
    org.apply(PresenceChanged("ana", PresenceKind.SIGNED_IN, at(1), Cause("in", "signed_in")))
    assert org.apply(waiting("c", at(100), presence_until=at(100))) == []
    # a snapshot taken while held restores the hold (and the presence known)
    [restored] = orgs_from(org_records(org)).values()
    assert restored.holding

    def relayed(progress: list[datetime]) -> PresenceProgressRelayed:
        return CloudEvent.wrap(
            PresenceProgressRelayed(
                org_id="_all",
                partition_key="0",
                partition=0,
                presence_partitions=len(progress),
                marks=[PresenceMark(partition=i, progress=t) for i, t in enumerate(progress)],
                occurred_at=at(500),
            ),
            source="/test",
        ).data

    # the minimum over the presence partitions counts
    assert state.presence_progressed(relayed([at(150), at(99)])) == []
    [p] = state.presence_progressed(relayed([at(150), at(120)]))
    assert (p.conversation_id, p.agent_id) == ("c", "ana")
    # an org created later starts from the partition's progress
    assert state.org("org-later").presence == at(120)
