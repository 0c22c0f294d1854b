"""Exports parsed back: csv (a zip of trades.csv and equity.csv), xlsx and json."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import pytest
from openpyxl import load_workbook

from tests.backtests import FAILING, fetch, make_strategy, start
from tests.support import Account, Api, assert_error


@pytest.fixture
def finished(api: Api, user: Account) -> dict[str, Any]:
    created = start(
        api,
        user,
        make_strategy(api, user),
        symbols=["600519.SH", "000001.SZ"],
        initial_capital=200_000,
    )
    return {
        "backtest": fetch(api, user, created["id"]),
        "result": fetch(api, user, created["id"], "/result"),
    }


def _export(api: Api, user: Account, backtest_id: int, fmt: str) -> Any:
    response = api.post(
        f"/api/backtests/{backtest_id}/export", json={"format": fmt}, headers=user.headers
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response


def test_csv_is_a_zip_of_trades_and_equity(
    api: Api, user: Account, finished: dict[str, Any]
) -> None:
    backtest_id = finished["backtest"]["id"]
    response = _export(api, user, backtest_id, "csv")
    assert response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="backtest-{backtest_id}.zip"'
    )
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert sorted(archive.namelist()) == ["equity.csv", "trades.csv"]
    trades = list(csv.DictReader(io.StringIO(archive.read("trades.csv").decode())))
    expected = finished["result"]["trades"]
    assert len(trades) == len(expected) > 0
    for row, trade in zip(trades, expected, strict=True):
        assert row["timestamp"] == trade["timestamp"]
        assert row["symbol"] == trade["symbol"]
        assert row["action"] == trade["action"]
        assert float(row["quantity"]) == trade["quantity"]
        assert float(row["price"]) == pytest.approx(trade["price"], rel=1e-12)
        for cost in ("commission", "min_commission_topup", "stamp_duty", "transfer_fee"):
            assert float(row[cost]) == pytest.approx(trade[cost], rel=1e-12)
        if trade["profit_loss"] is None:
            assert row["profit_loss"] == ""
        else:
            assert float(row["profit_loss"]) == pytest.approx(trade["profit_loss"], rel=1e-12)
    equity = list(csv.DictReader(io.StringIO(archive.read("equity.csv").decode())))
    assert [r["date"] for r in equity] == [p["date"] for p in finished["result"]["equity"]]
    assert float(equity[-1]["equity"]) == pytest.approx(finished["result"]["final_value"])
    assert set(equity[0]) == {"date", "equity", "cash", "benchmark", "drawdown"}


def test_xlsx_has_summary_equity_and_trades(
    api: Api, user: Account, finished: dict[str, Any]
) -> None:
    response = _export(api, user, finished["backtest"]["id"], "xlsx")
    assert response.mimetype.endswith("spreadsheetml.sheet")
    book = load_workbook(io.BytesIO(response.data), read_only=True)
    assert book.sheetnames == ["summary", "equity", "trades"]
    summary = {row[0]: row[1] for row in book["summary"].iter_rows(min_row=2, values_only=True)}
    metrics = finished["result"]["metrics"]
    assert summary["sharpe_ratio"] == pytest.approx(metrics["sharpe_ratio"])
    assert summary["final_value"] == pytest.approx(metrics["final_value"])
    assert summary["rulebook_version"] == finished["result"]["rulebook_version"]
    assert summary["symbols"] == "600519.SH, 000001.SZ"
    assert (
        summary["cost_min_commission_fills"]
        == (finished["result"]["cost_summary"]["min_commission_fills"])
    )
    equity = list(book["equity"].iter_rows(values_only=True))
    assert equity[0] == ("date", "equity", "cash", "benchmark", "drawdown")
    assert len(equity) - 1 == len(finished["result"]["equity"])
    assert equity[1][0].date().isoformat() == finished["result"]["equity"][0]["date"]
    trades = list(book["trades"].iter_rows(values_only=True))
    assert trades[0][:5] == ("timestamp", "symbol", "action", "quantity", "price")
    assert len(trades) - 1 == len(finished["result"]["trades"])
    assert trades[1][6] == pytest.approx(finished["result"]["trades"][0]["commission"])


def test_json_is_the_full_result(api: Api, user: Account, finished: dict[str, Any]) -> None:
    response = _export(api, user, finished["backtest"]["id"], "json")
    assert response.mimetype == "application/json"
    document = json.loads(response.data)
    assert document["backtest"] == finished["backtest"]
    expected = {k: v for k, v in finished["result"].items() if k != "combination_id"}
    assert document["result"] == expected
    assert document["grid"] is None


def test_a_grid_exports_its_table_too(api: Api, user: Account) -> None:
    grid = start(api, user, make_strategy(api, user), param_grid={"fast": [3, 5], "slow": [20]})
    archive = zipfile.ZipFile(io.BytesIO(_export(api, user, grid["id"], "csv").data))
    rows = list(csv.DictReader(io.StringIO(archive.read("grid.csv").decode())))
    assert [r["rank"] for r in rows] == ["1", "2"]
    assert {r["fast"] for r in rows} == {"3", "5"}
    book = load_workbook(io.BytesIO(_export(api, user, grid["id"], "xlsx").data), read_only=True)
    assert book.sheetnames == ["summary", "equity", "trades", "grid"]
    document = json.loads(_export(api, user, grid["id"], "json").data)
    assert [r["rank"] for r in document["grid"]["rows"]] == [1, 2]


def test_export_needs_a_known_format_and_a_finished_backtest(api: Api, user: Account) -> None:
    failed = start(api, user, make_strategy(api, user, FAILING, "failing"))
    path = f"/api/backtests/{failed['id']}/export"
    assert_error(api.post(path, json={"format": "pdf"}, headers=user.headers), 422)
    assert_error(api.post(path, json={"format": "csv"}, headers=user.headers), 409, "conflict")
