"""Prometheus metrics: requests per endpoint, background tasks and the queue depth at /metrics.

The only module that imports prometheus_client. With several processes (gunicorn workers, a
Celery worker's pool) set PROMETHEUS_MULTIPROC_DIR in the environment before the process starts:
every process then writes its samples to files there and a scrape adds them up
(prometheus_client's multiprocess mode); gunicorn.conf.py empties the folder at start. Requests
are labelled by their URL rule (`/api/data/stocks/<symbol>/history`), never the raw path, and
unmatched paths share one label, so the number of series stays bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import prometheus_client
import redis
from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Kombu's Redis transport keeps a queue in one list, plus one per priority step when used.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

HTTP_REQUESTS = Counter(
    "quantdesk_http_requests_total",
    "HTTP requests answered, by method, URL rule and status",
    ["method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "quantdesk_http_request_duration_seconds",
    "Time from the request's arrival to its response, by method and URL rule",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TASKS = Counter(
    "quantdesk_tasks_total",
    "Background tasks run, by task name and outcome (succeeded or failed)",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "quantdesk_task_duration_seconds",
    "Run time of background tasks, by task name",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0),
)

QUEUE_DEPTH = "quantdesk_queue_depth"
BROKER_UP = "quantdesk_broker_up"


def multiprocess_dir() -> str | None:
    """The multiprocess folder prometheus_client writes to in this process, if any."""
    return os.environ.get(MULTIPROC_ENV) or None


def clear_multiprocess_dir() -> None:
    """Remove the samples of earlier runs; call once, before the processes that write start."""
    folder = multiprocess_dir()
    if folder is None:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for stale in Path(folder).glob("*.db"):
        stale.unlink(missing_ok=True)


def mark_process_dead(pid: int) -> None:
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def observe_task(name: str) -> Iterator[None]:
    """Count and time one run of the task `name`; an exception counts as failed and goes on."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        yield
        outcome = "succeeded"
    finally:
        TASK_DURATION.labels(name).observe(time.perf_counter() - started)
        TASKS.labels(name, outcome).inc()


class QueueDepthCollector(Collector):
    """At each scrape: the length of the Celery queue in a Redis broker, and whether it answered."""

    def __init__(self, broker_url: str, queue: str = "celery") -> None:
        self.broker_url = broker_url
        self.queue = queue
        self._client: redis.Redis | None = None

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            QUEUE_DEPTH, "Tasks waiting in the broker's queue", labels=["queue"]
        )
        up = GaugeMetricFamily(BROKER_UP, "1 when the broker answered this scrape, else 0")
        try:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.broker_url, socket_connect_timeout=2, socket_timeout=2
                )
            pipe = self._client.pipeline(transaction=False)
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(self.queue + suffix)
            total = sum(int(n) for n in pipe.execute())
        except redis.RedisError as exc:
            log.warning("metrics: broker unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        depth.add_metric([self.queue], total)
        up.add_metric([], 1)
        yield depth
        yield up


def scrape_registry(broker_url: str = "") -> CollectorRegistry:
    """What one scrape reports: this process (or all, in multiprocess mode) and the queue."""
    folder = multiprocess_dir()
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        for collector in (HTTP_REQUESTS, HTTP_LATENCY, TASKS, TASK_DURATION):
            registry.register(collector)
    if broker_url.startswith(("redis://", "rediss://")):
        registry.register(QueueDepthCollector(broker_url))
    return registry


def _record_request(response: Response) -> Response:
    started = g.get("request_started")
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else UNMATCHED
    method = request.method if request.method in _METHODS else "OTHER"
    HTTP_REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
    if started is not None:
        HTTP_LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)
    return response


def install_metrics(app: Flask, *, broker_url: str) -> None:
    """Count this app's requests and serve `GET /metrics` (Prometheus text format)."""
    registry = scrape_registry(broker_url)
    app.after_request(_record_request)

    def metrics() -> Response:
        return Response(
            prometheus_client.generate_latest(registry),
            mimetype=prometheus_client.CONTENT_TYPE_LATEST,
        )

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])


def start_metrics_server(port: int, *, broker_url: str = "") -> None:
    """Serve /metrics on `port` from a thread of this process (a Celery worker's main process)."""
    prometheus_client.start_http_server(port, registry=scrape_registry(broker_url))
    log.info("metrics on :%s/metrics (multiprocess: %s)", port, multiprocess_dir() or "no")
