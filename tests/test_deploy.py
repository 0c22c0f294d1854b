"""Deployment files (Dockerfile, compose, nginx, alerts) and the README's production processes."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from quantdesk.mail import OutboxEmail
from tests.conftest import TEST_REDIS_URL
from tests.support import BIN, free_port, post_json, running_server, server_env

# The test run's own Redis database (other runs on this machine use others).
BROKER_URL = TEST_REDIS_URL
APP_SERVICES = {"web", "worker", "scheduler"}


@pytest.fixture
def compose(repo_root: Path) -> dict[str, Any]:
    data = yaml.safe_load((repo_root / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_every_service_with_health_checks_and_volumes(
    compose: dict[str, Any], repo_root: Path
) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "init-db", "nginx", *APP_SERVICES}
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name == "init-db":
            assert check == {"disable": True}
            continue
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert len(check["test"]) > 1, name
    declared = set(compose["volumes"])
    used = {
        volume.split(":", 1)[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith(".")
    }
    assert used == declared, (used, declared)
    assert {"postgres-data", "redis-data"} <= used
    for volume in (v for s in services.values() for v in s.get("volumes", [])):
        if volume.startswith("./"):
            assert (repo_root / volume.split(":", 1)[0]).exists(), volume


def test_compose_commands_and_start_order(compose: dict[str, Any], repo_root: Path) -> None:
    services = compose["services"]
    assert services["init-db"]["command"] == ["quantdesk", "init-db"]
    assert services["init-db"]["restart"] == "no"
    assert services["worker"]["command"] == ["quantdesk", "worker"]
    assert services["scheduler"]["command"] == ["quantdesk", "scheduler"]
    web = services["web"]["command"]
    assert web[:3] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
    assert web[-1] == "quantdesk.wsgi:app"
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == "."
        assert service["depends_on"]["init-db"]["condition"] == "service_completed_successfully"
        env = service["environment"]
        assert env["QUANTDESK_ENV"] == "production"
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379/")
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        # Secrets are required from the environment, never defaulted in the file.
        for secret in ("SECRET_KEY", "JWT_SECRET_KEY"):
            assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", env[secret]), env[secret]
    assert services["init-db"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
    # The worker's health check is its metrics port, which it is told to serve.
    worker = services["worker"]
    port = worker["environment"]["WORKER_METRICS_PORT"]
    assert f"http://127.0.0.1:{port}/metrics" in worker["healthcheck"]["test"]


def test_nginx_proxies_the_web_service(compose: dict[str, Any], repo_root: Path) -> None:
    conf = (repo_root / "deploy" / "nginx.conf").read_text()
    (port,) = compose["services"]["web"]["expose"]
    assert f"server web:{port};" in conf
    assert "proxy_pass http://quantdesk_web;" in conf
    stream = conf[conf.index("location = /api/notifications/stream") :]
    assert "proxy_buffering off;" in stream[: stream.index("}")]
    metrics = conf[conf.index("location = /metrics") :]
    assert "return 404;" in metrics[: metrics.index("}")]
    assert conf.count("{") == conf.count("}")


def test_dockerfile_is_multi_stage_hash_pinned_and_unprivileged(repo_root: Path) -> None:
    lines = [
        line.strip()
        for line in (repo_root / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2
    assert any("COPY --from=build /opt/venv" in line for line in lines)
    install = next(line for line in lines if "-r requirements.lock" in line)
    assert "--require-hashes" in install
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid not in {"0", "root"}
    runtime = lines[lines.index(stages[-1]) :]
    assert any(line.startswith("HEALTHCHECK") for line in runtime)
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (repo_root / source).exists(), source


def test_healthcheck_exits_nonzero_when_nothing_answers(tmp_path: Path) -> None:
    failed = subprocess.run(
        [sys.executable, "-m", "quantdesk.healthcheck", f"http://127.0.0.1:{free_port()}/"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 1
    assert "unhealthy" in failed.stderr
    env = server_env(VAR_DIR=str(tmp_path), DATABASE_URL="postgresql+psycopg://x@127.0.0.1:1/x")
    backends = subprocess.run(
        [sys.executable, "-m", "quantdesk.healthcheck", "--backends"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert backends.returncode == 1
    assert "database" in backends.stderr


# ---------------------------------------------------------------- the README's processes


def readme_production_commands(repo_root: Path) -> dict[str, tuple[dict[str, str], list[str]]]:
    """The command lines of the README's "Without Docker" block, by program: (env, argv)."""
    readme = (repo_root / "README.md").read_text()
    section = readme[readme.index("**Without Docker**") :]
    block = section[section.index("```bash\n") + 8 :]
    block = block[: block.index("```")]
    commands: dict[str, tuple[dict[str, str], list[str]]] = {}
    for line in block.splitlines():
        tokens = shlex.split(line, comments=True)
        if not tokens or tokens[0] == "export":
            continue
        env: dict[str, str] = {}
        while "=" in tokens[0]:
            name, value = tokens.pop(0).split("=", 1)
            env[name] = value
        key = tokens[0] if tokens[0] != "quantdesk" else f"quantdesk {tokens[1]}"
        commands[key] = (env, tokens)
    return commands


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.slow
def test_readme_production_processes_start_and_work_together(
    tmp_path: Path, repo_root: Path, scratch_database: Callable[[str], str]
) -> None:
    commands = readme_production_commands(repo_root)
    assert set(commands) == {
        "quantdesk init-db",
        "gunicorn",
        "quantdesk worker",
        "quantdesk scheduler",
    }
    redis.Redis.from_url(BROKER_URL).flushdb()
    database_url = scratch_database("stack")
    base = server_env(
        QUANTDESK_ENV="production",
        DATABASE_URL=database_url,
        REDIS_URL=TEST_REDIS_URL,
        CELERY_BROKER_URL=BROKER_URL,
        SECRET_KEY="s" * 40,
        JWT_SECRET_KEY="j" * 40,
        VAR_DIR=str(tmp_path),
        SCHEDULER_IN_SERVER="false",
    )
    web_port, worker_port = free_port(), free_port()

    def prepared(key: str, **extra: str) -> tuple[dict[str, str], list[str]]:
        env, argv = commands[key]
        # The README's folders and ports, moved into this test's own.
        tmp = "/tmp/"  # noqa: S108 (only recognised, never used)
        env = {k: str(tmp_path / Path(v).name) if v.startswith(tmp) else v for k, v in env.items()}
        if "WORKER_METRICS_PORT" in env:
            env["WORKER_METRICS_PORT"] = str(worker_port)
        return {**base, **env, **extra}, [str(BIN / argv[0]), *argv[1:]]

    env, argv = prepared("quantdesk init-db")
    init = subprocess.run(argv, env=env, capture_output=True, cwd=repo_root, timeout=120)
    assert init.returncode == 0, init.stderr

    with ExitStack() as stack:
        env, argv = prepared(
            "gunicorn", GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{web_port} --workers 2"
        )
        web_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
        web_dir.mkdir()
        (web_dir / "counter_stale.db").write_bytes(b"")  # an earlier run's: emptied at start
        web = stack.enter_context(_running_in(repo_root, argv, env, web_port))
        assert not (web_dir / "counter_stale.db").exists()
        env, argv = prepared("quantdesk worker")
        worker = stack.enter_context(_process(argv, env, tmp_path / "worker.log"))
        env, argv = prepared("quantdesk scheduler")
        scheduler = stack.enter_context(_process(argv, env, tmp_path / "scheduler.log"))

        web_url = f"http://127.0.0.1:{web_port}"
        ready = _scrape(f"{web_url}/api/health/ready").replace(" ", "")
        for check in ("database", "redis", "broker"):
            assert f'"{check}":"ok"' in ready, ready

        # A task goes from the web tier through Redis to the worker, and is counted there.
        status, body = post_json(
            f"{web_url}/api/auth/register",
            '{"username": "ops", "email": "ops@example.com", "password": "long enough pw"}',
        )
        assert status == 201, body
        status, body = post_json(
            f"{web_url}/api/auth/reset-password", '{"email": "ops@example.com"}'
        )
        assert status == 202, body
        _wait_for(lambda: _mail_sent(database_url), "the worker to deliver the mail")
        worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
        task = "quantdesk.mail.deliver_outbox_email"
        _wait_for(
            lambda: (
                _sample(
                    _scrape(worker_metrics), "quantdesk_tasks_total", task=task, outcome="succeeded"
                )
                == 1
            ),
            "the worker's task count",
        )
        worker_text = _scrape(worker_metrics)
        assert _sample(worker_text, "quantdesk_task_duration_seconds_count", task=task) == 1
        assert _sample(worker_text, "quantdesk_queue_depth", queue="celery") == 0
        assert _sample(worker_text, "quantdesk_broker_up") == 1

        # Both gunicorn workers' counts add up in one scrape (multiprocess mode).
        labels = {"method": "GET", "endpoint": "/api/health", "status": "200"}
        before = _sample(_scrape(f"{web_url}/metrics"), "quantdesk_http_requests_total", **labels)
        for _ in range(12):
            _scrape(f"{web_url}/api/health")
        after = _sample(_scrape(f"{web_url}/metrics"), "quantdesk_http_requests_total", **labels)
        assert after - before == 12
        assert len(list(web_dir.glob("*.db"))) >= 2  # files of more than one process

        # The containers' health checks pass against these processes.
        for argv in (
            [sys.executable, "-m", "quantdesk.healthcheck", f"{web_url}/api/health/ready"],
            [sys.executable, "-m", "quantdesk.healthcheck", worker_metrics],
            [sys.executable, "-m", "quantdesk.healthcheck", "--backends"],
        ):
            check = subprocess.run(argv, env=base, capture_output=True, text=True, timeout=60)
            assert check.returncode == 0, (argv, check.stderr)
        for name, process in (("web", web), ("worker", worker), ("scheduler", scheduler)):
            assert process.poll() is None, (
                name,
                (tmp_path / f"{name}.log").read_text()[-2000:] if name != "web" else "",
            )
    assert "scheduler running" in (tmp_path / "scheduler.log").read_text()
    assert scheduler.returncode == 0, (tmp_path / "scheduler.log").read_text()[-2000:]


@contextmanager
def _running_in(
    cwd: Path, argv: list[str], env: dict[str, str], port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """running_server from the repository root (the README's relative deploy/ path)."""
    import os

    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with running_server(argv, env, port) as process:
            os.chdir(previous)
            yield process
    finally:
        os.chdir(previous)


def _mail_sent(database_url: str) -> bool:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            mail = session.scalars(select(OutboxEmail)).first()
            return mail is not None and mail.status != "pending"
    finally:
        engine.dispose()
