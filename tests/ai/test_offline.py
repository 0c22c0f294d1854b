"""The embedded default: with no API key the offline analyst answers every AI endpoint from the
platform's data, says so, and opens no socket towards any model."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask
from sqlalchemy.engine import make_url

from tests.ai.conftest import SocketLog, conversation, events, send
from tests.ai.llm_server import LLMServer
from tests.backtests import SMA, fetch, make_strategy, start
from tests.conftest import TEST_REDIS_URL, Backend
from tests.support import Account, Api

REDIS_PORT = make_url(TEST_REDIS_URL).port or 6379


def _only_redis(sockets: SocketLog, backend: Backend) -> None:
    """No connection but the production backend's own Redis; no name looked up at all."""
    allowed = {("127.0.0.1", REDIS_PORT)} if backend.name == "production" else set()
    assert {tuple(address[:2]) for address in sockets.connects()} <= allowed
    assert all(host in {"127.0.0.1", "localhost"} for host in sockets.lookups())


def test_with_no_key_the_offline_analyst_answers_and_no_socket_opens(
    api: Api, user: Account, backend: Backend, sockets: SocketLog
) -> None:
    conversation_id = conversation(api, user)
    response = send(api, user, conversation_id, "How is 600519.SH doing?")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["offline"] is True
    assert body["model"] == "offline-analyst"
    reply = body["reply"]["content"]
    assert reply.startswith("[Offline analyst] No AI model is configured")
    assert "600519.SH" in reply
    assert "Trend:" in reply
    assert "not investment advice" in reply
    calls = body["messages"][1]["tool_calls"]
    assert [c["name"] for c in calls] == ["get_stock", "compute_indicators"]
    results = [m for m in body["messages"] if m["role"] == "tool"]
    assert all(m["tool_ok"] for m in results)
    view = json.loads(results[1]["content"])
    assert view["as_of"] == "2024-12-31"
    assert view["trend"]["direction"] in {"up", "down", "sideways"}
    assert 0 <= view["indicators"]["values"]["rsi_14"] <= 100
    assert body["reply"]["response"]["offline"] is True
    _only_redis(sockets, backend)


def test_pointed_at_a_server_but_without_a_key_nothing_is_sent(
    make_app: Callable[..., Flask], llm: LLMServer, sockets: SocketLog, backend: Backend
) -> None:
    app = make_app(DEEPSEEK_API_KEY="", DEEPSEEK_API_URL=llm.url)
    api = Api(app)
    account = api.logged_in()
    conversation_id = conversation(api, account)
    sockets.seen.clear()
    streamed = events(send(api, account, conversation_id, "AAPL and IBM?", stream=True))
    assert streamed[-1].event == "done"
    assert streamed[-1].data["offline"] is True
    advice = api.post(
        "/api/ai/investment-advice", json={"symbols": ["AAPL"]}, headers=account.headers
    )
    assert advice.status_code == 200
    assert llm.requests == []
    assert all(address[1] != llm.port for address in sockets.connects())
    _only_redis(sockets, backend)


def test_the_offline_analyst_streams_its_answer(api: Api, user: Account) -> None:
    conversation_id = conversation(api, user)
    stream = events(send(api, user, conversation_id, "Tell me about AAPL", stream=True))
    names = [e.event for e in stream]
    assert names[:5] == ["message", "tool_call", "tool_result", "tool_call", "tool_result"]
    assert names[-1] == "done"
    assert "delta" in names
    written = "".join(e.data["content"] for e in stream if e.event == "delta")
    assert written == stream[-1].data["reply"]["content"]
    assert "AAPL Apple Inc." in written
    assert stream[-1].data["offline"] is True


def test_the_offline_analyst_explains_a_strategy_and_refused_orders(
    api: Api, user: Account
) -> None:
    strategy_id = make_strategy(api, user, SMA, name="maotai sma")
    backtest_id = start(api, user, strategy_id)["id"]
    assert fetch(api, user, backtest_id)["status"] == "finished"
    conversation_id = conversation(api, user)
    reply = send(api, user, conversation_id, f"Why were orders of backtest {backtest_id} refused?")
    text = reply.get_json()["reply"]["content"]
    assert f"Backtest {backtest_id}" in text
    assert "finished: final value" in text
    assert "lot_size x" in text
    assert "whole lots" in text
    assert "Costs:" in text

    reply = send(api, user, conversation_id, f"What about strategy {strategy_id}?")
    text = reply.get_json()["reply"]["content"]
    assert f"Strategy {strategy_id} 'maotai sma': event API, version 1" in text
    assert "no look-ahead pattern and no missing position limit" in text


def test_the_offline_analyst_starts_a_backtest_when_asked(api: Api, user: Account) -> None:
    strategy_id = make_strategy(api, user, SMA)
    conversation_id = conversation(api, user)
    ask = (
        f"Please run a backtest of strategy {strategy_id} on 600519.SH from 2019-01-01 to "
        "2020-06-30 with capital 500,000"
    )
    body = send(api, user, conversation_id, ask).get_json()
    (call,) = body["messages"][1]["tool_calls"]
    assert call["name"] == "start_backtest"
    started = json.loads(body["messages"][2]["content"])
    backtest = fetch(api, user, started["backtest_id"])
    assert backtest["initial_capital"] == 500_000
    assert (backtest["start_date"], backtest["end_date"]) == ("2019-01-01", "2020-06-30")
    assert backtest["strategy_id"] == strategy_id
    assert f"Started backtest {started['backtest_id']}" in body["reply"]["content"]


def test_the_offline_analyst_helps_and_lists(api: Api, user: Account) -> None:
    make_strategy(api, user, SMA, name="first one")
    conversation_id = conversation(api, user)
    body = send(api, user, conversation_id, "hello there").get_json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert "Ask me about a symbol" in body["reply"]["content"]
    body = send(api, user, conversation_id, "list my strategies").get_json()
    assert body["messages"][1]["tool_calls"][0]["name"] == "list_strategies"
    assert "first one (event, stopped)" in body["reply"]["content"]
    body = send(api, user, conversation_id, "What about strategy 999999?").get_json()
    assert "I could not run get_strategy: No such strategy." in body["reply"]["content"]


def test_a_client_that_leaves_stops_the_turn(api: Api, user: Account) -> None:
    conversation_id = conversation(api, user)
    response = api.client.post(
        f"/api/ai/conversations/{conversation_id}/messages?stream=true",
        json={"content": "Tell me about AAPL"},
        headers=user.headers,
        buffered=False,
    )
    chunks = iter(response.response)
    first = next(chunks)
    assert (first.decode() if isinstance(first, bytes) else first).startswith("event: message")
    response.close()  # the browser tab closes after the first event
    detail = api.get(f"/api/ai/conversations/{conversation_id}", headers=user.headers).get_json()
    assert [m["role"] for m in detail["messages"]] == ["user"]
