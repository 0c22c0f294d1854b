"""Parameter grids: every combination its own backtest and task, ranked, capped by a setting."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.backtests import SMA, fetch, make_strategy, notifications, start
from tests.backtests.conftest import HeldRunner
from tests.conftest import Backend
from tests.support import Account, Api, assert_error

GRID = {"fast": [3, 5, 10], "slow": [20, 40]}

# Fails for one value of `fast`: the grid still finishes with the others.
PICKY = SMA.replace(
    "def handle_bar(ctx, data):\n",
    "def handle_bar(ctx, data):\n    if ctx.params['fast'] == 3:\n        raise ValueError('no')\n",
)


def test_a_grid_runs_each_combination_and_ranks_them(api: Api, user: Account) -> None:
    grid = start(api, user, make_strategy(api, user), param_grid=GRID)
    assert grid["kind"] == "grid"
    assert grid["combinations"] == 6
    assert grid["param_grid"] == GRID
    assert grid["rank_by"] == "sharpe_ratio"
    done = fetch(api, user, grid["id"])
    assert done["status"] == "finished"
    assert done["progress"] == 1
    table = fetch(api, user, grid["id"], "/grid")
    assert table["parameters"] == ["fast", "slow"]
    rows = table["rows"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert sorted((r["params"]["fast"], r["params"]["slow"]) for r in rows) == [
        (3, 20),
        (3, 40),
        (5, 20),
        (5, 40),
        (10, 20),
        (10, 40),
    ]
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:  # each combination is a backtest of its own with its own result
        combination = fetch(api, user, row["backtest_id"])
        assert combination["kind"] == "combination"
        assert combination["grid_id"] == grid["id"]
        assert combination["params"] == row["params"]
        assert combination["status"] == "finished"
        metrics = fetch(api, user, row["backtest_id"], "/metrics")
        assert metrics["sharpe_ratio"] == pytest.approx(row["score"])
    best = rows[0]["backtest_id"]
    result = fetch(api, user, grid["id"], "/result")
    assert result["combination_id"] == best
    assert result["final_value"] == fetch(api, user, best, "/result")["final_value"]
    assert [r["backtest_id"] for r in result["grid"]["rows"]] == [r["backtest_id"] for r in rows]
    assert fetch(api, user, grid["id"], "/metrics")["combination_id"] == best
    # The list shows the grid; its combinations are listed with grid_id.
    listed = api.get("/api/backtests", headers=user.headers).get_json()
    assert [b["id"] for b in listed["items"]] == [grid["id"]]
    children = api.get(f"/api/backtests?grid_id={grid['id']}", headers=user.headers).get_json()
    assert children["total"] == 6
    # One notification for the grid, with its best combination's numbers.
    (note,) = notifications(api, user)
    assert note["event"] == "backtest_finished"
    assert note["data"]["backtest_id"] == grid["id"]
    assert note["data"]["sharpe_ratio"] == pytest.approx(rows[0]["score"])


def test_rank_by_a_risk_metric_puts_the_smallest_first(api: Api, user: Account) -> None:
    grid = start(
        api, user, make_strategy(api, user), param_grid={"fast": [3, 10]}, rank_by="max_drawdown"
    )
    table = fetch(api, user, grid["id"], "/grid")
    assert table["lower_is_better"] is True
    scores = [r["score"] for r in table["rows"]]
    assert scores == sorted(scores)
    assert scores[0] < scores[1]


def test_combinations_fan_out_as_tasks_and_the_last_one_settles_the_grid(
    api: Api, user: Account, held: HeldRunner
) -> None:
    grid = start(api, user, make_strategy(api, user), param_grid=GRID)
    ids = [args[0] for _, args in held.held]
    assert [fn.__name__ for fn, _ in held.held] == ["run_backtest"] * 6
    assert len(set(ids)) == 6
    assert grid["id"] not in ids
    first, rest = held.held[:3], held.held[3:]
    held.held = first
    held.run_all()
    halfway = fetch(api, user, grid["id"])
    assert halfway["status"] == "running"
    assert halfway["progress"] == 0.5
    assert_error(api.get(f"/api/backtests/{grid['id']}/result", headers=user.headers), 409)
    held.held = rest
    held.run_all()
    assert fetch(api, user, grid["id"])["status"] == "finished"
    assert len(notifications(api, user)) == 1


def test_failed_combinations_rank_last_and_the_grid_still_finishes(api: Api, user: Account) -> None:
    grid = start(api, user, make_strategy(api, user, PICKY, "picky"), param_grid=GRID)
    done = fetch(api, user, grid["id"])
    assert done["status"] == "finished"
    assert done["notices"] == ["2 of 6 combinations did not finish"]
    rows = fetch(api, user, grid["id"], "/grid")["rows"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, None, None]
    assert [r["params"]["fast"] for r in rows[4:]] == [3, 3]
    assert all("ValueError('no')" in r["error"] for r in rows[4:])


def test_a_grid_whose_every_combination_fails_fails(api: Api, user: Account) -> None:
    grid = start(api, user, make_strategy(api, user, PICKY, "picky"), param_grid={"fast": [3]})
    failed = fetch(api, user, grid["id"])
    assert failed["status"] == "failed"
    assert failed["error"].startswith("no combination finished; the first error: ")
    assert [n["event"] for n in notifications(api, user)] == ["backtest_failed"]


def test_the_same_grid_again_reuses_every_combination(api: Api, user: Account) -> None:
    strategy_id = make_strategy(api, user)
    first = start(api, user, strategy_id, param_grid=GRID)
    again = start(api, user, strategy_id, param_grid={"fast": [3, 5, 10, 20], "slow": [20, 40]})
    assert again["status"] == "queued"  # two new combinations run, six are reused
    rows = fetch(api, user, again["id"], "/grid")["rows"]
    reused = [fetch(api, user, r["backtest_id"])["reused_from"] for r in rows]
    assert sum(1 for r in reused if r is not None) == 6
    third = start(api, user, strategy_id, param_grid=GRID)
    assert third["status"] == "finished"  # nothing left to run
    assert fetch(api, user, third["id"], "/grid")["rows"][0]["score"] == pytest.approx(
        fetch(api, user, first["id"], "/grid")["rows"][0]["score"]
    )


def test_the_default_cap_is_200_combinations(api: Api, user: Account) -> None:
    body = {
        "strategy_id": make_strategy(api, user),
        "symbols": ["600519.SH"],
        "start_date": "2020-01-01",
        "end_date": "2020-03-01",
        "initial_capital": 1e6,
        "param_grid": {"fast": list(range(1, 16)), "slow": list(range(20, 34))},
    }
    error = assert_error(api.post("/api/backtests", json=body, headers=user.headers), 422)
    assert error["details"] == {"param_grid": ["210 combinations; at most 200 per request"]}


def test_the_cap_is_a_setting(make_app: Callable[..., Flask], market_data: Backend) -> None:
    api = Api(make_app(BACKTEST_MAX_GRID_COMBINATIONS=4))
    account = api.logged_in()
    strategy_id = make_strategy(api, account)
    body = {
        "strategy_id": strategy_id,
        "symbols": ["600519.SH"],
        "start_date": "2020-01-01",
        "end_date": "2020-03-01",
        "initial_capital": 1e6,
    }
    over = api.post("/api/backtests", json={**body, "param_grid": GRID}, headers=account.headers)
    error = assert_error(over, 422, "validation_error")
    assert error["details"] == {"param_grid": ["6 combinations; at most 4 per request"]}
    assert api.get("/api/backtests", headers=account.headers).get_json()["total"] == 0
    ok = api.post(
        "/api/backtests",
        json={**body, "param_grid": {"fast": [3, 5], "slow": [20, 40]}},
        headers=account.headers,
    )
    assert ok.status_code == 202


def test_deleting_a_grid_cancels_its_combinations(
    api: Api, user: Account, held: HeldRunner
) -> None:
    grid = start(api, user, make_strategy(api, user), param_grid={"fast": [3, 5]})
    children = api.get(f"/api/backtests?grid_id={grid['id']}", headers=user.headers).get_json()
    child = children["items"][0]["id"]
    assert_error(api.delete(f"/api/backtests/{child}", headers=user.headers), 409, "conflict")
    assert api.delete(f"/api/backtests/{grid['id']}", headers=user.headers).status_code == 204
    held.run_all()
    assert fetch(api, user, grid["id"])["status"] == "cancelled"
    assert {fetch(api, user, c["id"])["status"] for c in children["items"]} == {"cancelled"}
    assert notifications(api, user) == []
    assert api.delete(f"/api/backtests/{grid['id']}", headers=user.headers).status_code == 204
    assert_error(api.get(f"/api/backtests/{child}", headers=user.headers), 404)
