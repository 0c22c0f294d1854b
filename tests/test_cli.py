"""The `quantdesk` command and the two ways of serving: the dev server and gunicorn."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from quantdesk.cli import main
from tests.conftest import TEST_REDIS_URL
from tests.support import BIN, free_port, post_json, running_server, server_env


def test_init_db_is_idempotent(tmp_path: Path) -> None:
    runner = CliRunner()
    env = server_env(VAR_DIR=str(tmp_path), DATABASE_URL="")
    for _ in range(2):
        result = runner.invoke(main, ["init-db"], env=env)
        assert result.exit_code == 0, result.output
        assert "database ready" in result.output
    assert (tmp_path / "quantdesk.db").exists()


def test_create_admin_creates_then_promotes(tmp_path: Path) -> None:
    runner = CliRunner()
    env = server_env(VAR_DIR=str(tmp_path), DATABASE_URL="")
    args = ["create-admin", "--username", "boss", "--email", "boss@example.com"]
    created = runner.invoke(main, [*args, "--password", "a long admin password"], env=env)
    assert created.exit_code == 0, created.output
    assert "created boss" in created.output
    assert "admin" in created.output
    again = runner.invoke(main, args, env=env)
    assert again.exit_code == 0, again.output
    assert "granted admin to boss" in again.output
    prompted = runner.invoke(
        main,
        ["create-admin", "--username", "eve", "--email", "eve@example.com"],
        env=env,
        input="another long pw\nanother long pw\n",
    )
    assert prompted.exit_code == 0, prompted.output
    short = runner.invoke(
        main,
        ["create-admin", "--username", "tiny", "--email", "t@example.com", "--password", "x"],
        env=env,
    )
    assert short.exit_code != 0
    assert "too short" in short.output


def test_invalid_settings_are_a_clear_cli_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["init-db"], env=server_env(VAR_DIR=str(tmp_path), ACCESS_TOKEN_MINUTES="zero")
    )
    assert result.exit_code != 0
    assert "ACCESS_TOKEN_MINUTES" in result.output


@pytest.mark.slow
def test_serve_applies_migrations_and_serves_twice(tmp_path: Path) -> None:
    env = server_env(VAR_DIR=str(tmp_path))
    for attempt in range(2):  # the second start finds everything in place
        port = free_port()
        argv = [str(BIN / "quantdesk"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        with running_server(argv, env, port):
            status, body = post_json(
                f"http://127.0.0.1:{port}/api/auth/register",
                f'{{"username": "user{attempt}", "email": "u{attempt}@example.com", '
                '"password": "long enough pw"}',
            )
            assert status == 201, body
            ready_url = f"http://127.0.0.1:{port}/api/health/ready"
            with urllib.request.urlopen(ready_url, timeout=10) as ready:
                assert ready.status == 200
    assert (tmp_path / "quantdesk.db").exists()


@pytest.mark.slow
def test_gunicorn_serves_production_mode(
    tmp_path: Path, repo_root: Path, scratch_database: Callable[[str], str]
) -> None:
    env = server_env(
        QUANTDESK_ENV="production",
        DATABASE_URL=scratch_database("gunicorn"),
        REDIS_URL=TEST_REDIS_URL,
        SECRET_KEY="s" * 40,
        JWT_SECRET_KEY="j" * 40,
        VAR_DIR=str(tmp_path),
    )
    init = subprocess.run([str(BIN / "quantdesk"), "init-db"], env=env, capture_output=True)
    assert init.returncode == 0, init.stderr
    port = free_port()
    argv = [
        str(BIN / "gunicorn"),
        "-c",
        str(repo_root / "deploy" / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "quantdesk.wsgi:app",
    ]
    with running_server(argv, env, port):
        ready_url = f"http://127.0.0.1:{port}/api/health/ready"
        with urllib.request.urlopen(ready_url, timeout=10) as ready:
            assert b'"redis":"ok"' in ready.read().replace(b" ", b"")
        status, body = post_json(
            f"http://127.0.0.1:{port}/api/auth/register",
            '{"username": "gun", "email": "gun@example.com", "password": "long enough pw"}',
        )
        assert status == 201, body
        # Both workers share the database and Redis: several log-ins all succeed.
        for _ in range(4):
            status, body = post_json(
                f"http://127.0.0.1:{port}/api/auth/login",
                '{"username": "gun", "password": "long enough pw"}',
            )
            assert status == 200, body
