"""Dispatcher snapshots re-encode only the conversations that changed since the last one.

The reused JSON texts must be exactly what encoding the whole state again gives, through
proposals, answers, a conversation forgotten (retired) and one waiting again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from routing_service.adapters.dispatch_store import EncodedRecords, org_records, orgs_from
from routing_service.domain.dispatch import (
    AssignmentSettings,
    Cause,
    ConversationChanged,
    OrgDispatcher,
    PresenceChanged,
    PresenceKind,
    SettingsChanged,
)

ORG = "org-enc"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def change(
    cid: str,
    version: int,
    t: int,
    *,
    assignee: str | None = None,
    queue: str = "NEW",
    answers: str | None = None,
) -> ConversationChanged:
    waiting = queue == "NEW" and assignee is None
    return ConversationChanged(
        cid,
        0,
        version,
        queue,
        assignee,
        "ch",
        at(t) if waiting else None,
        f"inbound-{cid}-{t}" if waiting else None,
        at(t),
        Cause(f"e-{cid}-{version}", "inbound"),
        proposal_id=answers,
    )


def decoded(encoder: EncodedRecords, org: OrgDispatcher) -> list[object]:
    return [json.loads(text) for text in encoder.encode(0, [org])]


def test_reused_texts_equal_a_full_encoding_at_every_step() -> None:
    org = OrgDispatcher(ORG)
    encoder = EncodedRecords()
    org.apply(
        SettingsChanged(
            AssignmentSettings(enabled=True, default_capacity=2), at(0), Cause("s", "settings")
        )
    )
    org.apply(PresenceChanged("ana", PresenceKind.SIGNED_IN, at(1), Cause("in", "signed_in")))
    assert decoded(encoder, org) == org_records(org)
    proposals = [p for i in range(4) for p in org.apply(change(f"c{i}", 1, 10 + i))]
    assert [p.conversation_id for p in proposals] == ["c0", "c1"]  # capacity 2: two wait
    assert decoded(encoder, org) == org_records(org)
    # c0 accepted (answer), c1 resolved and forgotten, c2 waits anew after a reply
    org.apply(change("c0", 2, 20, assignee="ana", answers=proposals[0].proposal_id))
    org.apply(change("c1", 3, 21, queue="RESOLVED"))
    org.apply(change("c2", 2, 22, queue="PENDING", assignee="bob"))
    org.apply(change("c2", 3, 23))
    records = decoded(encoder, org)
    assert records == org_records(org)
    assert ["r", ORG, "c1", 3] in records
    # unchanged since: the same texts, and a restore from them is the same state
    again = encoder.encode(0, [org])
    assert [json.loads(t) for t in again] == records
    [restored] = orgs_from([json.loads(t) for t in again]).values()
    assert org_records(restored) == org_records(org)
