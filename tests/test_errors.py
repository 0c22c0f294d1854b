"""API.md's one error shape for every status, and bad input that never becomes a 500."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from tests.support import PASSWORD, Api, assert_error

SQL_INJECTIONS = [
    "' OR '1'='1",
    "admin'--",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "1; SELECT pg_sleep(5)",
    "%' UNION SELECT password_hash FROM users --",
    "\\'; DELETE FROM users WHERE 'a'='a",
    "admin\u0000",
    "\uff53\uff45\uff4c\uff45\uff43\uff54\uff0a",  # fullwidth "select*"
    "' OR 1=1 LIMIT 1 OFFSET 1 --" * 20,
]


def test_unknown_path_is_404_in_the_error_shape(api: Api) -> None:
    assert_error(api.get("/api/nowhere"), 404, "not_found")
    assert_error(api.get("/not-even-api"), 404, "not_found")


def test_405_keeps_the_allow_header(api: Api) -> None:
    response = api.delete("/api/auth/login")
    assert_error(response, 405, "method_not_allowed")
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert "POST" in allowed
    assert "DELETE" not in allowed


def test_malformed_json_is_400(api: Api) -> None:
    response = api.post(
        "/api/auth/login", data='{"username": "x", "password": ', content_type="application/json"
    )
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "42", "true"])
def test_json_that_is_not_an_object_is_4xx(api: Api, body: str) -> None:
    response = api.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code in {400, 422}
    assert_error(response, response.status_code)


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/x-www-form-urlencoded", "username=a&password=b"),
        ("text/plain", '{"username": "a", "password": "b"}'),
        ("multipart/form-data; boundary=xyz", "--xyz--"),
    ],
)
def test_non_json_body_where_json_is_required_is_415(
    api: Api, content_type: str, data: str
) -> None:
    response = api.post("/api/auth/login", data=data, content_type=content_type)
    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"]


def test_body_over_the_limit_is_413(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(MAX_CONTENT_MB=1))
    payload = json.dumps({"username": "x" * (1024 * 1024 + 10), "password": "y"})
    response = api.post("/api/auth/login", data=payload, content_type="application/json")
    assert_error(response, 413, "payload_too_large")


def test_422_names_every_bad_field(api: Api) -> None:
    response = api.post(
        "/api/auth/register",
        json={"username": "!", "email": "bad", "password": PASSWORD, "extra": 1},
    )
    error = assert_error(response, 422, "validation_error")
    assert set(error["details"]) == {"username", "email", "extra"}
    assert all(isinstance(messages, list) for messages in error["details"].values())


@pytest.mark.parametrize("value", SQL_INJECTIONS)
def test_sql_injection_strings_in_any_field_are_4xx_and_harmless(
    api: Api, db: Session, value: str
) -> None:
    account = api.logged_in()
    users_before = db.scalar(select(func.count()).select_from(User))
    responses = [
        api.post("/api/auth/login", json={"username": value, "password": value}),
        api.post("/api/auth/login", json={"email": value, "password": PASSWORD}),
        api.post("/api/auth/register", json={"username": value, "email": value, "password": value}),
        api.post(
            "/api/auth/register",
            json={"username": "okname", "email": f"{value}@example.com", "password": value},
        ),
        api.post("/api/auth/reset-password", json={"email": value}),
        api.post("/api/auth/reset-password", json={"token": value, "new_password": PASSWORD}),
        api.put("/api/auth/profile", headers=account.headers, json={"full_name": value[:100]}),
        api.put("/api/auth/profile", headers=account.headers, json={"phone": value}),
        api.get(f"/api/admin/users?q={value}", headers=account.headers),
        api.get("/api/auth/profile", headers={"Authorization": f"Bearer {value}"}),
    ]
    for response in responses:
        assert response.status_code < 500, (response.status_code, response.get_json())
        if response.status_code >= 400:
            assert_error(response, response.status_code)
    # The table is still there, and no row appeared or vanished unexpectedly.
    users_after = db.scalar(select(func.count()).select_from(User))
    assert users_after is not None
    assert users_before is not None
    assert users_after - users_before in {0, 1}
    assert api.get("/api/auth/profile", headers=account.headers).status_code == 200


def test_nul_characters_are_refused_with_422(api: Api) -> None:
    account = api.logged_in()
    response = api.put(
        "/api/auth/profile", headers=account.headers, json={"full_name": "bad\u0000name"}
    )
    error = assert_error(response, 422, "validation_error")
    assert "full_name" in error["details"]
    response = api.get("/api/admin/users?q=a%00b", headers=account.headers)
    assert_error(response, 422)


def test_unexpected_error_is_500_with_request_id_and_no_trace(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()

    @app.get("/api/boom")
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "quantdesk")
    stream = io.StringIO()
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        response = Api(app).get("/api/boom", headers={"X-Request-ID": "req-500-test"})
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    error = assert_error(response, 500, "internal_error")
    assert error["details"] == {"request_id": "req-500-test"}
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text
    assert "Traceback" not in text
    logged = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    failure = next(line for line in logged if line.get("level") == "ERROR")
    assert failure["request_id"] == "req-500-test"
    assert "secret internal detail" in failure["exc_info"]


def test_ids_beyond_the_key_range_are_404_not_500(api: Api) -> None:
    account = api.logged_in()
    huge = 2**31
    assert_error(api.get(f"/api/strategies/{huge}", headers=account.headers), 404)
    assert_error(api.get(f"/api/strategies/{huge - 1}", headers=account.headers), 404)
