"""Backtest exports: csv (a zip of trades.csv and equity.csv), xlsx and json, from stored rows.

- csv: `backtest-<id>.zip` holding `trades.csv` (one row per fill with its costs) and
  `equity.csv` (one row per trading day); a grid adds `grid.csv` (the ranked table). Two tables
  of different shapes do not fit one CSV, and a zip opens everywhere.
- xlsx: sheets `summary` (setup, reproducibility, metrics, costs), `equity`, `trades`, and
  `grid` for a grid.
- json: the backtest as GET /api/backtests/{id} shows it plus the full stored result (what
  GET .../result answers, with logs, refusals, records and final positions).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook

from quantdesk.backtests import spec
from quantdesk.backtests.results import TRADE_FIELDS, Stored, stored_document

EQUITY_FIELDS = ("date", "equity", "cash", "benchmark", "drawdown")


@dataclass(frozen=True)
class Export:
    content: bytes
    mimetype: str
    filename: str


def export(
    fmt: str, *, backtest: dict[str, Any], run: Stored, grid: dict[str, Any] | None
) -> Export:
    """The file for `fmt`; `backtest` is the backtest as the API shows it (BacktestOut)."""
    stem = f"backtest-{backtest['id']}"
    if fmt == "csv":
        return Export(_zip(run, grid), "application/zip", f"{stem}.zip")
    if fmt == "xlsx":
        return Export(
            _xlsx(backtest, run, grid),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            f"{stem}.xlsx",
        )
    if fmt == "json":
        document = {"backtest": backtest, "result": stored_document(run), "grid": grid}
        text = json.dumps(document, default=_json_default, allow_nan=False, ensure_ascii=False)
        return Export(text.encode("utf-8"), "application/json", f"{stem}.json")
    raise ValueError(f"unknown export format {fmt!r}")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _trade_rows(run: Stored) -> list[list[Any]]:
    return [[getattr(t, f) for f in TRADE_FIELDS] for t in run.trades]


def _equity_rows(run: Stored) -> list[list[Any]]:
    return [[getattr(e, f) for f in EQUITY_FIELDS] for e in run.equity]


def _grid_header(grid: dict[str, Any]) -> list[str]:
    metrics = list(grid["rows"][0]["metrics"]) if grid["rows"] else []
    return ["rank", *grid["parameters"], "backtest_id", "status", "score", *metrics, "error"]


def _grid_rows(grid: dict[str, Any]) -> list[list[Any]]:
    metrics = list(grid["rows"][0]["metrics"]) if grid["rows"] else []
    return [
        [
            r["rank"],
            *(r["params"].get(p) for p in grid["parameters"]),
            r["backtest_id"],
            r["status"],
            r["score"],
            *(r["metrics"].get(m) for m in metrics),
            r["error"],
        ]
        for r in grid["rows"]
    ]


def _csv(header: list[str] | tuple[str, ...], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    return buffer.getvalue()


def _zip(run: Stored, grid: dict[str, Any] | None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("trades.csv", _csv(TRADE_FIELDS, _trade_rows(run)))
        archive.writestr("equity.csv", _csv(EQUITY_FIELDS, _equity_rows(run)))
        if grid is not None:
            archive.writestr("grid.csv", _csv(_grid_header(grid), _grid_rows(grid)))
    return buffer.getvalue()


def summary_rows(backtest: dict[str, Any], run: Stored) -> list[tuple[str, Any]]:
    """Label-value pairs: the setup, what makes it reproducible, the metrics and the costs."""
    shown = run.backtest
    rows: list[tuple[str, Any]] = [
        ("backtest_id", backtest["id"]),
        ("name", backtest["name"]),
        ("kind", backtest["kind"]),
        ("strategy", backtest["strategy_name"]),
        ("strategy_version", backtest["strategy_version"]),
        ("symbols", ", ".join(backtest["symbols"])),
        ("start_date", backtest["start_date"]),
        ("end_date", backtest["end_date"]),
        ("data_start", shown.data_start.isoformat() if shown.data_start else None),
        ("data_end", shown.data_end.isoformat() if shown.data_end else None),
        ("bars_count", shown.bars_count),
        ("market", backtest["market"]),
        ("initial_capital", backtest["initial_capital"]),
        ("benchmark", backtest["benchmark"]),
        ("fill", backtest["fill"]),
        ("slippage_bps", backtest["slippage_bps"]),
        ("adjust", backtest["adjust"]),
        ("costs", json.dumps(backtest["costs"])),
        ("params", json.dumps(shown.params)),
        ("rulebook_version", shown.rulebook_version),
        ("engine_version", shown.engine_version),
        ("code_sha256", backtest["code_sha256"]),
        ("request_hash", shown.request_hash),
    ]
    rows += [(m, getattr(run.result, m)) for m in spec.METRICS]
    rows += [(f"cost_{k}", v) for k, v in run.cost_summary.items()]
    return rows


def _xlsx(backtest: dict[str, Any], run: Stored, grid: dict[str, Any] | None) -> bytes:
    book = Workbook(write_only=True)
    summary = book.create_sheet("summary")
    summary.append(["field", "value"])
    for label, value in summary_rows(backtest, run):
        summary.append([label, value])
    equity = book.create_sheet("equity")
    equity.append(list(EQUITY_FIELDS))
    for row in _equity_rows(run):
        equity.append(row)
    trades = book.create_sheet("trades")
    trades.append(list(TRADE_FIELDS))
    for row in _trade_rows(run):
        trades.append(row)
    if grid is not None:
        sheet = book.create_sheet("grid")
        sheet.append(_grid_header(grid))
        for row in _grid_rows(grid):
            sheet.append([json.dumps(v) if isinstance(v, list | dict) else v for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
