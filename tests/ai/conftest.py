"""AI fixtures: seeded market data, a scripted OpenAI-compatible server on loopback, apps that use
it, and a record of every socket the process opens (the offline analyst must open none)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from tests.ai.llm_server import LLMServer, llm_server
from tests.conftest import Backend
from tests.market.conftest import market_data
from tests.support import Account, Api

__all__ = ["market_data"]

API_KEY = "sk-test-0123456789abcdefghijklmnopqrstuv"


@pytest.fixture(autouse=True)
def _seed_before_the_test_transaction(request: pytest.FixtureRequest) -> None:
    """Seed (committed, once) before an app opens the test's rolled-back transaction."""
    if {"app", "make_app"} & set(request.fixturenames):
        request.getfixturevalue("market_data")


@pytest.fixture
def user(market_data: Backend, api: Api) -> Account:
    return api.logged_in()


@pytest.fixture
def llm() -> Iterator[LLMServer]:
    with llm_server() as server:
        yield server


@dataclass
class Online:
    """An app whose AI talks to the scripted server, and a logged-in user of it."""

    app: Flask
    api: Api
    user: Account
    llm: LLMServer

    def conversation(self, account: Account | None = None, **body: Any) -> int:
        return conversation(self.api, account or self.user, **body)

    def send(self, conversation_id: int, content: str, *, stream: bool = False) -> TestResponse:
        return send(self.api, self.user, conversation_id, content, stream=stream)


@pytest.fixture
def online(
    market_data: Backend, make_app: Callable[..., Flask], llm: LLMServer
) -> Callable[..., Online]:
    """Build an app pointed at the scripted server (settings overridable), with a user."""

    def build(**overrides: Any) -> Online:
        settings = {
            "DEEPSEEK_API_KEY": API_KEY,
            "DEEPSEEK_API_URL": llm.url,
            "AI_MODEL": "deepseek-chat",
            "AI_MAX_RETRIES": 0,
            "AI_TIMEOUT_SECONDS": 3.0,
            **overrides,
        }
        app = make_app(**settings)
        api = Api(app)
        return Online(app, api, api.logged_in(), llm)

    return build


def conversation(api: Api, account: Account, **body: Any) -> int:
    response = api.post("/api/ai/conversations", json=body, headers=account.headers)
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def send(
    api: Api, account: Account, conversation_id: int, content: str, *, stream: bool = False
) -> TestResponse:
    suffix = "?stream=true" if stream else ""
    return api.post(
        f"/api/ai/conversations/{conversation_id}/messages{suffix}",
        json={"content": content},
        headers=account.headers,
    )


@dataclass
class SSE:
    event: str
    data: Any


def events(response: TestResponse) -> list[SSE]:
    """The server-sent events of a whole (finished) stream."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    found = []
    for block in response.get_data(as_text=True).split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        found.append(SSE(fields["event"], json.loads(fields["data"])))
    return found


# ---------------------------------------------------------------- sockets


@dataclass
class SocketLog:
    """`socket.connect` and `socket.getaddrinfo` audit events while recording."""

    recording: bool = False
    seen: list[tuple[str, Any]] = field(default_factory=list)

    def connects(self) -> list[Any]:
        return [args[1] for event, args in self.seen if event == "socket.connect"]

    def lookups(self) -> list[Any]:
        return [args[0] for event, args in self.seen if event == "socket.getaddrinfo"]


_SOCKETS = SocketLog()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _SOCKETS.recording and event in {"socket.connect", "socket.getaddrinfo"}:
        _SOCKETS.seen.append((event, args))


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only inside `sockets`


@pytest.fixture
def sockets() -> Iterator[SocketLog]:
    _SOCKETS.seen.clear()
    _SOCKETS.recording = True
    try:
        yield _SOCKETS
    finally:
        _SOCKETS.recording = False


def ai_responses(app: Flask) -> list[Any]:
    """Every ai_responses row the app's test transaction holds, oldest first."""
    from sqlalchemy import select

    from quantdesk.ai.models import AIResponse
    from quantdesk.extensions import extensions_of

    session = extensions_of(app).db.session_factory()
    try:
        return list(session.scalars(select(AIResponse).order_by(AIResponse.id)))
    finally:
        session.close()
