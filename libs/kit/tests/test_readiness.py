"""Readiness from dependency checks (inbox_kit.readiness), with fake checks."""

from __future__ import annotations

from inbox_kit.readiness import DEPENDENCY_UP, Check, DependencyProbe


async def test_two_failed_rounds_turn_readiness_off_and_one_good_round_back_on() -> None:
    answers = {"mongodb": [True, False, False, False, True], "kafka": [True] * 5}
    changes: list[bool] = []

    def check(name: str) -> Check:
        async def run() -> object:
            if not answers[name].pop(0):
                raise ConnectionError(f"{name} down")
            return True

        return run

    async def changed(ready: bool) -> None:
        changes.append(ready)

    probe = DependencyProbe({n: check(n) for n in answers}, changed)
    rounds = [await probe.probe_once() for _ in range(5)]
    assert rounds == [True, True, False, False, True]  # one slow answer is not an outage
    assert changes == [True, False, True]
    assert DEPENDENCY_UP.labels("mongodb")._value.get() == 1
