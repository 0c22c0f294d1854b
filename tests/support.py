"""A small client for the tests: the JSON calls a front end makes, with the checks they share."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

PASSWORD = "correct horse battery"
BIN = Path(sys.executable).parent  # the venv's console scripts: quantdesk, gunicorn
_counter = itertools.count(1)


def assert_error(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is API.md's error shape with this status (and code); returns the error."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    username: str
    email: str
    password: str
    id: int = 0
    access_token: str = ""
    refresh_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


class Api:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.post(path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.put(path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.patch(path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.delete(path, **kwargs)

    def register(self, username: str | None = None, password: str = PASSWORD) -> Account:
        n = next(_counter)
        username = username or f"user{n}"
        email = f"{username.lower()}@example.com"
        response = self.post(
            "/api/auth/register",
            json={"username": username, "email": email, "password": password},
        )
        assert response.status_code == 201, response.get_json()
        return Account(username, email, password, id=response.get_json()["id"])

    def login(self, account: Account, password: str | None = None) -> TestResponse:
        return self.post(
            "/api/auth/login",
            json={"username": account.username, "password": password or account.password},
        )

    def logged_in(self, username: str | None = None) -> Account:
        account = self.register(username)
        response = self.login(account)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        account.access_token = body["access_token"]
        account.refresh_token = body["refresh_token"]
        return account


# ---------------------------------------------------------------- real server processes


def server_env(**values: str) -> dict[str, str]:
    """A clean environment for a child process: no setting leaks in from the test machine."""
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    return {
        **keep,
        "LOG_LEVEL": "WARNING",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "8",
        **values,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(
    argv: list[str], env: dict[str, str], port: int
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5):
                    break
            except OSError:  # refused, reset, or timed out while the workers boot
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"server did not start: {output}")
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


def post_json(url: str, body: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
