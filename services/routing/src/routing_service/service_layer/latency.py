"""Where a decision's latency goes: counters for operators and the benchmark's split.

Each automatic unassignment is timed in three stages (wall clock against its ``occurred_at``,
so clock skew between the producer and routing counts in the first one):

- ``queued``: from its cause's ``occurred_at`` until the owner first folded it (the event's
  way through Kafka, the wait for the owner's lock, behind a batch or a background step);
- ``final_wait``: from that first fold until the fold that took it as final (waiting for
  presence progress for an R2, for the conversation streams to be complete as of the
  sign-out + L for an R1; zero when the first fold found it final);
- ``work``: from the start of the fold that took it until its publish was acknowledged (the
  fold of its batch or slice, the decision insert, the publish).

Per owner step (``routing_owner_step_seconds``): the fold inputs' read, the folds, the
journal insert, each decision insert and publish, the dispatcher's inputs, the wait for the
previous batch's published marks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from prometheus_client import Histogram

#: Fine steps up to a second: the targets are 250 ms (R2) and L + 250 ms (R1).
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
)
STAGES = ("queued", "final_wait", "work")
DECISION_STAGE = Histogram(
    "routing_decision_stage_seconds",
    "Where an automatic unassignment's latency goes, per stage: queued (its cause's "
    "occurred_at -> first folded by the owner), final_wait (first fold -> the fold that took "
    "it as final), work (that fold's start -> publish acknowledged)",
    ["stage"],
    buckets=BUCKETS,
)
OWNER_STEP = Histogram(
    "routing_owner_step_seconds",
    "Time of the owner's steps: inputs (timelines and settings read), fold, journal, record "
    "(one decision insert), publish (one decision publish), dispatcher (its inputs flushed), "
    "marks_wait (waiting for the previous batch's published marks)",
    ["step"],
    buckets=BUCKETS,
)
_STAGE = {stage: DECISION_STAGE.labels(stage) for stage in STAGES}
_STEPS: dict[str, Histogram] = {}


def observe_step(step: str, seconds: float) -> None:
    child = _STEPS.get(step)
    if child is None:
        child = _STEPS[step] = OWNER_STEP.labels(step)
    child.observe(seconds)


@contextmanager
def timed(step: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        observe_step(step, time.perf_counter() - started)


class DecisionClock:
    """Per decision, when its conversation was first folded with it pending and when the fold
    that took it started (wall clock, epoch seconds); observed once it is published."""

    def __init__(self) -> None:
        #: conversation key -> when a fold first found a decision of it pending
        self._pending_since: dict[object, float] = {}
        #: decision id -> (conversation key, occurred_at, first folded, taken)
        self._taken: dict[str, tuple[object, float, float, float]] = {}
        #: (occurred_at, first folded, taken, published) not observed yet
        self._done: list[tuple[float, float, float, float]] = []

    def pending(self, key: object, fold_started: float) -> None:
        self._pending_since.setdefault(key, fold_started)

    def settled(self, key: object) -> None:
        """The conversation has no pending decision any more (taken, or found not to apply)."""
        self._pending_since.pop(key, None)

    def taken(
        self, key: object, decision_id: str, occurred_at: datetime, fold_started: float
    ) -> None:
        first = self._pending_since.get(key, fold_started)
        self._taken[decision_id] = (key, occurred_at.timestamp(), first, fold_started)

    def published(self, decision_ids: Iterable[str]) -> None:
        """Their publish was acknowledged now (observed by ``flush``, off the decisions' path)."""
        now = time.time()
        for decision_id in decision_ids:
            times = self._taken.pop(decision_id, None)
            if times is not None:  # else republished after a take-over
                self._done.append((times[1], times[2], times[3], now))

    def flush(self) -> None:
        if not self._done:
            return
        queued, final_wait, work = (_STAGE[s] for s in STAGES)
        for at, first, taken, published in self._done:
            queued.observe(max(0.0, first - at))
            final_wait.observe(max(0.0, taken - first))
            work.observe(max(0.0, published - taken))
        self._done.clear()

    def forget(self, keys: Iterable[object]) -> None:
        """Conversations no longer owned (a revoke)."""
        gone = set(keys)
        for key in gone:
            self._pending_since.pop(key, None)
        for decision_id in [d for d, times in self._taken.items() if times[0] in gone]:
            del self._taken[decision_id]


#: Cumulative bucket counts and sums per series: (kind, name) -> {upper bound or "sum": value}.
Marker = dict[tuple[str, str], dict[float | str, float]]


def marker() -> Marker:
    """Every series' counts now (a benchmark phase's split is the difference of two)."""
    out: Marker = {}
    for kind, metric in (("stage", DECISION_STAGE), ("step", OWNER_STEP)):
        for family in metric.collect():
            for sample in family.samples:
                series = out.setdefault((kind, sample.labels.get(kind, "")), {})
                if sample.name.endswith("_bucket"):
                    series[float(sample.labels["le"])] = sample.value
                elif sample.name.endswith("_sum"):
                    series["sum"] = sample.value
    return out


def split_since(before: Marker) -> dict[str, tuple[int, float, float, float]]:
    """Per stage and step observed since ``before``: (count, mean, p50, p99) in ms; the
    quantiles are their buckets' upper bounds."""
    out: dict[str, tuple[int, float, float, float]] = {}
    for (kind, name), series in marker().items():
        old = before.get((kind, name), {})
        bounds = sorted(b for b in series if isinstance(b, float))
        counts = [series[b] - old.get(b, 0.0) for b in bounds]
        n = counts[-1] if counts else 0.0
        if n <= 0:
            continue
        mean = (series.get("sum", 0.0) - old.get("sum", 0.0)) / n
        p50, p99 = (_bound(bounds, counts, q * n) for q in (0.5, 0.99))
        out[name] = (int(n), mean * 1000, p50 * 1000, p99 * 1000)
    return out


def _bound(bounds: list[float], counts: list[float], rank: float) -> float:
    return next(b for b, c in zip(bounds, counts, strict=True) if c >= rank)


def format_split(split: dict[str, tuple[int, float, float, float]]) -> str:
    return "; ".join(
        f"{name} n={n} mean {mean:.0f} p50<={p50:.0f} p99<={p99:.0f} ms"
        for name, (n, mean, p50, p99) in split.items()
    )
