"""A small client for the tests: the JSON calls a front end makes, with the checks they share."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

PASSWORD = "correct horse battery"
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
