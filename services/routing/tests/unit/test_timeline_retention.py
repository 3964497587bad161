"""Presence-timeline and setting-history retention keep every answer a fold can still ask
for (``domain.timeline``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from routing_service.adapters.memory import InMemoryStore
from routing_service.domain.model import PresenceEntry, SettingChange, SettingsHistory, _signed_in
from routing_service.domain.timeline import expired_changes, expired_entries

T0 = datetime(2026, 11, 1, tzinfo=UTC)
RETENTION = timedelta(hours=24)

minutes = st.integers(min_value=0, max_value=5 * 24 * 60)
timelines = st.lists(st.tuples(minutes, st.booleans()), max_size=30).map(
    lambda items: [
        PresenceEntry(f"e{i}", "t", T0 + timedelta(minutes=m), signed_in)
        for i, (m, signed_in) in enumerate(items)
    ]
)


@settings(max_examples=300, deadline=None)
@given(timeline=timelines, probe=minutes)
def test_the_state_from_the_cut_on_is_unchanged(timeline: list[PresenceEntry], probe: int) -> None:
    expired = set(expired_entries(timeline, RETENTION))
    kept = sorted((p for p in timeline if p.event_id not in expired), key=lambda p: p.sort_key)
    full = sorted(timeline, key=lambda p: p.sort_key)
    if not full:
        assert not expired
        return
    cut = full[-1].occurred_at - RETENTION
    assert all(p.occurred_at < cut for p in full if p.event_id in expired)
    assert sum(p.occurred_at < cut for p in kept) <= 1  # at most the state at the cut
    at = T0 + timedelta(minutes=probe)
    if at >= cut:
        key = (at, 1, "probe")
        assert _signed_in(kept, key) == _signed_in(full, key)


async def test_the_in_memory_store_trims_as_it_records() -> None:
    store = InMemoryStore(timeline_retention=RETENTION)
    for day in range(5):
        for n, signed_in in enumerate((True, False)):
            at = T0 + timedelta(days=day, hours=9 + 8 * n)
            await store.record_presence(
                "org", "ana", PresenceEntry(f"d{day}{n}", "t", at, signed_in)
            )
    timeline = (await store.timelines([("org", "ana")]))[("org", "ana")]
    # newest: day 4 17:00; cut: day 3 17:00 (the day-3 sign-out, kept); the day-3 sign-in
    # before it is the state at the cut; days 0-2 are gone
    assert [p.event_id for p in timeline] == ["d30", "d31", "d40", "d41"]


changes = st.lists(st.tuples(minutes, st.booleans()), max_size=30).map(
    lambda items: [SettingChange(T0 + timedelta(minutes=m), on, f"admin-{m}") for m, on in items]
)


@settings(max_examples=300, deadline=None)
@given(history=changes, probe=minutes)
def test_the_setting_from_the_cut_on_is_unchanged(history: list[SettingChange], probe: int) -> None:
    expired = expired_changes(history, RETENTION)
    full = SettingsHistory(tuple(history))
    kept = SettingsHistory(tuple(c for i, c in enumerate(history) if i not in expired))
    if not history:
        assert not expired
        return
    cut = full.changes[-1].effective_from - RETENTION
    assert all(history[i].effective_from < cut for i in expired)
    assert sum(c.effective_from < cut for c in kept.changes) <= 1  # the value at the cut
    at = T0 + timedelta(minutes=probe)
    if at >= cut:
        assert kept.enabled_at(at) == full.enabled_at(at)
    assert kept.current() == full.current()


async def test_the_in_memory_store_trims_setting_changes_as_they_are_made() -> None:
    store = InMemoryStore(settings_retention=RETENTION)
    for day in range(5):
        await store.append_setting("org", SettingChange(T0 + timedelta(days=day), day % 2 == 0))
    history = (await store.settings(["org"]))["org"]
    # newest: day 4; cut: day 3 (kept); day 2 is the value before it; days 0-1 are gone
    assert [c.effective_from for c in history.changes] == [
        T0 + timedelta(days=d) for d in (2, 3, 4)
    ]
