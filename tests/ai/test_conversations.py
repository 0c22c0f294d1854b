"""Conversations through the HTTP API: create, list, read with messages, delete, ownership, input
rules, and the endpoints in the OpenAPI document."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.ai.models import AIResponse
from tests.ai.conftest import conversation, send
from tests.backtests import SMA, make_strategy, start
from tests.support import Account, Api, assert_error


def test_create_list_read_and_delete(api: Api, user: Account, db: Session) -> None:
    first = api.post("/api/ai/conversations", json={}, headers=user.headers)
    assert first.status_code == 201
    created = first.get_json()
    assert created["title"] == "New conversation"
    assert (created["strategy_id"], created["backtest_id"]) == (None, None)
    assert created["created_at"].endswith("Z")
    second = conversation(api, user, title="About momentum")

    send(api, user, created["id"], "Tell me about AAPL please")  # titles an untitled one
    listed = api.get("/api/ai/conversations?per_page=1", headers=user.headers).get_json()
    assert listed["total"] == 2
    assert listed["per_page"] == 1
    assert [c["id"] for c in listed["items"]] == [created["id"]]  # the most recently active
    assert listed["items"][0]["title"] == "Tell me about AAPL please"
    found = api.get("/api/ai/conversations?q=MOMENT", headers=user.headers).get_json()
    assert [c["id"] for c in found["items"]] == [second]

    detail = api.get(f"/api/ai/conversations/{created['id']}", headers=user.headers).get_json()
    roles = [m["role"] for m in detail["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "assistant"]
    assert detail["messages"][0]["content"] == "Tell me about AAPL please"
    assert detail["messages"][1]["response"]["model"] == "offline-analyst"
    assert detail["messages"][2]["tool_name"] == "get_stock"
    assert all(m["tokens"] > 0 for m in detail["messages"])
    assert [m["id"] for m in detail["messages"]] == sorted(m["id"] for m in detail["messages"])

    deleted = api.delete(f"/api/ai/conversations/{created['id']}", headers=user.headers)
    assert deleted.status_code == 204
    assert_error(api.get(f"/api/ai/conversations/{created['id']}", headers=user.headers), 404)
    # The usage rows stay for the accounting, detached from the deleted conversation.
    rows = db.scalars(select(AIResponse).where(AIResponse.user_id == user.id)).all()
    assert len(rows) == 2
    assert {row.conversation_id for row in rows} == {None}


def test_a_conversation_about_a_strategy_or_backtest_must_be_yours(api: Api, user: Account) -> None:
    strategy_id = make_strategy(api, user, SMA)
    backtest_id = start(api, user, strategy_id)["id"]
    about = api.post(
        "/api/ai/conversations",
        json={"strategy_id": strategy_id, "backtest_id": backtest_id},
        headers=user.headers,
    )
    assert about.status_code == 201
    assert about.get_json()["strategy_id"] == strategy_id
    assert about.get_json()["backtest_id"] == backtest_id
    stranger = api.logged_in()
    for body in ({"strategy_id": strategy_id}, {"backtest_id": backtest_id}):
        response = api.post("/api/ai/conversations", json=body, headers=stranger.headers)
        assert_error(response, 404)


def test_other_users_conversations_are_not_found(api: Api, user: Account) -> None:
    conversation_id = conversation(api, user)
    stranger = api.logged_in()
    path = f"/api/ai/conversations/{conversation_id}"
    assert_error(api.get(path, headers=stranger.headers), 404)
    assert_error(api.delete(path, headers=stranger.headers), 404)
    assert_error(send(api, stranger, conversation_id, "hi"), 404)
    assert_error(send(api, stranger, conversation_id, "hi", stream=True), 404)
    listed = api.get("/api/ai/conversations", headers=stranger.headers).get_json()
    assert listed["total"] == 0
    assert api.get(path, headers=user.headers).get_json()["messages"] == []


def test_input_rules(api: Api, user: Account) -> None:
    conversation_id = conversation(api, user)
    path = f"/api/ai/conversations/{conversation_id}/messages"
    error = assert_error(api.post(path, json={"content": "   "}, headers=user.headers), 422)
    assert error["details"] == {"content": ["Must not be blank."]}
    too_long = {"content": "x" * 8001}
    assert (
        "content"
        in assert_error(api.post(path, json=too_long, headers=user.headers), 422)["details"]
    )
    assert_error(api.post(path, data="content=hi", headers=user.headers), 415)
    assert_error(api.post(path, json={"content": "hi"}), 401)
    maybe = api.post(f"{path}?stream=maybe", json={"content": "hi"}, headers=user.headers)
    assert "stream" in assert_error(maybe, 422)["details"]
    title = {"title": "t" * 201}
    assert_error(api.post("/api/ai/conversations", json=title, headers=user.headers), 422)
    assert (
        api.get(f"/api/ai/conversations/{conversation_id}", headers=user.headers).get_json()[
            "messages"
        ]
        == []
    )


def test_the_endpoints_are_documented(api: Api) -> None:
    paths = api.get("/api/openapi.json").get_json()["paths"]
    assert set(paths["/api/ai/conversations"]) >= {"get", "post"}
    assert set(paths["/api/ai/conversations/{conversation_id}"]) >= {"get", "delete"}
    send_doc = paths["/api/ai/conversations/{conversation_id}/messages"]["post"]
    assert "text/event-stream" in send_doc["responses"]["200"]["content"]
    assert any(p["name"] == "stream" for p in send_doc["parameters"])
    assert "post" in paths["/api/ai/analyze-strategy"]
    assert "post" in paths["/api/ai/investment-advice"]
