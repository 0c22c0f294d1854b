"""Fixtures of the notification tests: an app with fast retries, a real SMTP server and a real
HTTP server on loopback that records what it receives and answers as scripted."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from quantdesk.extensions import extensions_of
from quantdesk.notifications.service import notify
from tests.support import Account, Api

OK_ANSWER = {"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"}


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A real HTTP server on 127.0.0.1 in a thread: records requests, answers from a script."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            "POST",
                            parts.path,
                            parse_qs(parts.query),
                            {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length),
                        )
                    )
                    status, answer, headers = (
                        receiver._script.popleft() if receiver._script else (200, OK_ANSWER, {})
                    )
                body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *responses: tuple[int, Any] | tuple[int, Any, dict[str, str]]) -> None:
        """The next answers, in order; afterwards 200 with every bot's "ok"."""
        for response in responses:
            status, answer, *rest = response
            self._script.append((status, answer, rest[0] if rest else {}))

    def to(self, path: str) -> list[Received]:
        return [request for request in self.requests if request.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server._thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


FAST_RETRIES = {"NOTIFY_BACKOFF_SECONDS": 0.01, "NOTIFY_RETRIES": 3}


@pytest.fixture
def napp(make_app: Callable[..., Flask]) -> Flask:
    """An app whose delivery retries wait milliseconds, not seconds."""
    return make_app(**FAST_RETRIES)


@pytest.fixture
def napi(napp: Flask) -> Api:
    return Api(napp)


def raise_event(app: Flask, user_id: int, event: str, data: dict[str, Any] | None = None) -> int:
    """What another domain does: `notify()` in a session of its own; the notification's id."""
    ext = extensions_of(app)
    with ext.db.session_scope() as session:
        notification = notify(session, user_id=user_id, event=event, data=data or {}, runtime=ext)
        assert notification is not None
        return notification.id


def put_settings(api: Api, account: Account, body: dict[str, Any]) -> dict[str, Any]:
    response = api.put("/api/notifications/settings", headers=account.headers, json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def deliveries(api: Api, account: Account, notification_id: int) -> list[dict[str, Any]]:
    response = api.get(f"/api/notifications/{notification_id}/deliveries", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


BACKTEST = {
    "backtest_id": 7,
    "name": "MA cross 2020",
    "strategy_name": "Dual MA",
    "total_return": 0.1234,
    "annual_return": 0.05,
    "sharpe_ratio": 1.2345,
    "max_drawdown": -0.08,
    "final_value": 1123400.0,
}
