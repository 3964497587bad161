"""The in-memory store (``fake_store.FakeStore``) and a manual clock (unit tests; no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fake_store import FakeStore


@dataclass
class ManualClock:
    """Wall-clock time that moves only when told."""

    now: datetime = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()
