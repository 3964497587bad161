"""AdaptiveBatchSize: small batches while the loop keeps up, the maximum only while a backlog
grows although batches are full, and back once it has drained."""

from __future__ import annotations

import pytest
from inbox_kit.batch_sizing import AdaptiveBatchSize


def sizer() -> AdaptiveBatchSize:
    return AdaptiveBatchSize(target_seconds=0.05, low=64, high=1000, window_seconds=0.5)


def test_latency_cap_follows_the_observed_rate_within_its_bounds() -> None:
    s = sizer()
    assert s.cap == 64  # nothing observed yet
    s.handled(400, 0.1)  # 4,000 records/s -> 200 in 50 ms
    assert s.cap == 200
    for _ in range(30):
        s.handled(1000, 0.01)  # 100,000/s: bounded by the maximum
    assert s.cap == 1000
    for _ in range(30):
        s.handled(10, 1.0)  # 10/s: bounded by the minimum
    assert s.cap == 64


def test_a_backlog_that_drains_with_small_batches_keeps_them_small() -> None:
    s = sizer()
    s.handled(200, 0.05)
    backlog, now = 900, 0.0
    while backlog > 0:  # one slow batch left 900 behind; small batches drain it
        s.polled(now, taken=s.cap, backlog=backlog)
        assert not s.throughput
        backlog -= 100
        now += 0.05
    assert s.cap == 200
    s.polled(now, taken=20, backlog=0)  # caught up: a batch not full
    assert not s.throughput


def test_batches_full_for_a_while_mean_saturated_even_if_the_backlog_stands() -> None:
    s = sizer()
    s.handled(200, 0.05)
    now = 0.0
    while now < 0.95:  # a standing backlog (a closed loop this consumer feeds itself)
        s.polled(now, taken=s.cap, backlog=600)
        assert not s.throughput
        now += 0.05
    s.polled(1.0, taken=s.cap, backlog=600)
    assert s.throughput and s.switches == 1
    s.polled(1.05, taken=1000, backlog=100)
    assert not s.throughput
    # a poll that is not full restarts the count
    for t in (1.1, 1.5, 1.9):
        s.polled(t, taken=s.cap, backlog=600)
    s.polled(2.0, taken=10, backlog=0)
    s.polled(2.05, taken=s.cap, backlog=600)
    assert not s.throughput


def test_a_growing_backlog_with_full_batches_switches_to_the_maximum_and_back() -> None:
    s = sizer()
    s.handled(200, 0.05)
    now, backlog = 0.0, 0
    while not s.throughput:
        s.polled(now, taken=s.cap, backlog=backlog)
        backlog += 300  # arrives faster than 200-record batches take it
        now += 0.05
        assert now < 1.0, "never switched"
    assert s.cap == 1000 and s.switches == 1
    s.polled(now, taken=1000, backlog=5000)
    assert s.throughput  # still draining
    s.polled(now + 0.1, taken=1000, backlog=150)
    assert not s.throughput and s.cap == 200  # the rest fits into one small batch


def test_a_burst_of_more_than_one_large_batch_is_taken_in_large_batches() -> None:
    s = sizer()
    s.handled(200, 0.05)
    s.polled(0.0, taken=200, backlog=1000)
    assert not s.throughput  # one large batch's worth: small ones drain it
    s.polled(0.05, taken=200, backlog=5000)
    assert s.throughput and s.switches == 1


def test_growth_while_batches_are_not_full_is_no_reason_to_grow() -> None:
    s = sizer()
    s.handled(200, 0.05)
    for i in range(40):
        # the high watermarks move (other partitions), but every poll takes all it finds
        s.polled(i * 0.05, taken=50, backlog=i * 100)
    assert not s.throughput


def test_bounds_must_make_sense() -> None:
    with pytest.raises(ValueError):
        AdaptiveBatchSize(target_seconds=0.05, low=0, high=10)
    with pytest.raises(ValueError):
        AdaptiveBatchSize(target_seconds=0.05, low=20, high=10)
