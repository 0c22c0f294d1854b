"""Prometheus metrics at /metrics, readiness of the broker, and the alert rules' metric names."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import yaml
from flask import Flask

from quantdesk.extensions import extensions_of
from quantdesk.tasks import background_task
from tests.conftest import TEST_REDIS_URL, Backend
from tests.support import Api, assert_error

# The test run's own Redis database (other runs on this machine use others).
BROKER_URL = TEST_REDIS_URL


@background_task
def failing_task(message: str) -> None:
    raise RuntimeError(message)


def _metrics(api: Api) -> str:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        matches = line.startswith((name + "{", name + " "))
        if matches and all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_requests_are_counted_by_url_rule_not_path(api: Api) -> None:
    before = _metrics(api)
    rule = "/api/admin/users/<int:user_id>"
    labels = {"method": "PATCH", "endpoint": rule, "status": "401"}
    for user_id in (987654, 987655):
        assert api.patch(f"/api/admin/users/{user_id}", json={}).status_code == 401
    assert api.get("/api/no-such-thing-4711").status_code == 404
    assert api.get("/api/health").status_code == 200
    after = _metrics(api)
    count = "quantdesk_http_requests_total"
    assert _sample(after, count, **labels) - _sample(before, count, **labels) == 2
    unmatched = {"method": "GET", "endpoint": "<unmatched>", "status": "404"}
    assert _sample(after, count, **unmatched) - _sample(before, count, **unmatched) == 1
    assert "987654" not in after
    assert "no-such-thing" not in after
    latency = "quantdesk_http_request_duration_seconds_count"
    health = {"method": "GET", "endpoint": "/api/health"}
    assert _sample(after, latency, **health) - _sample(before, latency, **health) == 1
    assert _sample(after, "quantdesk_http_request_duration_seconds_sum", **health) > 0


def test_tasks_are_counted_with_their_outcome(api: Api, app: Flask) -> None:
    ok = {"task": "quantdesk.mail.deliver_outbox_email", "outcome": "succeeded"}
    failed = {"task": failing_task.task_name, "outcome": "failed"}  # type: ignore[attr-defined]
    before = _metrics(api)
    account = api.register()
    assert api.post("/api/auth/reset-password", json={"email": account.email}).status_code == 202
    with pytest.raises(RuntimeError, match="boom"):
        extensions_of(app).tasks.submit(failing_task, "boom")  # eager in tests: inline
    after = _metrics(api)
    total = "quantdesk_tasks_total"
    assert _sample(after, total, **ok) - _sample(before, total, **ok) == 1
    assert _sample(after, total, **failed) - _sample(before, total, **failed) == 1
    duration = "quantdesk_task_duration_seconds_count"
    task = {"task": ok["task"]}
    assert _sample(after, duration, **task) - _sample(before, duration, **task) == 1


def test_queue_depth_is_the_brokers_queue_length(make_app: Callable[..., Flask]) -> None:
    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()
    try:
        api = Api(make_app(CELERY_BROKER_URL=BROKER_URL, TASKS_EAGER=False))
        assert _sample(_metrics(api), "quantdesk_queue_depth", queue="celery") == 0
        for n in range(3):
            account = api.register(f"queued{n}")
            response = api.post("/api/auth/reset-password", json={"email": account.email})
            assert response.status_code == 202
        text = _metrics(api)
        assert broker.llen("celery") == 3
        assert _sample(text, "quantdesk_queue_depth", queue="celery") == 3
        assert _sample(text, "quantdesk_broker_up") == 1
        ready = api.get("/api/health/ready")
        assert ready.status_code == 200
        assert ready.get_json()["checks"]["broker"] == "ok"
    finally:
        broker.flushdb()


def test_broker_down_is_not_ready_and_reported(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(CELERY_BROKER_URL="redis://127.0.0.1:1/0", TASKS_EAGER=False))
    error = assert_error(api.get("/api/health/ready"), 503, "service_unavailable")
    assert error["details"]["checks"]["broker"] == "unavailable"
    assert error["details"]["checks"]["database"] == "ok"
    text = _metrics(api)
    assert _sample(text, "quantdesk_broker_up") == 0
    assert "quantdesk_queue_depth{" not in text


def test_ready_reports_no_broker_when_none_is_configured(api: Api, backend: Backend) -> None:
    checks = api.get("/api/health/ready").get_json()["checks"]
    assert checks["broker"] == "not_configured"


def test_alert_rules_use_exported_metrics(repo_root: Path, make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(CELERY_BROKER_URL=BROKER_URL))
    api.get("/api/health")
    account = api.register()
    api.post("/api/auth/reset-password", json={"email": account.email})
    exported = {
        line.split("{")[0].split(" ")[0]
        for line in _metrics(api).splitlines()
        if line and not line.startswith("#")
    }
    assert {
        "quantdesk_http_requests_total",
        "quantdesk_http_request_duration_seconds_bucket",
        "quantdesk_tasks_total",
        "quantdesk_queue_depth",
        "quantdesk_broker_up",
    } <= exported
    rules = yaml.safe_load((repo_root / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    for alert in (
        "QuantDeskHighErrorRate",
        "QuantDeskQueueBacklog",
        "QuantDeskTasksFailing",
        "QuantDeskWorkerDown",
    ):
        assert alert in alerts
    jobs = {
        job["job_name"]
        for job in yaml.safe_load(
            (repo_root / "deploy" / "prometheus" / "prometheus.yml").read_text()
        )["scrape_configs"]
    }
    for name, rule in alerts.items():
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")"), name
        assert rule["annotations"]["summary"], name
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        names = set(re.findall(r"\b(quantdesk_[a-z_]+)\b", expr))
        assert names <= exported, (name, names - exported)
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in jobs, (name, job)
        assert names or "up{" in expr, name
    outcome = re.search(r'outcome="(\w+)"', alerts["QuantDeskTasksFailing"]["expr"])
    assert outcome is not None
    assert outcome.group(1) == "failed"
    assert 'status=~"5.."' in alerts["QuantDeskHighErrorRate"]["expr"]
