"""Every service process's garbage-collector settings (``serve_main`` applies them).

Measured on routing, which keeps the largest live heap on purpose (each owner's open
conversations, the dispatcher's state of its orgs) and allocates many short-lived objects per
record (decoded events, folds); presence (live sessions), contacts and replies (search index)
have the same shape: a long-lived heap and many short-lived objects per call or record.
With CPython's default thresholds (700, 10, 10) a young collection runs every 700 net
allocations and a full one, which scans the whole heap with the event loop stopped, every
~70,000 once the old generation grew by a quarter: one ``make bench NAME=assignment`` run had
31-32 full collections taking 16-21 s in total, the longest 1.2-5.6 s (longer than the
consumer session timeout: the instance lost its partitions). With the thresholds below the
same run had one full collection, all collections together 2-3 s, the longest pause
0.1-0.2 s on the loaded 2-core machine (README, "Benchmark"). Fewer objects live through a
larger young generation, so fewer reach the old one; a small middle generation keeps each
middle collection short; refcounting frees acyclic garbage at once whatever the thresholds.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: (young, middle, old): a young collection every 20,000 net allocations, a middle one every
#: 5 young ones, a full one every 100 middle ones (and only once the old generation grew by a
#: quarter, CPython's own rule).
THRESHOLDS = (20_000, 5, 100)


def tune_gc() -> None:
    """Set the thresholds and freeze what exists now (modules, settings: never garbage), so
    full collections do not scan it. Call once, before serving."""
    gc.set_threshold(*THRESHOLDS)
    gc.freeze()


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    """``tune_gc`` for a block (a benchmark running routing in its own process), then the
    previous settings back (the benchmarks run after it in the same process get those)."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
