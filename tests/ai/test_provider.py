"""Conversations against a real OpenAI-compatible server on loopback: replies, tool calls as the
user, streaming, and what the API answers when the provider times out, limits, refuses or breaks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

from quantdesk.ai.tools import TOOLS
from tests.ai.conftest import API_KEY, Online, ai_responses, events
from tests.ai.llm_server import Reply, error, text, tools
from tests.backtests import SMA, make_strategy
from tests.support import assert_error, free_port


def _messages(online: Online, conversation_id: int) -> list[dict]:
    response = online.api.get(
        f"/api/ai/conversations/{conversation_id}", headers=online.user.headers
    )
    assert response.status_code == 200
    return response.get_json()["messages"]


def test_a_reply_comes_from_the_configured_endpoint(online: Callable[..., Online]) -> None:
    o = online()
    conversation_id = o.conversation()
    o.llm.queue(text("MACD measures momentum.", usage=(120, 9)))
    response = o.send(conversation_id, "What does MACD measure?")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["offline"] is False
    assert body["model"] == "deepseek-chat"
    assert body["reply"]["content"] == "MACD measures momentum."
    assert body["reply"]["role"] == "assistant"
    assert body["reply"]["response"]["tokens_in"] == 120
    assert body["usage"] == {
        "model": "deepseek-chat",
        "offline": False,
        "tokens_in": 120,
        "tokens_out": 9,
        "latency_ms": body["usage"]["latency_ms"],
        "finish_reason": "stop",
        "calls": 1,
    }
    assert API_KEY not in response.get_data(as_text=True)

    (seen,) = o.llm.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert "openai-organization" not in seen.headers
    assert seen.body["model"] == "deepseek-chat"
    assert seen.body["messages"][0]["role"] == "system"
    assert seen.body["messages"][-1] == {"role": "user", "content": "What does MACD measure?"}
    offered = {tool["function"]["name"] for tool in seen.body["tools"]}
    assert offered == set(TOOLS)

    (row,) = ai_responses(o.app)
    assert (row.model, row.offline, row.tokens_in, row.tokens_out) == (
        "deepseek-chat",
        False,
        120,
        9,
    )
    assert row.finish_reason == "stop"
    assert row.error is None
    assert row.latency_ms >= 0
    assert row.purpose == "chat"
    assert row.conversation_id == conversation_id
    title = o.api.get(f"/api/ai/conversations/{conversation_id}", headers=o.user.headers)
    assert title.get_json()["title"] == "What does MACD measure?"


def test_the_model_reads_the_users_strategy_through_a_tool(online: Callable[..., Online]) -> None:
    o = online()
    strategy_id = make_strategy(o.api, o.user, SMA, name="my sma")
    conversation_id = o.conversation()
    o.llm.queue(
        tools(("get_strategy", {"strategy_id": strategy_id})),
        text("It trades a 5/20 moving-average cross."),
    )
    body = o.send(conversation_id, "Explain my strategy").get_json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "assistant"]
    asking, result = body["messages"][1], body["messages"][2]
    (call,) = asking["tool_calls"]
    assert call["name"] == "get_strategy"
    assert json.loads(call["arguments"]) == {"strategy_id": strategy_id}
    assert result["tool_call_id"] == call["id"]
    assert result["tool_name"] == "get_strategy"
    assert result["tool_ok"] is True
    stored = json.loads(result["content"])
    assert stored["name"] == "my sma"
    assert "handle_bar" in stored["code"]
    assert stored["params"] == {"fast": 5, "slow": 20}
    assert body["reply"]["content"] == "It trades a 5/20 moving-average cross."
    assert body["usage"]["calls"] == 2

    # The second request carried the tool call and its result, as the protocol wants them.
    second = o.llm.bodies()[1]["messages"]
    assert second[-2]["role"] == "assistant"
    assert second[-2]["tool_calls"][0]["function"]["name"] == "get_strategy"
    assert second[-1]["role"] == "tool"
    assert second[-1]["tool_call_id"] == call["id"]
    assert json.loads(second[-1]["content"])["name"] == "my sma"
    # ... and everything is stored with the conversation.
    assert [m["role"] for m in _messages(o, conversation_id)] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


def test_tools_act_only_within_the_users_rights(online: Callable[..., Online]) -> None:
    o = online()
    other = o.api.logged_in()
    theirs = make_strategy(o.api, other, SMA, name="not yours")
    their_conversation = o.conversation(account=other)
    conversation_id = o.conversation()
    o.llm.queue(
        tools(
            ("get_strategy", {"strategy_id": theirs}),
            ("list_strategies", {}),
            ("get_backtest", {"backtest_id": 999_999}),
        ),
        text("I cannot see that strategy."),
    )
    body = o.send(conversation_id, "show me strategy").get_json()
    results = [m for m in body["messages"] if m["role"] == "tool"]
    assert [r["tool_ok"] for r in results] == [False, True, False]
    assert json.loads(results[0]["content"])["error"]["code"] == "not_found"
    assert json.loads(results[1]["content"]) == {"items": []}  # only the user's own
    assert json.loads(results[2]["content"])["error"]["code"] == "not_found"
    assert "not yours" not in json.dumps(body)
    # Another user's conversation is not found either, for reading and for sending.
    assert_error(
        o.api.get(f"/api/ai/conversations/{their_conversation}", headers=o.user.headers), 404
    )
    assert_error(o.send(their_conversation, "hello"), 404)
    assert len(o.llm.requests) == 2


def test_the_model_starts_a_backtest_and_explains_its_refused_orders(
    online: Callable[..., Online],
) -> None:
    o = online()
    strategy_id = make_strategy(o.api, o.user, SMA)
    conversation_id = o.conversation()
    window = {"start_date": "2019-01-01", "end_date": "2020-12-31"}
    o.llm.queue(
        tools(("start_backtest", {"strategy_id": strategy_id, "symbols": ["600519.SH"], **window})),
        text("Started."),
    )
    body = o.send(conversation_id, "Backtest my strategy on 600519.SH for 2019-2020").get_json()
    started = json.loads(body["messages"][2]["content"])
    assert body["messages"][2]["tool_ok"] is True
    backtest = o.api.get(f"/api/backtests/{started['backtest_id']}", headers=o.user.headers)
    assert backtest.status_code == 200  # the user's own backtest
    assert backtest.get_json()["status"] == "finished"  # tasks run inline in tests
    assert backtest.get_json()["symbols"] == ["600519.SH"]
    assert backtest.get_json()["initial_capital"] == 1_000_000

    o.llm.queue(tools(("get_backtest", {"backtest_id": started["backtest_id"]})), text("Lots."))
    body = o.send(conversation_id, "Why did some orders not fill?").get_json()
    facts = json.loads(body["messages"][2]["content"])
    assert facts["status"] == "finished"
    assert facts["metrics"]["trades_count"] > 10
    assert facts["cost_summary"]["commission"] > 0
    refusals = facts["refusals"]
    assert refusals["count"] == sum(refusals["by_reason"].values()) > 0
    assert "lot_size" in refusals["by_reason"]
    assert "whole lots" in refusals["explanations"]["lot_size"]
    assert refusals["examples"][0]["reason"] in refusals["by_reason"]
    # The model saw the history of the first exchange in the second request.
    roles = [m["role"] for m in o.llm.bodies()[2]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]


def test_streaming_sends_deltas_tool_calls_and_done(online: Callable[..., Online]) -> None:
    o = online()
    conversation_id = o.conversation()
    o.llm.queue(tools(("get_stock", {"symbol": "AAPL"})), text("AAPL closed at 430.47."))
    stream = events(o.send(conversation_id, "Where did AAPL close?", stream=True))
    names = [e.event for e in stream]
    assert names[:4] == ["message", "tool_call", "tool_result", "delta"]
    assert names[-1] == "done"
    assert "error" not in names
    assert stream[0].data["message"]["content"] == "Where did AAPL close?"
    call = stream[1].data
    assert call["name"] == "get_stock"
    assert json.loads(call["arguments"]) == {"symbol": "AAPL"}
    result = stream[2].data["message"]
    assert result["tool_ok"] is True
    assert json.loads(result["content"])["symbol"] == "AAPL"
    written = "".join(e.data["content"] for e in stream if e.event == "delta")
    assert written == "AAPL closed at 430.47."
    done = stream[-1].data
    assert done["reply"]["content"] == written
    assert done["usage"]["tokens_in"] == 84
    assert done["usage"]["calls"] == 2
    assert [m["role"] for m in done["messages"]] == ["user", "assistant", "tool", "assistant"]
    for body in o.llm.bodies():
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
    assert all(row.streamed for row in ai_responses(o.app))
    stored = _messages(o, conversation_id)
    assert stored[-1]["content"] == written
    assert len(stored) == 4


def test_a_refused_key_is_a_502_that_stores_nothing_and_leaks_no_key(
    online: Callable[..., Online], caplog: pytest.LogCaptureFixture
) -> None:
    o = online()
    conversation_id = o.conversation()
    o.llm.queue(error(401, f"Incorrect API key provided: {API_KEY}"))
    with caplog.at_level(logging.DEBUG):
        response = o.send(conversation_id, "hello")
    found = assert_error(response, 502, "ai_provider_auth_failed")
    assert "DEEPSEEK_API_KEY" in found["message"]
    assert API_KEY not in response.get_data(as_text=True)
    assert all(API_KEY not in record.getMessage() for record in caplog.records)
    assert _messages(o, conversation_id) == []  # the user can simply send it again
    (row,) = ai_responses(o.app)
    assert row.error_code == "ai_provider_auth_failed"
    assert "[redacted]" in row.error
    assert API_KEY not in row.error
    assert row.tokens_in is None
    assert row.finish_reason is None


def test_the_providers_rate_limit_is_a_429_with_its_retry_after(
    online: Callable[..., Online],
) -> None:
    o = online()
    conversation_id = o.conversation()
    o.llm.queue(error(429, "slow down", headers={"Retry-After": "17"}))
    response = o.send(conversation_id, "hello")
    found = assert_error(response, 429, "ai_provider_rate_limited")
    assert response.headers["Retry-After"] == "17"
    assert found["details"]["retry_after"] == 17
    assert len(o.llm.requests) == 1  # AI_MAX_RETRIES=0: not repeated


def test_a_server_error_is_retried_where_safe(online: Callable[..., Online]) -> None:
    o = online(AI_MAX_RETRIES=1)
    conversation_id = o.conversation()
    o.llm.queue(error(500, "boom", headers={"Retry-After": "0.1"}), text("recovered"))
    response = o.send(conversation_id, "hello")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["reply"]["content"] == "recovered"
    assert len(o.llm.requests) == 2  # the same request again, once


def test_a_server_error_after_the_retries_is_a_502(online: Callable[..., Online]) -> None:
    o = online()
    conversation_id = o.conversation()
    o.llm.queue(error(500, "boom"))
    found = assert_error(o.send(conversation_id, "hello"), 502, "ai_provider_error")
    assert found["details"] == {"provider_status": 500}
    assert "boom" not in found["message"]


def test_a_slow_provider_is_a_503(online: Callable[..., Online]) -> None:
    o = online(AI_TIMEOUT_SECONDS=0.5)
    conversation_id = o.conversation()
    o.llm.queue(Reply(content="too late", delay=2.0))
    found = assert_error(o.send(conversation_id, "hello"), 503, "ai_provider_timeout")
    assert found["details"] == {"timeout_seconds": 0.5}
    assert _messages(o, conversation_id) == []
    assert ai_responses(o.app)[0].error_code == "ai_provider_timeout"


def test_an_unreachable_provider_is_a_503(online: Callable[..., Online]) -> None:
    o = online(DEEPSEEK_API_URL=f"http://127.0.0.1:{free_port()}/v1")
    conversation_id = o.conversation()
    assert_error(o.send(conversation_id, "hello"), 503, "ai_provider_unavailable")
    assert_error(o.send(conversation_id, "hello", stream=True), 503, "ai_provider_unavailable")


def test_a_stream_that_breaks_off_ends_with_an_error_event(online: Callable[..., Online]) -> None:
    o = online()
    conversation_id = o.conversation()
    o.llm.queue(Reply(content="The answer is being written but", break_after=4))
    stream = events(o.send(conversation_id, "tell me", stream=True))
    assert next(e.event for e in stream) == "message"
    assert stream[-1].event == "error"
    assert stream[-1].data["error"]["code"] == "ai_provider_error"
    assert set(stream[-1].data["error"]) == {"code", "message", "details"}
    assert [e.event for e in stream[1:-1]] == ["delta"] * (len(stream) - 2)
    # The question was accepted (the answer had started); no half answer is stored.
    assert [m["role"] for m in _messages(o, conversation_id)] == ["user"]
    assert ai_responses(o.app)[-1].error_code == "ai_provider_error"


def test_a_stream_refused_up_front_is_an_ordinary_error(online: Callable[..., Online]) -> None:
    o = online()
    conversation_id = o.conversation()
    o.llm.queue(error(401, "bad key"))
    response = o.send(conversation_id, "tell me", stream=True)
    assert response.mimetype == "application/json"
    assert_error(response, 502, "ai_provider_auth_failed")
    assert _messages(o, conversation_id) == []


def test_the_last_round_offers_no_tools(online: Callable[..., Online]) -> None:
    o = online(AI_MAX_TOOL_ROUNDS=1)
    conversation_id = o.conversation()
    o.llm.queue(
        tools(("get_stock", {"symbol": "AAPL"})),
        tools(("get_stock", {"symbol": "IBM"}), content="AAPL is stored."),
    )
    body = o.send(conversation_id, "AAPL?").get_json()
    first, second = o.llm.bodies()
    assert "tools" in first
    assert "tools" not in second
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert body["reply"]["content"] == "AAPL is stored."
    assert body["reply"]["tool_calls"] is None  # a tool call in the last round is not run


def test_bad_tool_calls_are_answered_with_errors_the_model_can_read(
    online: Callable[..., Online],
) -> None:
    o = online()
    conversation_id = o.conversation()
    o.llm.queue(
        tools(
            ("get_price_history", {"symbol": "AAPL", "days": "many"}),
            ("drop_tables", {}),
            ("get_price_history", {"symbol": "AAPL", "days": 5}),
        ),
        text("Here are five days."),
    )
    body = o.send(conversation_id, "AAPL last days").get_json()
    results = [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]
    assert results[0]["error"]["code"] == "validation_error"
    assert results[0]["error"]["details"] == {"days": ["Must be of type integer."]}
    assert results[1]["error"]["message"] == "There is no tool 'drop_tables'."
    assert results[2]["summary"]["bars"] == 5
    assert len(results[2]["bars"]) == 5
    assert results[2]["bars"][-1]["date"] == "2013-03-01"
