"""How many records a consumer takes per batch: small while it keeps up, all it may while a
backlog grows (``BatchConsumer(sizing=...)``).

A fixed cap is a trade-off. A large one lets one slow batch make the next one large: it
holds every record that arrived meanwhile, costs more, and the loop can settle at one batch
of a second per second at half of its peak (every record then waits up to two batch times).
A small one keeps batches short but pays each batch's fixed cost (its round trips) more
often, which lowers the peak. This controller keeps both: in *latency* mode the cap is the
records the loop handles in ``target_seconds`` (its observed rate); it switches to
*throughput* mode (the configured maximum) only when the backlog grows although batches are
full, i.e. when small batches cannot keep up, when more than one large batch is queued (a
burst), or when every batch has been full for a while (saturated), and back once a poll
leaves no more than one small batch behind. Pure (the caller
passes the clock), so it is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AdaptiveBatchSize:
    #: Handling time a batch aims at in latency mode.
    target_seconds: float
    #: Never fewer than this many records per batch.
    low: int
    #: The cap in throughput mode (the consumer's ``max_records``).
    high: int
    #: The backlog must have grown over this long before throughput mode.
    window_seconds: float = 0.5
    #: Every batch full for this long (saturated at the small size) also means throughput.
    saturated_seconds: float = 1.0
    #: Records handled per second of handling time (moving average; None: nothing yet).
    rate: float | None = None
    throughput: bool = False
    #: Switches to throughput mode so far (monitoring, benchmarks).
    switches: int = 0
    #: (time, backlog) samples within the window, oldest first.
    _samples: list[tuple[float, int]] = field(default_factory=list)
    #: Since when every poll (in latency mode) took a full batch (None: the last did not).
    _full_since: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError("need 0 < low <= high")

    @property
    def latency_cap(self) -> int:
        if self.rate is None:
            return self.low
        return max(self.low, min(self.high, int(self.rate * self.target_seconds)))

    @property
    def cap(self) -> int:
        """Records to take in the next batch."""
        return self.high if self.throughput else self.latency_cap

    def handled(self, records: int, seconds: float) -> None:
        """A batch of ``records`` took ``seconds`` to handle."""
        if records <= 0 or seconds <= 0:
            return
        observed = records / seconds
        self.rate = observed if self.rate is None else 0.7 * self.rate + 0.3 * observed

    def polled(self, now: float, taken: int, backlog: int) -> None:
        """A poll took ``taken`` records and left ``backlog`` behind (high watermarks minus
        positions, every assigned partition)."""
        small = self.latency_cap
        if self.throughput:
            if backlog <= small:
                self.throughput = False
                self._samples.clear()
                self._full_since = None
            return
        self._samples.append((now, backlog))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window_seconds:
            self._samples.pop(0)
        if taken < small:
            self._full_since = None
            return  # the batch took everything there was (or nearly): keeping up
        if self._full_since is None:
            self._full_since = now
        then, before = self._samples[0]
        grew = now - then >= self.window_seconds and backlog > before + small
        # grew by more than a batch over the window although batches are full; more than one
        # large batch queued (a burst: small batches would only take it slower); or every
        # batch full for a while (saturated: e.g. a closed loop whose backlog cannot grow
        # because this loop feeds it)
        saturated = now - self._full_since >= self.saturated_seconds
        if grew or backlog > self.high or saturated:
            self.throughput = True
            self.switches += 1
            self._samples.clear()
            self._full_since = None
