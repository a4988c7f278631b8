"""Traces: one run_python_code, seen by the OpenTelemetry SDK's in-memory exporter, is a tree
under fastmcp's request span: raykernel.run (session, node, outcome) with its queue, its call
to the session's actor and the kernel's execution. The context reaches the actor too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastmcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import run


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


async def test_the_span_tree_of_one_run(
    client: Client, scratch: str, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    reply = await run(client, "import time\ntime.sleep(0.2)\n'done'", session_id=scratch)
    assert reply["success"] is True
    finished = spans.get_finished_spans()
    runs = [s for s in finished if s.name == "raykernel.run"]
    assert len(runs) == 1
    run_span = runs[0]
    attributes = dict(run_span.attributes or {})
    assert attributes["raykernel.session_id"] == scratch
    assert attributes["raykernel.operation"] == "execute"
    assert attributes["raykernel.outcome"] == "ok"
    assert attributes["raykernel.node_id"]
    # Its parent is fastmcp's span of the request, in the same trace.
    parent = next(s for s in finished if s.context.span_id == run_span.parent.span_id)
    assert "run_python_code" in parent.name
    children = {
        s.name: s for s in finished if s.parent and s.parent.span_id == run_span.context.span_id
    }
    assert {"raykernel.queue", "raykernel.actor_call"} <= set(children)
    call = children["raykernel.actor_call"]
    kernel = next(s for s in finished if s.parent and s.parent.span_id == call.context.span_id)
    assert kernel.name == "raykernel.kernel"
    assert (kernel.end_time - kernel.start_time) / 1e9 >= 0.2
    assert {s.context.trace_id for s in (parent, run_span, call, kernel)} == {
        run_span.context.trace_id
    }


async def test_a_failed_run_says_so(
    client: Client, scratch: str, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    await run(client, "1 / 0", session_id=scratch)
    (run_span,) = [s for s in spans.get_finished_spans() if s.name == "raykernel.run"]
    assert run_span.attributes["raykernel.outcome"] == "error"
