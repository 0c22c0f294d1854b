"""Health, readiness, API docs (offline), security headers, CORS, request ids and JSON logs."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask, request
from werkzeug.exceptions import UnprocessableEntity

from quantdesk.app import create_app
from quantdesk.extensions import extensions_of
from quantdesk.files import routes as files_routes
from quantdesk.market import routes as market_routes
from quantdesk.market.schemas import HistoryArgs
from quantdesk.openapi import SchemaOnceParser
from tests.conftest import Backend
from tests.support import Api, assert_error


def test_health_is_ok(api: Api) -> None:
    response = api.get("/api/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_checks_the_database_and_redis(api: Api, backend: Backend) -> None:
    response = api.get("/api/health/ready")
    assert response.status_code == 200
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok"
    assert checks["redis"] == ("ok" if backend.name == "production" else "not_configured")
    assert checks["database_replica"] == "not_configured"


def test_ready_is_503_when_redis_is_down(backend: Backend) -> None:
    # Port 1 on loopback: nothing listens there.
    app = create_app(backend.make_settings(REDIS_URL="redis://127.0.0.1:1/0"))
    try:
        response = Api(app).get("/api/health/ready")
    finally:
        extensions_of(app).db.dispose()
    error = assert_error(response, 503, "service_unavailable")
    assert error["details"]["checks"]["redis"] == "unavailable"
    assert error["details"]["checks"]["database"] == "ok"


def test_ready_is_503_when_the_database_is_down(backend: Backend) -> None:
    app = create_app(
        backend.make_settings(DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none")
    )
    try:
        response = Api(app).get("/api/health/ready")
    finally:
        extensions_of(app).db.dispose()
    error = assert_error(response, 503)
    assert error["details"]["checks"]["database"] == "unavailable"


def test_openapi_document_lists_every_auth_endpoint(api: Api) -> None:
    spec = api.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    expected = {
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/auth/refresh", "post"),
        ("/api/auth/profile", "get"),
        ("/api/auth/profile", "put"),
        ("/api/auth/change-password", "post"),
        ("/api/auth/reset-password", "post"),
        ("/api/health", "get"),
        ("/api/health/ready", "get"),
    }
    for path, method in expected:
        assert method in paths.get(path, {}), (path, method)
        operation = paths[path][method]
        assert operation["summary"], (path, method)
        assert any(code.startswith("2") for code in operation["responses"]), (path, method)
    login = paths["/api/auth/login"]["post"]
    assert "requestBody" in login
    assert "422" in login["responses"]
    schemas = spec["components"]["schemas"]
    assert {"RegisterIn", "LoginIn", "TokensOut", "UserOut", "ErrorOut"} <= set(schemas)
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_swagger_ui_loads_only_local_assets(api: Api) -> None:
    page = api.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/api/"), f"{asset} would leave this server"
        response = api.get(asset)
        assert response.status_code == 200, asset
        assert len(response.get_data()) > 1000, asset
    assert '"/api/openapi.json"' in html
    # The docs page's policy only allows this origin.
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_security_headers_on_every_response(api: Api) -> None:
    for response in (api.get("/api/health"), api.get("/api/missing")):
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    login = api.post("/api/auth/login", json={"username": "x", "password": "y"})
    assert login.headers["Cache-Control"] == "no-store"


def test_cors_allows_only_configured_origins(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(CORS_ORIGINS="https://app.quantdesk.example"))
    allowed = api.get("/api/health", headers={"Origin": "https://app.quantdesk.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.quantdesk.example"
    denied = api.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers
    preflight = api.client.options(
        "/api/auth/login",
        headers={
            "Origin": "https://app.quantdesk.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()


def test_request_id_is_echoed_or_generated(api: Api) -> None:
    given = api.get("/api/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    generated = api.get("/api/health")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    hostile = api.get("/api/health", headers={"X-Request-ID": "<script>" + "y" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])


def test_log_lines_are_json_with_the_request_id(make_app: Callable[..., Flask]) -> None:
    app = make_app(LOG_LEVEL="INFO", LOG_FORMAT="json")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "quantdesk")
    stream = io.StringIO()
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        response = Api(app).post(
            "/api/auth/login",
            json={"username": "nobody", "password": "whatever1"},
            headers={"X-Request-ID": "trace-me-42"},
        )
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    assert response.headers["X-Request-ID"] == "trace-me-42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    assert lines, "no log lines"
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line)
    access = [line for line in lines if line["logger"] == "quantdesk.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "trace-me-42"
    assert access[0]["status"] == 401
    assert access[0]["path"] == "/api/auth/login"
    assert isinstance(access[0]["duration_ms"], float)


def test_argument_schemas_are_built_once_and_shared_safely_by_threads(app: Flask) -> None:
    """Every blueprint's parser builds a schema class once (SchemaOnceParser); threads loading
    different arguments through the one instance each get their own."""
    parser = market_routes.blp.ARGUMENTS_PARSER
    assert isinstance(parser, SchemaOnceParser)
    assert isinstance(files_routes.blp.ARGUMENTS_PARSER, SchemaOnceParser)  # multipart too
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(64)]
    schemas: set[int] = set()

    def parse(day: dt.date) -> dt.date:
        with app.test_request_context(f"/?start={day.isoformat()}&adjust=none"):
            schemas.add(id(parser._get_schema(HistoryArgs, request)))
            return parser.parse(HistoryArgs, request, location="query")["start"]  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(parse, days)) == days
    assert len(schemas) == 1
    with app.test_request_context("/?start=not-a-date"), pytest.raises(UnprocessableEntity):
        parser.parse(HistoryArgs, request, location="query")
