"""The result of a backtest as typed tables, with metrics and a JSON form that has no NaN."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd


def json_safe(value: Any) -> Any:
    """Turn numpy/pandas scalars, dates and containers into JSON types; NaN and +-inf -> None."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    if value is pd.NaT or value is pd.NA:
        return None
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def frame_records(frame: pd.DataFrame, *, index: str | None = None) -> list[dict[str, Any]]:
    """A DataFrame as JSON-safe row dicts (the index becomes column ``index`` when named)."""
    data = frame.reset_index(names=index) if index else frame
    columns = [str(c) for c in data.columns]
    arrays = [data[c].to_numpy(dtype=object) for c in data.columns]
    return [
        {col: json_safe(arr[i]) for col, arr in zip(columns, arrays, strict=True)}
        for i in range(len(data))
    ]


@dataclass(frozen=True, eq=False)
class Result:
    """Everything one backtest produced.

    ``positions``, ``fills``, ``refusals``, ``logs`` and ``records`` are built from the run's
    arrays on first access (``tables`` holds their builders), so a run pays only for the tables
    it reads; large universes have millions of position rows.

    Attributes
    ----------
    equity : DataFrame
        Index ``date``; columns ``equity``, ``cash``, ``benchmark`` (the benchmark scaled to the
        initial capital; NaN without one) and ``drawdown`` (1 - equity / running peak, >= 0).
    positions : DataFrame
        ``date, symbol, shares, close, market_value`` of every holding after each bar.
    fills : DataFrame
        ``date, symbol, side ("buy"/"sell"), shares, price, commission, min_commission_topup,
        stamp_duty, transfer_fee, slippage``; commission includes its minimum top-up; slippage
        is the money lost to it (``|price - fill reference price| * shares``).
    refusals : DataFrame
        ``date, symbol, side, requested, filled, reason`` for every refused or trimmed order.
    logs : DataFrame
        ``date, message`` lines from ``ctx.log``.
    records : DataFrame
        Index ``date``; one column per name given to ``ctx.record``.
    rulebook_version : str
        The rulebook the run used.
    config : dict
        The run's resolved configuration (JSON-safe).
    state : dict
        The strategy's ``ctx.state`` at the end (event API).
    book : dict
        ``cash`` and ``positions`` (symbol -> shares, avg_cost) after the last bar: what a
        paper-trading step carries to the next.
    opening : dict
        A resumed run's starting positions, symbol -> (shares, avg_cost, date), so round trips
        and win rates count the sells of shares bought in earlier steps.
    """

    equity: pd.DataFrame
    rulebook_version: str
    config: dict[str, Any]
    tables: Mapping[str, Callable[[], pd.DataFrame]] = field(repr=False)
    state: dict[str, Any] = field(default_factory=dict)
    risk_free_rate: float = 0.0
    book: dict[str, Any] = field(default_factory=dict)
    opening: dict[str, tuple[float, float, Any]] = field(default_factory=dict)

    @cached_property
    def pending_orders(self) -> pd.DataFrame:
        """``symbol, shares, reference_price`` of the orders queued after the last bar.

        A backtest refuses them (``no_next_bar``); for a paper-trading step they are the
        signals: what to trade at the next open. ``reference_price`` is the last close.
        """
        return self.tables["pending_orders"]()

    @cached_property
    def positions(self) -> pd.DataFrame:
        """``date, symbol, shares, close, market_value`` of every holding after each bar."""
        return self.tables["positions"]()

    @cached_property
    def fills(self) -> pd.DataFrame:
        """Every fill with its cost breakdown, in execution order."""
        return self.tables["fills"]()

    @cached_property
    def refusals(self) -> pd.DataFrame:
        """Every refused or trimmed order with its reason."""
        return self.tables["refusals"]()

    @cached_property
    def logs(self) -> pd.DataFrame:
        """``date, message`` lines from ``ctx.log``."""
        return self.tables["logs"]()

    @cached_property
    def records(self) -> pd.DataFrame:
        """Index ``date``; one column per name given to ``ctx.record``."""
        return self.tables["records"]()

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """STRATEGY_API.md section 4 metrics (None where undefined), from ``engine.metrics``."""
        from quantdesk.engine.metrics import compute_metrics

        bench = self.equity["benchmark"]
        values = compute_metrics(
            self.equity["equity"],
            benchmark=None if bench.isna().all() else bench,
            fills=self.fills,
            risk_free_rate=self.risk_free_rate,
            opening=self.opening,
        )
        return {str(k): json_safe(v) for k, v in values.items()}

    @cached_property
    def round_trips(self) -> pd.DataFrame:
        """Closed round trips (FIFO lots per symbol), from ``engine.metrics``."""
        from quantdesk.engine.metrics import closed_round_trips

        trips: pd.DataFrame = closed_round_trips(self.fills, self.opening)
        return trips

    @property
    def final_positions(self) -> pd.DataFrame:
        """Holdings after the last bar."""
        build = self.tables.get("final_positions")
        if build is not None and "positions" not in self.__dict__:
            return build()  # without building every bar's holdings
        if self.equity.empty:
            return self.positions.iloc[0:0]
        last = self.equity.index[-1]
        held: pd.DataFrame = self.positions.loc[self.positions["date"] == last]
        return held.reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-safe data: dates as ISO strings, NaN and infinities as null.

        ``positions`` holds the final holdings only (the daily table can be large).
        """
        records = {str(name): json_safe(self.records[name].to_numpy()) for name in self.records}
        return {
            "rulebook_version": self.rulebook_version,
            "config": json_safe(self.config),
            "metrics": self.metrics,
            "equity": frame_records(self.equity, index="date"),
            "fills": frame_records(self.fills),
            "round_trips": frame_records(self.round_trips),
            "refusals": frame_records(self.refusals),
            "positions": frame_records(self.final_positions),
            "logs": frame_records(self.logs),
            "records": {
                "dates": json_safe(list(self.records.index)),
                "series": records,
            },
            "state": json_safe(self.state),
            "book": json_safe(self.book),
            "pending_orders": frame_records(self.pending_orders),
        }
