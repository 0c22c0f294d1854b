"""Per-user daily limits on AI requests: every endpoint counts, the 429 is in the API's shape
with a Retry-After until midnight UTC, and one user's use does not limit another."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from flask import Flask
from limits.storage import MemoryStorage

from quantdesk.ai import quota
from quantdesk.settings import Settings
from tests.ai.conftest import conversation, send
from tests.backtests import SMA, make_strategy
from tests.support import Api, assert_error


def test_every_ai_request_counts_against_the_daily_limit(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(AI_DAILY_REQUESTS_PER_USER=3))
    user = api.logged_in()
    conversation_id = conversation(api, user)
    strategy_id = make_strategy(api, user, SMA)
    assert send(api, user, conversation_id, "AAPL?").status_code == 200
    analyzed = api.post(
        "/api/ai/analyze-strategy", json={"strategy_id": strategy_id}, headers=user.headers
    )
    assert analyzed.status_code == 200
    advice = api.post("/api/ai/investment-advice", json={"symbols": ["IBM"]}, headers=user.headers)
    assert advice.status_code == 200

    for response in (
        send(api, user, conversation_id, "and IBM?"),
        send(api, user, conversation_id, "and IBM?", stream=True),
        api.post("/api/ai/investment-advice", json={"symbols": ["IBM"]}, headers=user.headers),
    ):
        error = assert_error(response, 429, "ai_daily_limit")
        assert error["details"]["limit"] == 3
        seconds = int(response.headers["Retry-After"])
        assert 0 < seconds <= 86_400
        assert error["details"]["retry_after"] == seconds
    detail = api.get(f"/api/ai/conversations/{conversation_id}", headers=user.headers).get_json()
    assert [m["content"] for m in detail["messages"] if m["role"] == "user"] == ["AAPL?"]

    other = api.logged_in()
    assert send(api, other, conversation(api, other), "AAPL?").status_code == 200


def test_zero_means_no_daily_limit(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(AI_DAILY_REQUESTS_PER_USER=0))
    user = api.logged_in()
    conversation_id = conversation(api, user)
    for _ in range(4):
        assert send(api, user, conversation_id, "hello").status_code == 200


def test_with_rate_limits_off_ai_requests_are_not_counted(make_app: Callable[..., Flask]) -> None:
    # Flask-Limiter keeps no storage while disabled: the quota must not reach for it (was a 500).
    api = Api(make_app(RATELIMIT_ENABLED=False, AI_DAILY_REQUESTS_PER_USER=1))
    user = api.logged_in()
    strategy_id = make_strategy(api, user, SMA)
    for _ in range(2):
        analyzed = api.post(
            "/api/ai/analyze-strategy", json={"strategy_id": strategy_id}, headers=user.headers
        )
        assert analyzed.status_code == 200, analyzed.get_json()


def test_the_count_starts_again_at_midnight_utc() -> None:
    settings = Settings(_env_file=None, AI_DAILY_REQUESTS_PER_USER=2)  # type: ignore[call-arg]
    counter = MemoryStorage()
    late = dt.datetime(2026, 3, 1, 23, 59, 30, tzinfo=dt.UTC)
    assert quota.take_request(counter, settings=settings, user_id=7, now=late) == 1
    assert quota.take_request(counter, settings=settings, user_id=7, now=late) == 2
    with pytest.raises(quota.DailyLimitReached) as refused:
        quota.take_request(counter, settings=settings, user_id=7, now=late)
    assert refused.value.retry_after == 30
    assert refused.value.headers == {"Retry-After": "30"}
    assert quota.take_request(counter, settings=settings, user_id=8, now=late) == 1
    next_day = late + dt.timedelta(minutes=1)
    assert quota.take_request(counter, settings=settings, user_id=7, now=next_day) == 1
