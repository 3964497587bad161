"""A fold that goes on from the previous fold's point (``fold(resume=...)``) gives exactly the
result of folding everything again, whatever came in between: entries and facts in or out
of order, presence transitions before or after the point, a setting change, progress moving
(pending decisions becoming final)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from routing_service.domain.model import (
    ConversationEntry,
    Decision,
    EntryKind,
    FoldResult,
    PresenceEntry,
    SettingChange,
    SettingsHistory,
    fold,
)

ORG, CONV = "org-f", "c1"
AGENTS = ("ana", "bob")
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
KINDS = (
    EntryKind.INBOUND,
    EntryKind.OUTBOUND,
    EntryKind.FOLLOW_UP,
    EntryKind.ASSIGNED,
    EntryKind.UNASSIGNED,
    EntryKind.RESOLVED,
)

minute = st.integers(min_value=0, max_value=30)
entry = st.tuples(st.sampled_from(KINDS), minute, st.sampled_from(AGENTS))
transition = st.tuples(st.sampled_from(AGENTS), minute, st.booleans())


def at(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


def entries_of(drawn: list[tuple[EntryKind, int, str]], offset: int) -> list[ConversationEntry]:
    return [
        ConversationEntry(
            f"e{offset + i}",
            f"t.{kind.value}",
            kind,
            at(m),
            who,
            who if kind is EntryKind.ASSIGNED else None,
        )
        for i, (kind, m, who) in enumerate(drawn)
    ]


def timelines_of(drawn: list[tuple[str, int, bool]], offset: int) -> dict[str, list[PresenceEntry]]:
    out: dict[str, list[PresenceEntry]] = {a: [] for a in AGENTS}
    for i, (agent, m, signed) in enumerate(drawn):
        out[agent].append(PresenceEntry(f"p{offset + i}", "t.presence", at(m), signed))
    return {a: sorted(tl, key=lambda p: p.sort_key) for a, tl in out.items()}


def merged(
    a: dict[str, list[PresenceEntry]], b: dict[str, list[PresenceEntry]]
) -> dict[str, list[PresenceEntry]]:
    return {k: sorted([*a[k], *b[k]], key=lambda p: p.sort_key) for k in AGENTS}


def same(x: FoldResult, y: FoldResult) -> bool:
    return (x.state, x.audit, x.new_decisions, x.pending_at) == (
        y.state,
        y.audit,
        y.new_decisions,
        y.pending_at,
    )


@settings(max_examples=int(os.environ.get("ROUTING_PROPERTY_EXAMPLES", "500")), deadline=None)
@given(
    first=st.lists(entry, max_size=8),
    later=st.lists(entry, max_size=5),
    presence_first=st.lists(transition, max_size=6),
    presence_later=st.lists(transition, max_size=4),
    final_first=st.one_of(st.none(), minute),
    final_later=minute,
    setting_changed_at=st.one_of(st.none(), minute),
)
def test_resuming_a_fold_equals_folding_everything_again(
    first: list[tuple[EntryKind, int, str]],
    later: list[tuple[EntryKind, int, str]],
    presence_first: list[tuple[str, int, bool]],
    presence_later: list[tuple[str, int, bool]],
    final_first: int | None,
    final_later: int,
    setting_changed_at: int | None,
) -> None:
    on = SettingsHistory((SettingChange(T0 - timedelta(days=1), True),))
    entries = entries_of(first, 0)
    timelines = timelines_of(presence_first, 0)
    facts: list[Decision] = []
    previous = fold(
        ORG,
        CONV,
        entries,
        timelines=timelines,
        settings=on,
        facts=facts,
        final_until=at(final_first) if final_first is not None else None,
    )
    facts += previous.new_decisions  # as the owner records them
    entries += entries_of(later, len(first))
    timelines = merged(timelines, timelines_of(presence_later, len(presence_first)))
    history = on
    if setting_changed_at is not None:
        history = on.with_change(SettingChange(at(setting_changed_at), False))
    kwargs = {
        "timelines": timelines,
        "settings": history,
        "facts": facts,
        "final_until": at(max(final_later, final_first or 0)),
    }
    resumed = fold(ORG, CONV, entries, resume=previous.point, **kwargs)  # type: ignore[arg-type]
    again = fold(ORG, CONV, entries, **kwargs)  # type: ignore[arg-type]
    assert same(resumed, again)
    # and the point it leaves is as good as the one of a fold from scratch
    facts += again.new_decisions
    kwargs["final_until"] = at(31)
    assert same(
        fold(ORG, CONV, entries, resume=resumed.point, **kwargs),  # type: ignore[arg-type]
        fold(ORG, CONV, entries, **kwargs),  # type: ignore[arg-type]
    )


def test_a_fold_goes_on_from_its_point_when_only_later_events_came() -> None:
    """The point is used (not only correct): a later inbound is folded on top of it."""
    ana_out = PresenceEntry("p1", "t.out", at(5), False)
    entries = entries_of([(EntryKind.INBOUND, 1, "x"), (EntryKind.ASSIGNED, 2, "ana")], 0)
    on = SettingsHistory((SettingChange(T0 - timedelta(days=1), True),))
    first = fold(ORG, CONV, entries, timelines={"ana": [ana_out]}, settings=on, final_until=at(9))
    # the sign-out at 5 took R1: the point is after that decision
    [r1] = first.new_decisions
    assert first.point is not None and first.point.last == r1.sort_key
    entries.append(entries_of([(EntryKind.OUTBOUND, 7, "ana")], 2)[0])
    assert first.point.continues(None, entries, [r1], {"ana": [ana_out]}, on)
    # a transition before the point (late) makes it unusable: folded from scratch
    late = PresenceEntry("p0", "t.in", at(3), True)
    assert not first.point.continues(None, entries, [r1], {"ana": [late, ana_out]}, on)
    # so does an entry sorting before it
    entries.append(entries_of([(EntryKind.FOLLOW_UP, 4, "x")], 3)[0])
    assert not first.point.continues(None, entries, [r1], {"ana": [ana_out]}, on)
