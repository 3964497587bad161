"""Retention of an agent's presence timeline (routing's copy of its sign-ins and sign-outs).

A fold asks one question of a timeline: was the agent signed in just before a given item?
The answer for any time at or after a cut point depends only on the entries from the cut on
plus the last one before it (the agent's state at the cut). So a timeline keeps every entry
within ``retention`` of its newest one, and of the older ones only the last; everything else
can go. The cut follows the timeline's own event time, not the wall clock: an agent that has
been quiet keeps what it has.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from routing_service.domain.model import PresenceEntry


def expired_entries(timeline: Iterable[PresenceEntry], retention: timedelta) -> list[str]:
    """Ids of the entries ``timeline`` no longer needs (oldest first)."""
    ordered = sorted(timeline, key=lambda p: p.sort_key)
    if not ordered:
        return []
    cut = ordered[-1].occurred_at - retention
    older = [p.event_id for p in ordered if p.occurred_at < cut]
    return older[:-1]  # the last one before the cut is the state at the cut
