"""Backtests through the HTTP API, on both backends: queued -> running -> finished or failed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quantdesk.backtests import execution, spec
from quantdesk.backtests.models import Backtest, BacktestEquity, BacktestResult, BacktestTrade
from quantdesk.engine.rules import RULEBOOK_VERSION
from tests.backtests import (
    CHATTY,
    FAILING,
    SMA,
    SPINNING,
    fetch,
    make_strategy,
    notifications,
    start,
)
from tests.conftest import Backend
from tests.support import Account, Api, assert_error


def test_a_backtest_is_queued_then_finishes_with_its_results(
    api: Api, user: Account, db: Session
) -> None:
    strategy_id = make_strategy(api, user)
    created = start(api, user, strategy_id, name="maotai 2019-2020")
    # 202 with the row as committed: the task runs after the commit (inline in tests).
    assert created["status"] == "queued"
    assert created["progress"] == 0
    assert created["name"] == "maotai 2019-2020"
    assert created["benchmark"] == "000300.SH"  # the market's default, stored in the sample
    assert created["market"] == "cn_a"
    assert created["adjust"] == "qfq"
    assert created["params"] == {"fast": 5, "slow": 20}
    assert created["strategy_version"] == 1
    assert created["rulebook_version"] == RULEBOOK_VERSION
    assert created["engine_version"] == spec.engine_version()
    assert len(created["request_hash"]) == 64
    assert created["config"]["benchmark"] is None  # the benchmark is no symbol to trade

    done = fetch(api, user, created["id"])
    assert done["status"] == "finished", done["error"]
    assert done["progress"] == 1
    assert done["attempts"] == 1
    assert done["error"] is None
    assert done["data_start"] == "2019-01-02"
    assert done["data_end"] == "2020-12-31"
    assert done["bars_count"] == 487  # SSE trading days of 2019 and 2020
    timings = done["timings"]
    assert {"queue_seconds", "load_seconds", "run_seconds", "store_seconds"} <= set(timings)
    assert timings["total_seconds"] >= timings["run_seconds"] > 0
    assert done["started_at"] <= done["finished_at"]

    result = fetch(api, user, created["id"], "/result")
    metrics = result["metrics"]
    assert set(metrics) == set(spec.METRICS)
    assert result["final_value"] == metrics["final_value"] == done["summary"]["final_value"]
    assert metrics["trades_count"] == len(result["trades"]) > 10
    assert metrics["benchmark_return"] is not None
    assert metrics["beta"] is not None
    equity = result["equity"]
    assert len(equity) == 487
    assert equity[0] == {
        "date": "2019-01-02",
        "equity": 1_000_000.0,
        "cash": 1_000_000.0,
        "benchmark": 1_000_000.0,
        "drawdown": 0.0,
    }
    assert equity[-1]["equity"] == pytest.approx(result["final_value"])
    assert all(0 <= p["drawdown"] < 1 for p in equity)
    assert max(p["drawdown"] for p in equity) == pytest.approx(metrics["max_drawdown"])
    trade = result["trades"][0]
    assert trade["action"] == "buy"
    assert trade["quantity"] % 100 == 0
    assert trade["commission"] > 0
    assert trade["transfer_fee"] > 0
    assert trade["stamp_duty"] == 0
    assert trade["value"] == pytest.approx(trade["quantity"] * trade["price"])
    sells = [t for t in result["trades"] if t["action"] == "sell"]
    assert sells
    assert all(t["stamp_duty"] > 0 and t["profit_loss"] is not None for t in sells)
    costs = result["cost_summary"]
    assert costs["commission"] == pytest.approx(sum(t["commission"] for t in result["trades"]))
    assert costs["stamp_duty"] == pytest.approx(sum(t["stamp_duty"] for t in sells))
    assert {r["reason"] for r in result["refusals"]} >= {"lot_size"}
    assert result["rulebook_version"] == RULEBOOK_VERSION
    assert len(result["logs"]) == 487 // 50
    assert result["logs"][0]["message"].startswith("bar 50 value ")
    assert len(result["records"]["series"]["cash"]) == 487

    assert fetch(api, user, created["id"], "/metrics") == {
        "backtest_id": created["id"],
        "combination_id": None,
        **metrics,
    }
    # Stored once, in the tables of the seed schema.
    stored = db.scalars(select(BacktestResult).where(BacktestResult.task_id == created["id"]))
    (row,) = stored.all()
    assert row.trades_count == metrics["trades_count"]
    count = select(func.count()).select_from(BacktestEquity)
    assert db.scalar(count.where(BacktestEquity.result_id == row.id)) == 487
    count = select(func.count()).select_from(BacktestTrade)
    assert db.scalar(count.where(BacktestTrade.result_id == row.id)) == len(result["trades"])


def test_profit_and_loss_of_the_trades_adds_up_to_the_round_trips(api: Api, user: Account) -> None:
    created = start(
        api,
        user,
        make_strategy(api, user),
        symbols=["AAPL"],
        start_date="2010-01-01",
        end_date="2012-12-31",
        initial_capital=100_000,
    )
    result = fetch(api, user, created["id"], "/result")
    assert fetch(api, user, created["id"])["market"] == "us"
    assert result["benchmark"] is None  # SPY, the us default, is not in the sample data
    assert result["metrics"]["beta"] is None
    assert all(p["benchmark"] is None for p in result["equity"])
    trades = result["trades"]
    assert all(t["commission"] == 0 and t["stamp_duty"] == 0 for t in trades)
    realised = sum(t["profit_loss"] for t in trades if t["action"] == "sell")
    held = sum(p["market_value"] for p in result["positions"])
    bought = sum(t["value"] for t in trades if t["action"] == "buy")
    sold = sum(t["value"] for t in trades if t["action"] == "sell")
    # Without costs: final value = capital + realised P&L + (open positions - their cost).
    open_cost = bought - sold + realised
    assert result["final_value"] == pytest.approx(100_000 + realised + held - open_cost)


def test_the_knobs_of_the_request_reach_the_run(api: Api, user: Account) -> None:
    strategy_id = make_strategy(api, user)
    created = start(
        api,
        user,
        strategy_id,
        params={"fast": 3},
        costs={"commission_rate": 0.001, "min_commission": 0, "stamp_duty_rate": 0},
        fill="next_close",
        slippage_bps=10,
        adjust="none",
        benchmark="000001.SH",
        risk_free_rate=0.02,
    )
    assert created["params"] == {"fast": 3, "slow": 20}
    assert created["costs"] == {"commission_rate": 0.001, "min_commission": 0, "stamp_duty_rate": 0}
    assert created["config"]["fill"] == "next_close"
    assert created["config"]["slippage_bps"] == 10
    result = fetch(api, user, created["id"], "/result")
    trades = result["trades"]
    assert all(t["stamp_duty"] == 0 for t in trades)
    assert all(t["commission"] == pytest.approx(t["value"] * 0.001) for t in trades)
    assert all(t["slippage"] > 0 for t in trades)
    assert result["benchmark"] == "000001.SH"
    none = start(api, user, strategy_id, benchmark=None)
    assert none["benchmark"] is None
    assert fetch(api, user, none["id"], "/metrics")["alpha"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"symbols": ["NOPE99"]}, "symbols"),
        ({"symbols": []}, "symbols"),
        ({"start_date": "2021-01-01", "end_date": "2020-01-01"}, "start_date"),
        ({"start_date": "1990-01-01", "end_date": "1990-12-31"}, "symbols"),
        ({"params": {"colour": 1}}, "params"),
        ({"benchmark": "NOPE99"}, "benchmark"),
        ({"initial_capital": 0}, "initial_capital"),
        ({"fill": "tomorrow"}, "fill"),
        ({"costs": {"commission_rate": -1}}, "costs"),
        ({"symbols": ["600519.SH", "AAPL"]}, "market"),
        ({"rank_by": "sharpe_ratio"}, "rank_by"),
        ({"param_grid": {"colour": [1, 2]}}, "params"),
        ({"param_grid": {"fast": []}}, "param_grid"),
        ({"param_grid": {"fast": [{"a": 1}]}}, "param_grid"),
        ({"param_grid": {"fast": [3, 3]}}, "param_grid"),
        ({"param_grid": {"fast": [3, 4]}, "params": {"fast": 2}}, "param_grid"),
    ],
)
def test_invalid_requests_are_422_with_the_field(
    api: Api, user: Account, change: dict[str, object], field: str
) -> None:
    body = {
        "strategy_id": make_strategy(api, user),
        "symbols": ["600519.SH"],
        "start_date": "2020-01-01",
        "end_date": "2020-06-30",
        "initial_capital": 100_000,
        **change,
    }
    error = assert_error(api.post("/api/backtests", json=body, headers=user.headers), 422)
    assert field in error["details"], error


def test_a_request_needs_json_a_token_and_an_own_strategy(api: Api, user: Account) -> None:
    assert_error(api.post("/api/backtests", json={}), 401)
    response = api.post(
        "/api/backtests",
        data="x=1",
        headers=user.headers,
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 415)
    other = api.logged_in()
    theirs = make_strategy(api, other)
    body = {
        "strategy_id": theirs,
        "symbols": ["600519.SH"],
        "start_date": "2020-01-01",
        "end_date": "2020-02-01",
        "initial_capital": 1e5,
    }
    assert_error(api.post("/api/backtests", json=body, headers=user.headers), 404, "not_found")


def test_a_strategy_that_raises_fails_with_the_users_error_and_traceback(
    api: Api, user: Account
) -> None:
    created = start(api, user, make_strategy(api, user, FAILING, "failing"))
    failed = fetch(api, user, created["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == (
        "handle_bar failed on 2019-03-01: ZeroDivisionError('division by zero')"
    )
    assert 'File "strategy.py", line 5, in helper' in failed["traceback"]
    assert "quantdesk" not in failed["traceback"]
    assert failed["error_kind"] is None
    assert failed["summary"] is None
    error = assert_error(
        api.get(f"/api/backtests/{created['id']}/result", headers=user.headers), 409, "conflict"
    )
    assert error["details"] == {"status": "failed"}
    assert_error(api.get(f"/api/backtests/{created['id']}/report", headers=user.headers), 409)


def test_the_limit_that_stopped_a_run_is_reported(
    make_app: Callable[..., Flask], market_data: Backend
) -> None:
    app = make_app(SANDBOX_CPU_SECONDS=1, SANDBOX_MAX_LOG_LINES=5)
    api = Api(app)
    account = api.logged_in()
    spinning = start(api, account, make_strategy(api, account, SPINNING, "spin"))
    stopped = fetch(api, account, spinning["id"])
    assert stopped["status"] == "failed"
    assert stopped["error"] == "stopped: CPU time limit of 1 s reached"
    assert stopped["error_kind"] == "cpu"
    chatty = start(api, account, make_strategy(api, account, CHATTY, "chatty"))
    done = fetch(api, account, chatty["id"])
    assert done["status"] == "finished"
    assert done["notices"] == ["log cut at its limit (5 lines, 100000 bytes)"]
    logs = fetch(api, account, chatty["id"], "/result")["logs"]
    assert [line["message"] for line in logs] == [
        "now 2019-01-02",
        "now 2019-01-03",
        "now 2019-01-04",
        "now 2019-01-07",
        "now 2019-01-08",
        "[log truncated: limit reached]",
    ]


def test_another_users_backtest_is_a_404_everywhere(api: Api, user: Account) -> None:
    created = start(api, user, make_strategy(api, user))
    other = api.logged_in()
    base = f"/api/backtests/{created['id']}"
    for response in (
        api.get(base, headers=other.headers),
        api.get(f"{base}/result", headers=other.headers),
        api.get(f"{base}/metrics", headers=other.headers),
        api.get(f"{base}/report", headers=other.headers),
        api.post(f"{base}/export", json={"format": "json"}, headers=other.headers),
        api.delete(base, headers=other.headers),
    ):
        assert_error(response, 404, "not_found")
    listed = api.get("/api/backtests", headers=other.headers).get_json()
    assert listed["total"] == 0
    assert fetch(api, user, created["id"])["status"] == "finished"  # the DELETE did nothing


def test_an_identical_request_reuses_the_finished_result(
    api: Api, user: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy_id = make_strategy(api, user)
    first = start(api, user, strategy_id, params={"fast": 4})
    runs: list[int] = []
    monkeypatch.setattr(execution, "claim", lambda runtime, i: runs.append(i))  # no run at all
    again = start(api, user, strategy_id, params={"fast": 4})
    assert again["id"] != first["id"]
    assert again["status"] == "finished"
    assert again["reused_from"] == first["id"]
    assert again["request_hash"] == fetch(api, user, first["id"])["request_hash"]
    assert again["attempts"] == 0
    assert runs == []
    original = fetch(api, user, first["id"], "/result")
    copied = fetch(api, user, again["id"], "/result")
    assert copied["metrics"] == original["metrics"]
    assert copied["equity"] == original["equity"]
    assert [dict(t, id=0) for t in copied["trades"]] == [dict(t, id=0) for t in original["trades"]]
    assert copied["logs"] == original["logs"]
    # Each stands alone: deleting the original keeps the copy.
    assert api.delete(f"/api/backtests/{first['id']}", headers=user.headers).status_code == 204
    assert fetch(api, user, again["id"], "/result")["final_value"] == original["final_value"]
    # Anything else that decides the result runs again: params, dates, costs, code.
    other = start(api, user, strategy_id, params={"fast": 6})
    assert other["status"] == "queued"
    assert other["reused_from"] is None
    assert runs == [other["id"]]
    changed = api.put(
        f"/api/strategies/{strategy_id}",
        headers=user.headers,
        json={"code": SMA.replace("0.95", "0.9")},
    )
    assert changed.status_code == 200
    recoded = start(api, user, strategy_id, params={"fast": 4})
    assert recoded["status"] == "queued"
    assert recoded["strategy_version"] == 2
    assert recoded["code_sha256"] != again["code_sha256"]


def test_the_request_hash_follows_the_stored_data(api: Api, user: Account, db: Session) -> None:
    from quantdesk.market.models import StockPrice

    strategy_id = make_strategy(api, user)
    first = start(api, user, strategy_id)
    bar = db.scalars(
        select(StockPrice).where(
            StockPrice.symbol == "600519.SH", StockPrice.date == dt.date(2020, 6, 1)
        )
    ).one()
    bar.close += 0.01  # a corrected bar
    db.commit()
    again = start(api, user, strategy_id)
    assert again["data_fingerprint"] != first["data_fingerprint"]
    assert again["reused_from"] is None


def test_notifications_on_finish_and_on_failure(api: Api, user: Account) -> None:
    done = start(api, user, make_strategy(api, user))
    failed = start(api, user, make_strategy(api, user, FAILING, "failing"))
    inbox = {n["event"]: n for n in notifications(api, user)}
    finished = inbox["backtest_finished"]["data"]
    metrics = fetch(api, user, done["id"], "/metrics")
    assert finished["backtest_id"] == done["id"]
    assert finished["strategy_name"] == "sma"
    assert finished["total_return"] == pytest.approx(metrics["total_return"])
    assert finished["sharpe_ratio"] == pytest.approx(metrics["sharpe_ratio"])
    assert inbox["backtest_failed"]["data"]["backtest_id"] == failed["id"]
    assert "ZeroDivisionError" in inbox["backtest_failed"]["data"]["error"]
    assert len(notifications(api, user)) == 2


def test_list_filters_by_strategy_and_status(api: Api, user: Account) -> None:
    sma = make_strategy(api, user)
    failing = make_strategy(api, user, FAILING, "failing")
    ok = start(api, user, sma)
    bad = start(api, user, failing)
    listing = api.get("/api/backtests", headers=user.headers).get_json()
    assert [b["id"] for b in listing["items"]] == [bad["id"], ok["id"]]
    assert listing["total"] == 2
    assert listing["per_page"] == 20
    only = api.get(f"/api/backtests?strategy_id={sma}", headers=user.headers).get_json()
    assert [b["id"] for b in only["items"]] == [ok["id"]]
    failed = api.get("/api/backtests?status=failed", headers=user.headers).get_json()
    assert [b["id"] for b in failed["items"]] == [bad["id"]]
    assert failed["items"][0]["summary"] is None
    assert_error(api.get("/api/backtests?status=sleeping", headers=user.headers), 422)


def test_deleting_a_strategy_deletes_its_backtests(api: Api, user: Account, db: Session) -> None:
    strategy_id = make_strategy(api, user)
    created = start(api, user, strategy_id)
    assert api.delete(f"/api/strategies/{strategy_id}", headers=user.headers).status_code == 204
    assert_error(api.get(f"/api/backtests/{created['id']}", headers=user.headers), 404)
    assert db.scalar(select(func.count()).select_from(Backtest)) == 0
    assert db.scalar(select(func.count()).select_from(BacktestResult)) == 0


def test_the_symbols_of_one_request_are_capped_by_a_setting(
    make_app: Callable[..., Flask], market_data: Backend
) -> None:
    api = Api(make_app(BACKTEST_MAX_SYMBOLS=1))
    account = api.logged_in()
    body = {
        "strategy_id": make_strategy(api, account),
        "symbols": ["600519.SH", "000001.SZ"],
        "start_date": "2020-01-01",
        "end_date": "2020-03-01",
        "initial_capital": 1e6,
    }
    error = assert_error(api.post("/api/backtests", json=body, headers=account.headers), 422)
    assert error["details"] == {"symbols": ["at most 1 per backtest"]}
    assert start(api, account, body["strategy_id"], symbols=["600519.SH"])["status"] == "queued"


def test_stored_metrics_are_exactly_the_engines() -> None:
    """spec.METRICS (the stored and reported order) names every metric the engine computes."""
    from quantdesk.engine.grid import GRID_METRICS, ROUND_TRIP_METRICS

    assert len(spec.METRICS) == len(set(spec.METRICS))
    assert set(spec.METRICS) == set(GRID_METRICS) | set(ROUND_TRIP_METRICS)
