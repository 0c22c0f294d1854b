"""One backtest run, the body of the task: claim, load bars, run the sandbox, store, notify.

Safe to run twice (Celery's late acknowledgement delivers a task again when its worker dies):
a finished, failed or cancelled backtest is left alone; a `running` one is run again, and the
result is stored under a lock on the backtest's row, in one transaction, only while the row is
still `running`, so whichever attempt ends first stores it and any other discards its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from quantdesk.backtests import spec
from quantdesk.backtests.grids import lock_backtest, settle_grid
from quantdesk.backtests.models import (
    TERMINAL,
    Backtest,
    BacktestEquity,
    BacktestLog,
    BacktestRefusal,
    BacktestResult,
    BacktestTrade,
    Kind,
    Status,
)
from quantdesk.backtests.notify import notify_outcome
from quantdesk.db import utcnow
from quantdesk.engine.data import Bars
from quantdesk.engine.errors import EngineError
from quantdesk.engine.metrics import compute_metrics
from quantdesk.errors import APIError
from quantdesk.market import service as market
from quantdesk.market.analytics import Adjust
from quantdesk.notifications.delivery import Runtime
from quantdesk.sandbox import runner as sandbox

log = logging.getLogger(__name__)

MAX_PRICE_CHARTS = 5  # the report charts the price of at most this many symbols


@dataclass(frozen=True)
class Job:
    """What the run needs, read from the row when it was claimed (no session held meanwhile)."""

    id: int
    user_id: int
    parent_id: int | None
    kind: str
    code: str
    config: dict[str, Any]
    symbols: list[str]
    start: dt.date
    end: dt.date
    adjust: str
    benchmark: str | None
    initial_capital: float
    risk_free_rate: float


@dataclass
class Stored:
    """The rows of one finished run, ready to insert."""

    result: dict[str, Any]
    trades: list[dict[str, Any]] = field(default_factory=list)
    equity: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    rulebook_version: str = ""


def run(runtime: Runtime, backtest_id: int) -> None:
    """Run one backtest to its end (finished or failed); see the module docstring."""
    job = claim(runtime, backtest_id)
    if job is None:
        return
    timings: dict[str, Any] = {}
    try:
        stored = _execute(runtime, job, timings)
    except Exception as exc:  # a bug or a lost database must still end the run
        log.exception("backtest %s: internal error", job.id)
        stored = _store_failure(runtime, job, f"internal error: {type(exc).__name__}", timings)
    _after(runtime, job, stored=stored)


def claim(runtime: Runtime, backtest_id: int) -> Job | None:
    """Mark the backtest `running` (again, after a lost worker); None when nothing is left to do."""
    with runtime.db.session_scope() as session:
        lock_backtest(session, backtest_id)
        backtest = session.get(Backtest, backtest_id, populate_existing=True)
        if backtest is None or backtest.status in TERMINAL or backtest.kind == Kind.GRID:
            return None
        if backtest.status == Status.RUNNING:
            log.warning("backtest %s delivered again: running it once more", backtest_id)
        backtest.status = Status.RUNNING
        backtest.attempts += 1
        backtest.started_at = backtest.started_at or utcnow()
        backtest.progress = 0.05
        job = Job(
            id=backtest.id,
            user_id=backtest.user_id,
            parent_id=backtest.parent_id,
            kind=backtest.kind,
            code=backtest.code,
            config=dict(backtest.config),
            symbols=list(backtest.symbols),
            start=backtest.start_date,
            end=backtest.end_date,
            adjust=backtest.adjust,
            benchmark=backtest.benchmark,
            initial_capital=backtest.initial_capital,
            risk_free_rate=backtest.risk_free_rate,
        )
    if job.parent_id is not None:
        with runtime.db.session_scope() as session:
            session.execute(
                update(Backtest)
                .where(Backtest.id == job.parent_id, Backtest.status == Status.QUEUED)
                .values(status=Status.RUNNING, started_at=utcnow())
            )
    return job


def _set_progress(runtime: Runtime, backtest_id: int, progress: float) -> bool:
    """Record progress; False when the backtest is no longer running (cancelled)."""
    with runtime.db.session_scope() as session:
        changed = session.execute(
            update(Backtest)
            .where(Backtest.id == backtest_id, Backtest.status == Status.RUNNING)
            .values(progress=progress)
        )
        return bool(changed.rowcount)  # type: ignore[attr-defined]


def _execute(runtime: Runtime, job: Job, timings: dict[str, Any]) -> bool:
    """Load, run and store; True when this attempt stored the outcome."""
    started = time.perf_counter()
    try:
        with runtime.db.session_scope() as session:
            adjust = Adjust(job.adjust)
            frame, listed = market.load_bars(
                session,
                symbols=job.symbols,
                start=job.start,
                end=job.end,
                adjust=adjust,
                user_id=job.user_id,
            )
            bench = (
                market.bars_frame(
                    session, job.benchmark, start=job.start, end=job.end, adjust=adjust
                )
                if job.benchmark
                else None
            )
        bars = Bars.from_long(frame, listing_dates=listed)
    except (APIError, EngineError) as exc:
        message = exc.message if isinstance(exc, APIError) else str(exc)
        return _store_failure(runtime, job, f"the data could not be loaded: {message}", timings)
    timings["load_seconds"] = time.perf_counter() - started
    if not _set_progress(runtime, job.id, 0.25):
        return False
    try:
        outcome = sandbox.run_backtest(
            job.code, bars, job.config, limits=runtime.settings.sandbox_limits()
        )
    except sandbox.SandboxUnavailable as exc:
        log.error("backtest %s: %s", job.id, exc)
        return _store_failure(runtime, job, "the sandbox is unavailable on this server", timings)
    timings["run_seconds"] = outcome.stats.get("wall_seconds", 0.0)
    timings["cpu_seconds"] = outcome.stats.get("cpu_seconds", 0.0)
    timings["max_rss_kb"] = outcome.stats.get("max_rss_kb", 0.0)
    if not _set_progress(runtime, job.id, 0.9):
        return False
    if outcome.status != sandbox.Status.FINISHED or outcome.result is None:
        return _store_failure(
            runtime,
            job,
            outcome.error or "the strategy failed",
            timings,
            traceback=outcome.traceback,
            kind=outcome.limit,
            notices=list(outcome.notices),
        )
    stored = build_rows(outcome.result, bars, bench, job)
    return _store_success(runtime, job, stored, timings, notices=list(outcome.notices))


def _store_success(
    runtime: Runtime,
    job: Job,
    stored: Stored,
    timings: dict[str, Any],
    *,
    notices: list[str],
) -> bool:
    begun = time.perf_counter()
    with runtime.db.session_scope() as session:
        lock_backtest(session, job.id)
        backtest = session.get(Backtest, job.id, populate_existing=True)
        if backtest is None or backtest.status != Status.RUNNING:
            return False  # cancelled meanwhile, or a twin delivery stored it first
        session.execute(delete(BacktestResult).where(BacktestResult.task_id == job.id))
        result = BacktestResult(task_id=job.id, **stored.result)
        session.add(result)
        session.flush()
        for model, rows in (
            (BacktestTrade, stored.trades),
            (BacktestEquity, stored.equity),
            (BacktestRefusal, stored.refusals),
            (BacktestLog, stored.logs),
        ):
            bulk_insert(session, model, result.id, rows)
        first, last = stored.equity[0]["date"], stored.equity[-1]["date"]
        backtest.data_start, backtest.data_end, backtest.bars_count = (
            first,
            last,
            len(stored.equity),
        )
        _stamp_versions(backtest, stored.rulebook_version)
        now = utcnow()
        timings["store_seconds"] = time.perf_counter() - begun
        timings["total_seconds"] = (now - backtest.created_at).total_seconds()
        backtest.status, backtest.progress, backtest.finished_at = Status.FINISHED, 1.0, now
        backtest.error = backtest.traceback = backtest.error_kind = None
        backtest.notices = notices
        backtest.timings = _timings(backtest, timings)
    return True


def bulk_insert(session: Session, model: Any, result_id: int, rows: list[dict[str, Any]]) -> None:
    """Insert a result's rows: COPY on PostgreSQL (a 10-year equity curve is 2,500 rows; COPY
    takes a few ms where executemany takes a quarter of a second), executemany elsewhere."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(insert(model), [{"result_id": result_id, **r} for r in rows])
        return
    columns = list(rows[0])
    table = model.__tablename__
    raw: Any = connection.connection.driver_connection
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table} (result_id, {', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row((result_id, *(row[c] for c in columns)))


def _stamp_versions(backtest: Backtest, rulebook_version: str) -> None:
    """Record the rulebook and engine this process ran (a rolling deploy may differ)."""
    engine = spec.engine_version()
    if backtest.engine_version != engine or backtest.rulebook_version != rulebook_version:
        backtest.engine_version = engine
        backtest.rulebook_version = rulebook_version or backtest.rulebook_version
        backtest.request_hash = spec.hash_of(backtest)


def _timings(backtest: Backtest, timings: dict[str, Any]) -> dict[str, Any]:
    queued = backtest.started_at or backtest.created_at
    return {
        "queue_seconds": (queued - backtest.created_at).total_seconds(),
        **{k: round(v, 6) if isinstance(v, float) else v for k, v in timings.items()},
    }


def _store_failure(
    runtime: Runtime,
    job: Job,
    error: str,
    timings: dict[str, Any],
    *,
    traceback: str | None = None,
    kind: str | None = None,
    notices: list[str] | None = None,
) -> bool:
    with runtime.db.session_scope() as session:
        lock_backtest(session, job.id)
        backtest = session.get(Backtest, job.id, populate_existing=True)
        if backtest is None or backtest.status != Status.RUNNING:
            return False
        now = utcnow()
        timings["total_seconds"] = (now - backtest.created_at).total_seconds()
        backtest.status, backtest.finished_at = Status.FAILED, now
        backtest.error, backtest.traceback, backtest.error_kind = error[:5000], traceback, kind
        backtest.notices = notices or []
        backtest.timings = _timings(backtest, timings)
    return True


def _after(runtime: Runtime, job: Job, *, stored: bool) -> None:
    """Notify the owner of a single run; let a grid's last combination settle the grid."""
    with runtime.db.session_scope() as session:
        if job.parent_id is not None:
            if settle_grid(session, grid_id=job.parent_id):  # idempotent
                grid = session.get(Backtest, job.parent_id)
                if grid is not None:
                    notify_outcome(session, runtime, grid)
            return
        backtest = session.get(Backtest, job.id)
        if stored and backtest is not None:  # only the attempt that stored the outcome
            notify_outcome(session, runtime, backtest)


# ---------------------------------------------------------------- the rows of a result


def build_rows(result: dict[str, Any], bars: Bars, bench: pd.DataFrame | None, job: Job) -> Stored:
    """The verified sandbox result as rows, with the benchmark and metrics of this backtest.

    The benchmark is not among the bars the strategy sees (it would be a symbol to trade), so the
    parent scales its closes to the capital and recomputes the metrics with them
    (engine.metrics, the functions the engine itself uses).
    """
    equity_rows = result["equity"]
    index = pd.DatetimeIndex(pd.to_datetime([r["date"] for r in equity_rows]))
    equity = pd.Series([float(r["equity"]) for r in equity_rows], index=index)
    scaled = _scaled_benchmark(bench, index, job.initial_capital)
    fills = pd.DataFrame(result["fills"]) if result["fills"] else None
    metrics = compute_metrics(
        equity,
        benchmark=scaled if scaled is not None else None,
        fills=fills,
        risk_free_rate=job.risk_free_rate,
    )
    bench_values = scaled.to_numpy() if scaled is not None else np.full(len(index), np.nan)
    stored = Stored(result={}, rulebook_version=str(result.get("rulebook_version") or ""))
    for row, value in zip(equity_rows, bench_values, strict=True):
        stored.equity.append(
            {
                "date": _date(row["date"]),
                "equity": float(row["equity"]),
                "cash": float(row["cash"]),
                "benchmark": float(value) if np.isfinite(value) else None,
                "drawdown": float(row["drawdown"]),
            }
        )
    stored.trades = _trades(result["fills"])
    stored.refusals = [
        {
            "seq": i,
            "date": _date(r["date"]),
            "symbol": r["symbol"],
            "side": r["side"],
            "requested": float(r["requested"]),
            "filled": float(r["filled"]),
            "reason": str(r["reason"]),
        }
        for i, r in enumerate(result["refusals"])
    ]
    stored.logs = [
        {"seq": i, "date": _date(r["date"]) if r.get("date") else None, "message": r["message"]}
        for i, r in enumerate(result["logs"])
    ]
    trades = stored.trades
    stored.result = {
        **{m: metrics.get(m) for m in spec.METRICS},
        "final_value": float(equity.iloc[-1]),
        "trades_count": len(trades),
        "total_commission": sum(t["commission"] for t in trades),
        "min_commission_fills": sum(1 for t in trades if t["min_commission_topup"] > 0),
        "min_commission_topup": sum(t["min_commission_topup"] for t in trades),
        "total_stamp_duty": sum(t["stamp_duty"] for t in trades),
        "total_transfer_fee": sum(t["transfer_fee"] for t in trades),
        "total_slippage": sum(t["slippage"] for t in trades),
        "positions": result.get("positions") or [],
        "records": result.get("records") or {},
        "state": result.get("state") or {},
        "prices": _prices(bars, trades),
    }
    return stored


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(str(value)[:10])


def _scaled_benchmark(
    bench: pd.DataFrame | None, index: pd.DatetimeIndex, capital: float
) -> pd.Series[float] | None:
    """The benchmark's closes on the run's dates (carried over gaps), starting at the capital."""
    if bench is None or bench.empty:
        return None
    days = pd.DatetimeIndex(pd.to_datetime(bench["date"]))
    closes = pd.Series(bench["close"].to_numpy(dtype=np.float64), index=days)
    aligned = closes.reindex(index.union(days)).ffill().reindex(index)
    finite = np.flatnonzero(np.isfinite(aligned.to_numpy()))
    if not len(finite) or aligned.iloc[finite[0]] <= 0:
        return None
    scaled: pd.Series[float] = capital * aligned / aligned.iloc[finite[0]]
    return scaled


def _trades(fills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fills as trade rows; a sell's profit_loss matches engine.metrics.closed_round_trips."""
    lots: dict[str, deque[list[float]]] = {}  # symbol -> [shares, price, cost per share]
    order = sorted(range(len(fills)), key=lambda i: fills[i]["date"])  # stable: sells first
    pnl: dict[int, float] = {}
    for i in order:
        f = fills[i]
        qty, price = float(f["shares"]), float(f["price"])
        cost = float(f["commission"]) + float(f["stamp_duty"]) + float(f["transfer_fee"])
        if f["side"] == "buy":
            lots.setdefault(f["symbol"], deque()).append([qty, price, cost / qty])
            continue
        open_lots, remaining, total = lots.get(f["symbol"], deque()), qty, 0.0
        while remaining > 1e-9 and open_lots:
            lot = open_lots[0]
            q = min(lot[0], remaining)
            total += (price - lot[1]) * q - (lot[2] + cost / qty) * q
            lot[0] -= q
            remaining -= q
            if lot[0] <= 1e-9:
                open_lots.popleft()
        pnl[i] = total
    return [
        {
            "seq": i,
            "timestamp": _date(f["date"]),
            "symbol": f["symbol"],
            "action": f["side"],
            "quantity": float(f["shares"]),
            "price": float(f["price"]),
            "value": float(f["shares"]) * float(f["price"]),
            "commission": float(f["commission"]),
            "min_commission_topup": float(f["min_commission_topup"]),
            "stamp_duty": float(f["stamp_duty"]),
            "transfer_fee": float(f["transfer_fee"]),
            "slippage": float(f["slippage"]),
            "profit_loss": pnl.get(i),
        }
        for i, f in enumerate(fills)
    ]


def _prices(bars: Bars, trades: list[dict[str, Any]]) -> dict[str, Any]:
    """Closes (as the run saw them) of up to five symbols: the most traded first."""
    fills_of: dict[str, int] = {}
    for t in trades:
        fills_of[t["symbol"]] = fills_of.get(t["symbol"], 0) + 1
    order = sorted(bars.symbols, key=lambda s: (-fills_of.get(s, 0), bars.symbols.index(s)))[
        :MAX_PRICE_CHARTS
    ]
    days = bars.dates.to_numpy().astype("datetime64[D]")
    return {
        "dates": np.datetime_as_string(days, unit="D").tolist(),
        "close": {
            s: [float(v) if np.isfinite(v) else None for v in bars.close[:, bars.symbols.index(s)]]
            for s in order
        },
    }
