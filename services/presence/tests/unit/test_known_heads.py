"""The per-agent transition cache trusts an entry for ``max_age`` (half the retention) after
it was learned: an older entry may sit below records retention has pruned since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from presence_service.domain.known_heads import KnownHeads
from presence_service.domain.model import AgentRef, Transition

ANA = AgentRef("org-1", "ana")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def transition(seq: int, agent: AgentRef = ANA) -> Transition:
    return Transition(agent, seq, seq % 2 == 1, T0, f"s{seq}")


def test_an_entry_is_trusted_until_max_age_after_it_was_learned() -> None:
    heads = KnownHeads(max_age=15 * DAY)
    heads.learn(transition(3), T0)
    assert heads.get(ANA, T0 + 15 * DAY - timedelta(milliseconds=1)) == transition(3)
    assert heads.get(ANA, T0 + 15 * DAY) is None
    assert ANA in heads  # expired, but the agent is known to have transitions


def test_a_later_transition_renews_the_entry_an_earlier_one_does_not() -> None:
    heads = KnownHeads(max_age=15 * DAY)
    heads.learn(transition(3), T0)
    heads.learn(transition(2), T0 + 10 * DAY)  # a stale hint: ignored, entry not renewed
    assert heads.get(ANA, T0 + 16 * DAY) is None
    heads.learn(transition(4), T0 + 10 * DAY)
    assert heads.get(ANA, T0 + 16 * DAY) == transition(4)


def test_an_expired_entry_is_replaced_by_what_is_learned_now() -> None:
    heads = KnownHeads(max_age=15 * DAY)
    heads.learn(transition(7), T0)
    heads.learn(transition(5), T0 + 20 * DAY)  # read from the store now: the fresh bound
    assert heads.get(ANA, T0 + 20 * DAY) == transition(5)


def test_reaching_max_entries_clears_the_cache_and_says_so() -> None:
    heads = KnownHeads(max_age=DAY, max_entries=2)
    bob, eve = AgentRef("org-1", "bob"), AgentRef("org-1", "eve")
    assert heads.learn(transition(1), T0)
    assert heads.learn(transition(1, bob), T0)
    assert not heads.learn(transition(1, eve), T0)
    assert len(heads) == 1 and heads.get(eve, T0) == transition(1, eve)
    assert heads.get(ANA, T0) is None
