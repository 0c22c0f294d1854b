"""POST /api/ai/analyze-strategy and /api/ai/investment-advice: the deterministic part always,
the narrative from the offline analyst or from the model, and their rules."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.ai.conftest import Online, ai_responses
from tests.ai.llm_server import Reply, text
from tests.backtests import SMA, fetch, make_strategy, start
from tests.support import Account, Api, assert_error

PEEKING = '''"""Buys what rises tomorrow: a look-ahead bug."""
PARAMS = {"n": 5}

def target_weights(data, params):
    close = data.close
    tomorrow = close.shift(-1)
    weights = (tomorrow > close).astype(float)
    return weights.bfill()
'''


def _analyze(api: Api, account: Account, **body: object) -> dict:
    response = api.post("/api/ai/analyze-strategy", json=body, headers=account.headers)
    assert response.status_code == 200, response.get_json()
    found: dict = response.get_json()
    return found


def _advice(api: Api, account: Account, **body: object) -> dict:
    response = api.post("/api/ai/investment-advice", json=body, headers=account.headers)
    assert response.status_code == 200, response.get_json()
    found: dict = response.get_json()
    return found


def test_analysis_finds_look_ahead_and_missing_position_limits(api: Api, user: Account) -> None:
    strategy_id = make_strategy(api, user, PEEKING, name="peeking")
    found = _analyze(api, user, strategy_id=strategy_id)
    assert found["offline"] is True
    assert found["model"] == "offline-analyst"
    assert found["backtest_id"] is None
    ahead = [w for w in found["warnings"] if w["check"] == "look_ahead"]
    assert [(w["severity"], w["line"], w["evidence"]) for w in ahead] == [
        ("high", 6, "close.shift(-1)"),
        ("medium", 8, "weights.bfill()"),
    ]
    assert found["warnings"][0]["severity"] == "high"  # most serious first
    limits = found["checks"]["position_limits"]
    assert limits["status"] == "warn"
    assert limits["findings"][0]["message"].startswith("no position limit found")
    assert found["checks"]["over_trading"]["status"] == "not_run"
    assert found["checks"]["drawdown_vs_return"]["status"] == "not_run"
    assert found["checks"]["overfitting"]["status"] == "pass"
    assert (
        "Strategy 'peeking' (vectorized API, version 1): 3 warning(s), 1 serious."
        in (found["summary"])
    )
    assert "No look-ahead pattern found in the code." not in found["strengths"]
    assert any("shift(-1) moves later values" in r for r in found["risks"])
    assert found["suggestions"][0].startswith("Use positive shifts only")
    assert found["narrative"]["source"] == "offline"
    assert found["narrative"]["text"].startswith(found["summary"])
    assert found["usage"]["model"] == "offline-analyst"
    assert "not investment advice" in found["disclaimer"]


def test_analysis_of_a_backtest_checks_trading_costs_and_drawdown(api: Api, user: Account) -> None:
    strategy_id = make_strategy(api, user, SMA)
    backtest = start(api, user, strategy_id)
    metrics = fetch(api, user, backtest["id"], "/metrics")
    found = _analyze(api, user, strategy_id=strategy_id, backtest_id=backtest["id"])
    assert found["backtest_id"] == backtest["id"]
    trading = found["checks"]["over_trading"]
    assert trading["status"] in {"pass", "warn"}
    assert trading["facts"]["fills"] == metrics["trades_count"]
    assert trading["facts"]["years"] == round(487 / 252, 2)
    assert trading["facts"]["costs"] > 0
    drawdown = found["checks"]["drawdown_vs_return"]
    assert drawdown["status"] in {"pass", "warn"}
    assert drawdown["facts"]["max_drawdown"] == metrics["max_drawdown"]
    assert found["checks"]["position_limits"]["status"] == "pass"
    assert found["checks"]["position_limits"]["facts"]["evidence"] == [
        "divides by the number of symbols"
    ]
    assert "No look-ahead pattern found in the code." in found["strengths"]
    assert (
        f"Backtest {backtest['id']} on 600519.SH from 2019-01-01 to 2020-12-31"
        in (found["summary"])
    )
    if metrics["total_return"] <= 0:
        assert any(w["message"].startswith("the run lost money") for w in found["warnings"])


def test_a_grid_feeds_the_overfitting_check(api: Api, user: Account) -> None:
    strategy_id = make_strategy(api, user, SMA)
    grid = start(api, user, strategy_id, param_grid={"fast": [3, 5, 10], "slow": [20, 40]})
    assert fetch(api, user, grid["id"])["status"] == "finished"
    for found in (
        _analyze(api, user, strategy_id=strategy_id, backtest_id=grid["id"]),
        _analyze(api, user, strategy_id=strategy_id),  # the newest finished grid by default
    ):
        facts = found["checks"]["overfitting"]["facts"]
        assert facts["grid_id"] == grid["id"]
        assert facts["combinations"] == 6
        assert facts["finished"] == 6
        assert facts["rank_by"] == "sharpe_ratio"
        assert set(facts["best_params"]) == {"fast", "slow"}
        assert found["checks"]["overfitting"]["status"] in {"pass", "warn"}


def test_analysis_rules(api: Api, user: Account) -> None:
    mine = make_strategy(api, user, SMA)
    other = make_strategy(api, user, PEEKING, name="other")
    stranger = api.logged_in()
    theirs = make_strategy(api, stranger, SMA)
    backtest = start(api, user, mine)["id"]

    def post(body: dict, account: Account = user) -> object:
        return api.post("/api/ai/analyze-strategy", json=body, headers=account.headers)

    assert_error(post({"strategy_id": theirs}), 404)
    assert_error(post({"strategy_id": mine}, stranger), 404)
    assert_error(post({"strategy_id": theirs, "backtest_id": backtest}, stranger), 404)
    error = assert_error(post({"strategy_id": other, "backtest_id": backtest}), 422)
    assert "backtest_id" in error["details"]
    error = assert_error(post({}), 422)
    assert "strategy_id" in error["details"]
    assert_error(api.post("/api/ai/analyze-strategy", json={"strategy_id": mine}), 401)


def test_investment_advice_offline(api: Api, user: Account) -> None:
    found = _advice(api, user, symbols=["600519.SH", "aapl"], horizon="short")
    assert found["offline"] is True
    assert found["horizon"] == "short"
    assert [s["symbol"] for s in found["symbols"]] == ["600519.SH", "AAPL"]
    maotai, apple = found["symbols"]
    assert maotai["as_of"] == "2024-12-31"
    assert apple["as_of"] == "2013-03-01"
    for view in found["symbols"]:
        assert view["enough_data"] is True
        assert view["trend"]["window_bars"] == 20
        assert view["trend"]["direction"] in {"up", "down", "sideways"}
        values = view["indicators"]["values"]
        assert 0 <= values["rsi_14"] <= 100
        assert values["boll_lower"] < values["boll_middle"] < values["boll_upper"]
        assert values["atr_14"] > 0
        assert any(note.startswith("RSI(14)") for note in view["indicators"]["notes"])
        assert view["risk"]["volatility_annual"] > 0
        assert view["risk"]["notes"]
        assert view["outlook"] in {"positive", "negative", "neutral"}
        assert "not investment advice" in view["disclaimer"]
        assert view["narrative"].startswith(f"{view['symbol']} {view['name']}, as of ")
        assert view["symbol"] in found["narrative"]["text"]
    assert found["narrative"]["source"] == "offline"
    assert found["disclaimer"] == maotai["disclaimer"]


def test_investment_advice_rules(api: Api, user: Account) -> None:
    def post(body: dict) -> object:
        return api.post("/api/ai/investment-advice", json=body, headers=user.headers)

    error = assert_error(post({"symbols": ["AAPL", "NOPE1"]}), 422)
    assert error["details"] == {"symbols": ["unknown: NOPE1"]}
    assert "symbols" in assert_error(post({"symbols": ["AAPL", "aapl"]}), 422)["details"]
    assert "symbols" in assert_error(post({"symbols": []}), 422)["details"]
    eleven = ["AAPL", "IBM", "MSFT", "GOOG"] + [f"60000{i}.SH" for i in range(7)]
    assert "symbols" in assert_error(post({"symbols": eleven}), 422)["details"]
    assert "horizon" in assert_error(post({"symbols": ["AAPL"], "horizon": "ages"}), 422)["details"]


def test_with_a_model_the_narrative_joins_the_deterministic_part(
    online: Callable[..., Online],
) -> None:
    o = online()
    strategy_id = make_strategy(o.api, o.user, PEEKING, name="peeking")
    narrative = {
        "narrative": "The strategy reads tomorrow's close.",
        "strengths": ["Short code."],
        "risks": ["It cannot work live."],
        "suggestions": ["Delete shift(-1)."],
    }
    o.llm.queue(text(json.dumps(narrative), usage=(900, 60)))
    found = _analyze(o.api, o.user, strategy_id=strategy_id)
    assert found["offline"] is False
    assert found["model"] == "deepseek-chat"
    assert found["narrative"] == {
        "source": "model",
        "text": narrative["narrative"],
        **{k: narrative[k] for k in ("strengths", "risks", "suggestions")},
    }
    assert found["warnings"][0]["evidence"] == "close.shift(-1)"  # still computed
    assert found["usage"]["tokens_in"] == 900
    (seen,) = o.llm.requests
    assert seen.body["response_format"] == {"type": "json_object"}
    assert "tools" not in seen.body
    sent = json.loads(seen.body["messages"][1]["content"])
    assert sent["strategy"]["name"] == "peeking"
    assert sent["checks"]["checks"]["look_ahead"]["status"] == "warn"
    row = ai_responses(o.app)[-1]
    assert (row.purpose, row.tokens_out, row.finish_reason) == ("analyze_strategy", 60, "stop")

    o.llm.queue(text("Plain words, not JSON."))
    found = _analyze(o.api, o.user, strategy_id=strategy_id)
    assert found["narrative"]["text"] == "Plain words, not JSON."
    assert found["narrative"]["risks"] == []


def test_a_slow_provider_fails_an_analysis_with_a_503(online: Callable[..., Online]) -> None:
    o = online(AI_TIMEOUT_SECONDS=0.5)
    strategy_id = make_strategy(o.api, o.user, SMA)
    o.llm.queue(Reply(content="late", delay=3.0))
    response = o.api.post(
        "/api/ai/analyze-strategy", json={"strategy_id": strategy_id}, headers=o.user.headers
    )
    assert_error(response, 503, "ai_provider_timeout")
    assert ai_responses(o.app)[-1].error_code == "ai_provider_timeout"
    assert ai_responses(o.app)[-1].purpose == "analyze_strategy"


def test_with_a_model_advice_gets_its_words_per_symbol(online: Callable[..., Online]) -> None:
    o = online()
    o.llm.queue(
        text(
            json.dumps(
                {
                    "overview": "Two very different stocks.",
                    "symbols": {"AAPL": "Apple fell hard into March 2013."},
                }
            )
        )
    )
    found = _advice(o.api, o.user, symbols=["AAPL", "IBM"])
    assert found["narrative"] == {"source": "model", "text": "Two very different stocks."}
    apple, ibm = found["symbols"]
    assert apple["narrative"] == "Apple fell hard into March 2013."
    assert ibm["narrative"].startswith("IBM International Business Machines, as of")  # the rules'
    sent = json.loads(o.llm.requests[0].body["messages"][1]["content"])
    assert sent["horizon"] == "medium"
    assert [v["symbol"] for v in sent["symbols"]] == ["AAPL", "IBM"]
    assert sent["symbols"][0]["indicators"]["values"] == apple["indicators"]["values"]
