"""Finished spans of this test process, in memory (the ``spans`` fixture).

The SDK tracer provider can be installed only once per process, so it is installed at the
first use and stays; spans are kept only while a test that asked for them runs, so the rest
of the session neither pays for nor accumulates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON


class RecordedSpans(SpanProcessor):
    def __init__(self) -> None:
        self.active = False
        self.finished: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            self.finished.append(span)

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished if s.name == name]

    def where(self, check: Callable[[ReadableSpan], bool]) -> list[ReadableSpan]:
        return [s for s in self.finished if check(s)]

    def of_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [
            s for s in self.finished if s.context is not None and s.context.trace_id == trace_id
        ]


_recorder: RecordedSpans | None = None


def recorded_spans() -> RecordedSpans:
    """The process's recorder (installs an always-on SDK provider the first time)."""
    global _recorder
    if _recorder is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider(sampler=ALWAYS_ON)
            trace.set_tracer_provider(provider)
        _recorder = RecordedSpans()
        provider.add_span_processor(_recorder)
    return _recorder


def span_ids(spans: Iterable[ReadableSpan]) -> set[int]:
    return {s.context.span_id for s in spans if s.context is not None}
