"""Prometheus metrics for the judge server (``GET /metrics``), on a registry of the app's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mmreward_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "mmreward_request_latency_seconds",
            "Request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "mmreward_batch_tasks", "Judging tasks per batched engine call", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "mmreward_batch_seconds", "Wall time of one batched engine call", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("mmreward_queue_depth", "Requests waiting for the model worker", registry=r)
        self.errors = Counter("mmreward_errors", "Refused or failed requests by kind", ["kind"], registry=r)
        self.trajectories = Counter(
            "mmreward_trajectories", "Judging trajectories by stop reason", ["stop_reason"], registry=r
        )
        self.cancelled = Counter(
            "mmreward_cancelled",
            "Jobs whose client stopped waiting (disconnect, timeout), by where they were: queued (dropped unrun) "
            "or running (stopped at the next turn)",
            ["stage"],
            registry=r,
        )
        self.tokens = Counter("mmreward_tokens", "Tokens processed by kind (prompt, completion)", ["kind"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
