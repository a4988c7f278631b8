"""Traces (OpenTelemetry) and metrics (Ray's own) of sessions.

Traces: fastmcp opens a span per request; raykernel continues it with child spans for a run
(``raykernel.run``: its wait in the session's queue, the call to the session's actor, and the
kernel's execution, timed by the kernel) and for installs, control calls, snapshots, restores
and hibernation, with the session id, node and outcome as attributes. The trace context
travels explicitly to the session's actor (a W3C ``traceparent`` carrier in the call), which
continues the trace if its process exports spans. Exporting is configured the standard way:
with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set and the
``otel`` extra installed, spans go to that OTLP endpoint; with nothing configured the API's
no-op tracer costs next to nothing and nothing is exported.

Metrics: ``ray.util.metrics`` counters, gauges and a histogram, recorded once Ray is up in
this process, exported by Ray's metrics agent (its Prometheus endpoint, the Ray dashboard):
that agent comes with ``ray[default]``; a minimal Ray drops them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from opentelemetry import propagate, trace

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("raykernel")
_configured = False


def configure_from_env() -> bool:
    """Export spans over OTLP when the environment asks for it (and the SDK is installed);
    whether an exporter was set up here."""
    global _configured
    wanted = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if _configured or not wanted or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed")
        return False
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        service = os.environ.get("OTEL_SERVICE_NAME", "raykernel")
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    _configured = True
    return True


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A child span of the current one; ``attributes`` are namespaced ``raykernel.*``."""
    with TRACER.start_as_current_span(name, attributes=_attrs(attributes)) as current:
        yield current


def set_attributes(current: trace.Span, **attributes: Any) -> None:
    current.set_attributes(_attrs(attributes))


def start_span(name: str, **attributes: Any) -> trace.Span:
    """A child span of the current one, ended by the caller (``span.end()``); make it current
    for a while with ``trace.use_span(span)``."""
    return TRACER.start_span(name, attributes=_attrs(attributes))


def use(current: trace.Span) -> Any:
    return trace.use_span(current, end_on_exit=False)


def record_span(
    name: str, start: float, end: float, parent: trace.Span | None = None, **attributes: Any
) -> None:
    """A finished span from times measured elsewhere (the kernel's), in seconds since the
    epoch: a child of ``parent``, else of the current span."""
    parent = parent or trace.get_current_span()
    if not parent.is_recording():
        return
    child = TRACER.start_span(
        name,
        context=trace.set_span_in_context(parent),
        start_time=int(start * 1e9),
        attributes=_attrs(attributes),
    )
    child.end(end_time=int(end * 1e9))


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, to pass along a call to another process."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextlib.contextmanager
def continued(headers: dict[str, str] | None, name: str, **attributes: Any) -> Iterator[None]:
    """In another process: a span continuing the caller's trace from ``carrier()``."""
    context = propagate.extract(headers or {})
    with TRACER.start_as_current_span(name, context=context, attributes=_attrs(attributes)):
        yield


def _attrs(attributes: dict[str, Any]) -> dict[str, Any]:
    return {f"raykernel.{k}": v for k, v in attributes.items() if v is not None}


# -- metrics -------------------------------------------------------------------------------------


class Metrics:
    """Ray metrics of this front end's sessions; no-ops until Ray is up here."""

    RUN_SECONDS = (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600)

    def __init__(self) -> None:
        self._made: dict[str, Any] | None = None
        self._shown: set[tuple[str, str]] = set()

    def _metrics(self) -> dict[str, Any] | None:
        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized():
            return None
        if self._made is None:
            from ray.util.metrics import Counter, Gauge, Histogram

            self._made = {
                "sessions": Gauge(
                    "raykernel_sessions",
                    description="Sessions by status and node.",
                    tag_keys=("status", "node"),
                ),
                "runs": Counter(
                    "raykernel_runs",
                    description="Finished runs by operation and outcome.",
                    tag_keys=("operation", "outcome"),
                ),
                "run_seconds": Histogram(
                    "raykernel_run_seconds",
                    description="How long runs took, queue excluded.",
                    boundaries=list(self.RUN_SECONDS),
                    tag_keys=("operation",),
                ),
                "interrupts": Counter("raykernel_interrupts", description="Runs interrupted."),
                "restarts": Counter(
                    "raykernel_kernel_restarts", description="Kernels restarted (any cause)."
                ),
                "installs": Counter(
                    "raykernel_installs",
                    description="install_dependencies calls by outcome.",
                    tag_keys=("outcome",),
                ),
            }
        return self._made

    def run(self, operation: str, outcome: str, seconds: float) -> None:
        made = self._metrics()
        if made is None:
            return
        made["runs"].inc(1, tags={"operation": operation, "outcome": outcome})
        made["run_seconds"].observe(seconds, tags={"operation": operation})
        if operation == "install":
            made["installs"].inc(1, tags={"outcome": outcome})

    def interrupt(self) -> None:
        if (made := self._metrics()) is not None:
            made["interrupts"].inc(1)

    def restart(self) -> None:
        if (made := self._metrics()) is not None:
            made["restarts"].inc(1)

    def sessions(self, counts: dict[tuple[str, str], int]) -> None:
        """Set the gauge to ``{(status, node): count}`` (zeroing pairs that are gone)."""
        made = self._metrics()
        if made is None:
            return
        for status, node in self._shown - set(counts):
            made["sessions"].set(0, tags={"status": status, "node": node})
        for (status, node), count in counts.items():
            made["sessions"].set(count, tags={"status": status, "node": node})
        self._shown = set(counts)
