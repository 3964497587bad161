"""The collector settings every service process runs with (``serve_main`` applies them)."""

from __future__ import annotations

import gc

from inbox_kit.gc_tuning import THRESHOLDS, tuned_gc


def test_tuned_gc_raises_the_thresholds_freezes_the_heap_and_restores_both() -> None:
    before = gc.get_threshold()
    with tuned_gc():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0  # the heap that exists at start is never rescanned
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
