"""The routing process's garbage-collector settings.

Routing keeps a large live heap on purpose (each owner's open conversations, the dispatcher's
state of its orgs) and allocates many short-lived objects per record (decoded events, folds).
With CPython's default thresholds (700, 10, 10) a young collection runs every 700 net
allocations and a full one, which scans the whole heap with the event loop stopped, about
every 70,000: ``make bench NAME=assignment`` measured 31 full collections in one run, 20.7 s
of them in total, the longest 5.6 s (longer than the consumer session timeout, so the
instance lost its partitions). With the thresholds below no full collection ran in the same
run and all collections together took 1.9 s (README, "Benchmark"). Objects that live through a
young collection are rarer with a larger young generation, so fewer reach the old one;
refcounting frees acyclic garbage at once whatever the thresholds.
"""

from __future__ import annotations

import gc

#: (young, middle, old): a young collection every 50,000 net allocations, a middle one every
#: 20 young ones, a full one every 10 middle ones (and only once the old generation grew by a
#: quarter, CPython's own rule).
THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Set the thresholds and freeze what exists now (modules, settings: never garbage), so
    full collections do not scan it. Call once, before serving."""
    gc.set_threshold(*THRESHOLDS)
    gc.freeze()
