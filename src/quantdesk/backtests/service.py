"""Backtest rules: create (or reuse) a run, list, cancel and delete; store nothing twice.

Plain functions over a Session; every query is filtered by the owner, so another user's
backtest is indistinguishable from a missing one (404, API.md). `create_backtest` commits the
rows first and enqueues `tasks.run_backtest(id)` after the commit (STYLE.md pattern 8); an
identical request whose result is already stored is answered from a copy of it instead
(pattern 9).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.backtests import spec
from quantdesk.backtests.grids import settle_grid
from quantdesk.backtests.models import (
    ACTIVE,
    Backtest,
    BacktestEquity,
    BacktestGridRow,
    BacktestLog,
    BacktestRefusal,
    BacktestResult,
    BacktestTrade,
    Kind,
    Status,
)
from quantdesk.backtests.notify import notify_outcome
from quantdesk.backtests.tasks import run_backtest
from quantdesk.db import utcnow
from quantdesk.engine.errors import ConfigError
from quantdesk.engine.rules import DEFAULT_BENCHMARK, RULEBOOK_VERSION, Costs, Market, market_of
from quantdesk.errors import Conflict, Invalid, NotFound
from quantdesk.files.models import UserDataset, UserDatasetBar
from quantdesk.market import service as market
from quantdesk.market import symbols as sym
from quantdesk.market.models import StockPrice
from quantdesk.notifications.delivery import Runtime
from quantdesk.strategies.service import get_strategy, merge_params
from quantdesk.tasks import BROKER_ERRORS

USER_PREFIX = "user:"  # a user's own data set, `user:<name>` (files.datasets)

SORTS: dict[str, ColumnElement[Any]] = {
    "created_at": Backtest.created_at.asc(),
    "-created_at": Backtest.created_at.desc(),
    "name": Backtest.name.asc(),
    "-name": Backtest.name.desc(),
}


# ---------------------------------------------------------------- create


@dataclass(frozen=True)
class _Prepared:
    """A validated request: what every row of it (one run, or a grid's combinations) shares."""

    symbols: list[str]
    market: str
    benchmark: str | None
    costs: dict[str, float]
    fingerprint: str
    code_sha: str


def create_backtest(
    session: Session,
    *,
    runtime: Runtime,
    user: User,
    strategy_id: int,
    symbols: Sequence[str],
    start_date: dt.date,
    end_date: dt.date,
    initial_capital: float,
    name: str | None = None,
    benchmark: str | EllipsisType | None = ...,
    market: str | None = None,
    params: dict[str, Any] | None = None,
    param_grid: dict[str, list[Any]] | None = None,
    rank_by: str | None = None,
    costs: dict[str, float] | None = None,
    fill: str = "next_open",
    slippage_bps: float = 0.0,
    adjust: str = "qfq",
    risk_free_rate: float = 0.0,
) -> Backtest:
    """Store a queued backtest (or a grid of them) and enqueue it; reuse stored identical runs.

    `benchmark`: a symbol, None for no benchmark, or `...` (not given) for the market's
    default benchmark when its bars are stored. Returns the backtest as it was committed.
    """
    strategy = get_strategy(session, user=user, strategy_id=strategy_id)
    base_params = merge_params(strategy.params, params)
    if start_date > end_date:
        raise Invalid("start_date is after end_date.", details={"start_date": ["After end_date."]})
    most = runtime.settings.BACKTEST_MAX_SYMBOLS
    if len(set(symbols)) > most:
        raise Invalid("Too many symbols.", details={"symbols": [f"at most {most} per backtest"]})
    prepared = _prepare(
        session,
        user_id=user.id,
        symbols=symbols,
        market_name=market,
        benchmark=benchmark,
        costs=costs,
        start=start_date,
        end=end_date,
        code=strategy.code,
    )
    grid = _check_grid(runtime, param_grid, base_params, params)
    # The checks above only read; ending their transaction lets the writes below start one of
    # their own, which on SQLite waits for the write lock instead of failing on a read snapshot
    # another thread's commit made stale ("database is locked").
    session.commit()

    def row(kind: Kind, run_params: dict[str, Any], label: str) -> Backtest:
        config = {
            "market": prepared.market,
            "initial_capital": float(initial_capital),
            "costs": prepared.costs,
            "fill": fill,
            "slippage_bps": float(slippage_bps),
            "params": run_params,
            "benchmark": None,  # the parent adds the benchmark: it is no symbol to trade
            "rules": {},
            "risk_free_rate": float(risk_free_rate),
        }
        backtest = Backtest(
            user_id=user.id,
            strategy_id=strategy.id,
            kind=kind,
            name=label[:200],
            strategy_name=strategy.name,
            symbols=prepared.symbols,
            start_date=start_date,
            end_date=end_date,
            initial_capital=float(initial_capital),
            benchmark=prepared.benchmark,
            market=prepared.market,
            adjust=adjust,
            fill=fill,
            slippage_bps=float(slippage_bps),
            costs=prepared.costs,
            risk_free_rate=float(risk_free_rate),
            params=run_params,
            config=config,
            strategy_version=strategy.version,
            code=strategy.code,
            code_sha256=prepared.code_sha,
            rulebook_version=RULEBOOK_VERSION,
            engine_version=spec.engine_version(),
            data_fingerprint=prepared.fingerprint,
            param_grid=param_grid if kind is Kind.GRID else None,
            status=Status.QUEUED,
            progress=0.0,
            notices=[],
            timings={},
            attempts=0,
        )
        backtest.request_hash = spec.hash_of(backtest)
        return backtest

    label = name or f"{strategy.name} {start_date.isoformat()}..{end_date.isoformat()}"
    if grid is None:
        backtest = row(Kind.SINGLE, base_params, label)
        session.add(backtest)
        session.flush()
        runs = [backtest]
    else:
        backtest = row(Kind.GRID, base_params, label)
        backtest.rank_by = rank_by or spec.DEFAULT_RANK_BY
        session.add(backtest)
        session.flush()
        runs = []
        for combo in grid:
            shown = ", ".join(f"{k}={v}" for k, v in combo.items())
            child = row(Kind.COMBINATION, {**base_params, **combo}, f"{label} [{shown}]")
            child.parent_id = backtest.id
            runs.append(child)
        session.add_all(runs)
        session.flush()
        session.add_all(
            BacktestGridRow(grid_id=backtest.id, backtest_id=c.id, position=i, params=combo)
            for i, (c, combo) in enumerate(zip(runs, grid, strict=True))
        )
    reused = _reuse_finished(session, user_id=user.id, runs=runs)
    session.commit()
    _send(session, runtime, backtest, [run for run in runs if run.id not in reused])
    settled = (backtest.kind == Kind.SINGLE and backtest.id in reused) or (
        backtest.kind == Kind.GRID
        and len(reused) == len(runs)
        and settle_grid(session, grid_id=backtest.id)
    )
    if settled:  # reused: finished already, and notified like any other finished run
        notify_outcome(session, runtime, backtest)
    return backtest


QUEUE_DOWN = "The task queue was unavailable, so this run never started; submit it again."


def _send(session: Session, runtime: Runtime, backtest: Backtest, runs: list[Backtest]) -> None:
    """Enqueue `runs`. If the broker cannot take them, those not sent are marked failed (with
    error_kind "queue") before the error goes on to be a 503: a committed row left "queued"
    with no message behind it would wait for ever."""
    sent = 0
    try:
        for run in runs:
            runtime.tasks.submit(run_backtest, run.id)
            sent += 1
    except BROKER_ERRORS:
        now = utcnow()
        for run in runs[sent:]:
            run.status, run.finished_at = Status.FAILED, now
            run.error, run.error_kind = QUEUE_DOWN, "queue"
        session.commit()
        if backtest.kind == Kind.GRID:
            settle_grid(session, grid_id=backtest.id)
        raise


def _prepare(
    session: Session,
    *,
    user_id: int,
    symbols: Sequence[str],
    market_name: str | None,
    benchmark: str | EllipsisType | None,
    costs: dict[str, float] | None,
    start: dt.date,
    end: dt.date,
    code: str,
) -> _Prepared:
    """Known symbols with bars in the range, the market, the benchmark and the data fingerprint."""
    wanted: list[str] = []
    unknown: list[str] = []
    for raw in symbols:
        canonical = sym.normalise(raw)
        if canonical is None or not _stored(session, canonical, user_id=user_id):
            unknown.append(raw)
        elif canonical not in wanted:
            wanted.append(canonical)
    if unknown:
        raise Invalid("Unknown symbols.", details={"symbols": [f"unknown: {', '.join(unknown)}"]})
    try:
        chosen = Market(market_name) if market_name else market_of(wanted)
    except ConfigError as exc:
        raise Invalid(str(exc), details={"market": [str(exc)]}) from None
    bench: str | None
    if benchmark is ...:
        default = DEFAULT_BENCHMARK[chosen]
        bench = default if _stored(session, default) else None
    elif benchmark is None:
        bench = None
    else:
        bench = sym.normalise(benchmark)
        if bench is None or not _stored(session, bench):
            raise Invalid("Unknown benchmark.", details={"benchmark": [f"unknown: {benchmark}"]})
    try:
        chosen_costs = Costs.coerce(costs or {}).as_dict()
    except ConfigError as exc:
        raise Invalid(str(exc), details={"costs": [str(exc)]}) from None
    fingerprint, counts = data_fingerprint(
        session, [*wanted, *([bench] if bench else [])], start, end, user_id=user_id
    )
    empty = [s for s in wanted if not counts.get(s)]
    if empty:
        raise Invalid(
            "No bars in the date range.",
            details={"symbols": [f"no bars from {start} to {end}: {', '.join(empty)}"]},
        )
    return _Prepared(wanted, str(chosen), bench, chosen_costs, fingerprint, spec.code_sha256(code))


def _stored(session: Session, symbol: str, *, user_id: int | None = None) -> bool:
    try:
        market.get_stock(session, symbol, user_id=user_id)
    except NotFound:
        return False
    return True


def data_fingerprint(
    session: Session,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date,
    *,
    user_id: int | None = None,
) -> tuple[str, dict[str, int]]:
    """A digest of the stored bars a run reads, and the bar count per symbol.

    Sums of integers (prices in 1/10000, factors in 1e-8): exact on every backend, so a
    corrected bar, a new dividend factor or a new day changes the digest.
    """
    stmt = (
        select(
            StockPrice.symbol,
            func.count(),
            func.min(StockPrice.date),
            func.max(StockPrice.date),
            func.sum(StockPrice.volume),
            func.sum(func.round(StockPrice.close * 10_000)),
            func.sum(func.round(StockPrice.open * 10_000)),
            func.sum(func.round(StockPrice.adj_factor * 100_000_000)),
        )
        .where(
            StockPrice.symbol.in_(list(symbols)), StockPrice.date >= start, StockPrice.date <= end
        )
        .group_by(StockPrice.symbol)
    )
    rows = list(session.execute(stmt))
    own = [s.removeprefix(USER_PREFIX) for s in symbols if s.startswith(USER_PREFIX)]
    if own and user_id is not None:  # the owner's uploaded data sets (files.datasets)
        rows += session.execute(
            select(
                USER_PREFIX + UserDataset.name,
                func.count(),
                func.min(UserDatasetBar.date),
                func.max(UserDatasetBar.date),
                func.sum(UserDatasetBar.volume),
                func.sum(func.round(UserDatasetBar.close * 10_000)),
                func.sum(func.round(UserDatasetBar.open * 10_000)),
                func.count() * 100_000_000,  # a data set has no adjustment: factor 1
            )
            .join(UserDataset, UserDataset.id == UserDatasetBar.dataset_id)
            .where(
                UserDataset.user_id == user_id,
                UserDataset.name.in_(own),
                UserDatasetBar.date >= start,
                UserDatasetBar.date <= end,
            )
            .group_by(UserDataset.name)
        ).all()
    parts, counts = [], {}
    for symbol, count, first, last, volume, closes, opens, factors in rows:
        counts[symbol] = int(count)
        numbers = [int(x or 0) for x in (volume, closes, opens, factors)]
        parts.append([symbol, int(count), str(first), str(last), *numbers])
    return spec.request_hash({"bars": sorted(parts)}), counts


def _check_grid(
    runtime: Runtime,
    param_grid: dict[str, list[Any]] | None,
    base_params: dict[str, Any],
    params: dict[str, Any] | None,
) -> list[dict[str, Any]] | None:
    if param_grid is None:
        return None
    if not param_grid:
        raise Invalid("An empty grid.", details={"param_grid": ["Give at least one parameter."]})
    merge_params(base_params, {k: v[0] for k, v in param_grid.items() if v})  # known keys only
    overlap = sorted(set(param_grid) & set(params or {}))
    if overlap:
        raise Invalid(
            "A parameter is both fixed and in the grid.",
            details={"param_grid": [f"also in params: {', '.join(overlap)}"]},
        )
    for key, values in param_grid.items():
        if not values:
            raise Invalid("A grid parameter has no values.", details={"param_grid": [key]})
        if len({spec.canonical(v) for v in values}) != len(values):
            raise Invalid("A grid parameter repeats a value.", details={"param_grid": [key]})
    count = spec.combination_count(param_grid)
    cap = runtime.settings.BACKTEST_MAX_GRID_COMBINATIONS
    if count > cap:
        raise Invalid(
            "Too many combinations.",
            details={"param_grid": [f"{count} combinations; at most {cap} per request"]},
        )
    return spec.combinations(param_grid)


def _reuse_finished(session: Session, *, user_id: int, runs: list[Backtest]) -> set[int]:
    """Give each run whose identical twin finished before a copy of its result; their ids."""
    if not runs:
        return set()
    hashes = {r.request_hash for r in runs}
    stmt = (
        select(Backtest.request_hash, Backtest.id)
        .where(
            Backtest.user_id == user_id,
            Backtest.request_hash.in_(hashes),
            Backtest.status == Status.FINISHED,
            Backtest.kind != Kind.GRID,
        )
        .order_by(Backtest.finished_at.desc(), Backtest.id.desc())
    )
    source: dict[str, int] = {}
    for digest, found in session.execute(stmt):
        source.setdefault(digest, found)
    reused: set[int] = set()
    now = utcnow()
    for run in runs:
        original_id = source.get(run.request_hash)
        if original_id is None or original_id == run.id:
            continue
        original = session.get(Backtest, original_id)
        assert original is not None  # noqa: S101  (found by the query above)
        copy_result(session, source_task_id=original_id, target_task_id=run.id)
        run.status = Status.FINISHED
        run.progress = 1.0
        run.reused_from_id = original_id
        run.data_start, run.data_end = original.data_start, original.data_end
        run.bars_count = original.bars_count
        run.notices = [*original.notices, f"result reused from backtest {original_id}"]
        run.started_at = run.finished_at = now
        run.timings = {"reused": True, "total_seconds": 0.0}
        reused.add(run.id)
    return reused


def copy_result(session: Session, *, source_task_id: int, target_task_id: int) -> None:
    """Copy a stored result with its rows (INSERT ... SELECT) to another backtest."""
    source = session.scalars(
        select(BacktestResult).where(BacktestResult.task_id == source_task_id)
    ).one()
    skip = {"id", "task_id", "created_at"}
    values = {
        c.key: getattr(source, c.key) for c in BacktestResult.__table__.columns if c.key not in skip
    }
    target = BacktestResult(task_id=target_task_id, **values)
    session.add(target)
    session.flush()
    for model in (BacktestTrade, BacktestEquity, BacktestRefusal, BacktestLog):
        columns = [c for c in model.__table__.columns if c.key not in ("id", "result_id")]
        rows = select(literal(target.id), *columns).where(model.result_id == source.id)
        session.execute(insert(model).from_select(["result_id", *(c.key for c in columns)], rows))


# ---------------------------------------------------------------- read, list, cancel, delete


def get_backtest(session: Session, *, user: User, backtest_id: int) -> Backtest:
    backtest = session.get(Backtest, backtest_id)
    if backtest is None or backtest.user_id != user.id:
        raise NotFound("No such backtest.")
    return backtest


def list_backtests(
    session: Session,
    *,
    user: User,
    strategy_id: int | None = None,
    status: str | None = None,
    grid_id: int | None = None,
    sort: str = "-created_at",
) -> Select[Backtest]:
    """Own backtests; a grid's combinations only with `grid_id` (else top-level ones)."""
    stmt = select(Backtest).where(Backtest.user_id == user.id)
    if grid_id is not None:
        stmt = stmt.where(Backtest.parent_id == grid_id)
    else:
        stmt = stmt.where(Backtest.parent_id.is_(None))
    if strategy_id is not None:
        stmt = stmt.where(Backtest.strategy_id == strategy_id)
    if status:
        stmt = stmt.where(Backtest.status == status)
    return stmt.order_by(SORTS[sort], Backtest.id.desc())


def delete_backtest(session: Session, *, user: User, backtest_id: int) -> None:
    """Cancel a queued or running backtest (it stays, `cancelled`); delete any other one."""
    backtest = get_backtest(session, user=user, backtest_id=backtest_id)
    if backtest.kind == Kind.COMBINATION:
        raise Conflict(
            f"This backtest is a combination of grid {backtest.parent_id}: delete the grid.",
            details={"grid_id": backtest.parent_id},
        )
    session.commit()  # the write below starts its own transaction (see create_backtest)
    if backtest.status in ACTIVE:
        now = utcnow()
        cancelled = {"status": Status.CANCELLED, "finished_at": now}
        session.execute(
            update(Backtest)
            .where(Backtest.id == backtest.id, Backtest.status.in_(list(ACTIVE)))
            .values(**cancelled, error="cancelled by the user")
        )
        if backtest.kind == Kind.GRID:
            session.execute(
                update(Backtest)
                .where(Backtest.parent_id == backtest.id, Backtest.status.in_(list(ACTIVE)))
                .values(**cancelled, error="the grid was cancelled")
            )
    else:
        session.execute(delete(Backtest).where(Backtest.id == backtest.id))
    session.commit()
    session.expire_all()
