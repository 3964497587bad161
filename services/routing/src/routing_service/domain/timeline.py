"""Retention of the histories a fold reads as of a time: an agent's presence timeline
(routing's copy of its sign-ins and sign-outs) and an org's setting history.

A fold asks one question of such a history: what held just before a given item (was the
agent signed in, was the setting on)? The answer for any time at or after a cut point
depends only on the entries from the cut on plus the last one before it (the state at the
cut). So a history keeps every entry within ``retention`` of its newest one, and of the
older ones only the last; everything else can go. The cut follows the history's own event
time, not the wall clock: an agent or an org that has been quiet keeps what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from routing_service.domain.model import PresenceEntry, SettingChange

T = TypeVar("T")


def superseded(
    history: Iterable[T],
    *,
    order: Callable[[T], Any],
    at: Callable[[T], datetime],
    retention: timedelta,
) -> list[T]:
    """The entries ``history`` no longer needs (oldest first). ``order`` sorts by ``at``
    first (then any tie-breakers)."""
    ordered = sorted(history, key=order)
    if not ordered:
        return []
    cut = at(ordered[-1]) - retention
    older = [e for e in ordered if at(e) < cut]
    return older[:-1]  # the last one before the cut is the state at the cut


def expired_entries(timeline: Iterable[PresenceEntry], retention: timedelta) -> list[str]:
    """Ids of the entries ``timeline`` no longer needs (oldest first)."""
    return [
        p.event_id
        for p in superseded(
            timeline, order=lambda p: p.sort_key, at=lambda p: p.occurred_at, retention=retention
        )
    ]


def expired_changes(changes: Sequence[SettingChange], retention: timedelta) -> set[int]:
    """Positions in ``changes`` of the setting changes an org's history no longer needs
    (positions, not values: a change stored twice is two entries)."""
    return set(
        superseded(
            range(len(changes)),
            order=lambda i: changes[i].effective_from,
            at=lambda i: changes[i].effective_from,
            retention=retention,
        )
    )
