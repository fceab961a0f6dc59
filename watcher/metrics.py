"""The daemon's figures in the Prometheus text format (`GET /metrics` of the HTTP API).

One registry per daemon (not the process-global default): tests start several daemons in one
process. The pipeline reports to it through small hooks; nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from watcher.messages import Classified, Outcome

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """Counters, gauges and histograms of one daemon."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.verdicts = Counter(
            "deepfake_detector_verdicts",
            "Verdicts stored, by label and origin",
            ["label", "origin"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "deepfake_detector_rejections",
            "Files rejected, by reason code",
            ["reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "deepfake_detector_queue_depth",
            "Files claimed and not yet stored",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "deepfake_detector_batch_size",
            "Pictures per model batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "deepfake_detector_model_seconds",
            "Seconds the model took for one batch",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "deepfake_detector_request_seconds",
            "Seconds from an API upload to its answer",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def stored(self, outcome: Outcome) -> None:
        """One outcome the writer stored."""
        if isinstance(outcome, Classified):
            self.verdicts.labels(outcome.label, outcome.job.origin).inc()
        else:
            self.rejections.labels(outcome.code).inc()

    def batch(self, size: int, seconds: float) -> None:
        """One model batch."""
        self.batch_size.observe(size)
        self.model_seconds.observe(seconds)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        """Read the queue depth from `depth` whenever the figures are collected."""
        self.queue_depth.set_function(depth)

    def text(self) -> bytes:
        """Everything, in the Prometheus text exposition format."""
        return generate_latest(self.registry)
