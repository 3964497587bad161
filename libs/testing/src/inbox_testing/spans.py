"""Finished spans of this test process, in memory (the ``spans`` fixture).

The recorder has its own always-on SDK tracer provider and, while a test that asked for it
runs, the kit's tracer (``inbox_kit.tracing.TRACER``) is that provider's: the process-wide
provider cannot be replaced once set (a test running a service's ``main`` sets it), and the
rest of the session neither pays for nor accumulates spans. Spans a test starts itself come
from ``tracer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from inbox_kit import tracing
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON


class RecordedSpans(SpanProcessor):
    def __init__(self) -> None:
        self.finished: list[ReadableSpan] = []
        provider = TracerProvider(sampler=ALWAYS_ON)
        provider.add_span_processor(self)
        self.tracer: trace.Tracer = provider.get_tracer("inbox_testing")

    def on_end(self, span: ReadableSpan) -> None:
        self.finished.append(span)

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished if s.name == name]

    def where(self, check: Callable[[ReadableSpan], bool]) -> list[ReadableSpan]:
        return [s for s in self.finished if check(s)]

    def of_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [
            s for s in self.finished if s.context is not None and s.context.trace_id == trace_id
        ]


@contextmanager
def recording_spans() -> Iterator[RecordedSpans]:
    """Record every span the kit makes meanwhile."""
    recorder = RecordedSpans()
    kit_tracer, tracing.TRACER = tracing.TRACER, recorder.tracer
    try:
        yield recorder
    finally:
        tracing.TRACER = kit_tracer


def span_ids(spans: Iterable[ReadableSpan]) -> set[int]:
    return {s.context.span_id for s in spans if s.context is not None}
