"""Small bar builders and scripted strategies for the engine tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

import quantdesk.engine as qe


def frame(
    prices: Sequence[tuple[float, float]],
    start: str = "2024-01-02",
    *,
    dates: Iterable[Any] | None = None,
    volume: Sequence[float] | None = None,
    **extra: Sequence[Any],
) -> pd.DataFrame:
    """A daily frame from (open, close) pairs; high/low bracket them; business-day dates."""
    index = (
        pd.DatetimeIndex(list(dates))
        if dates is not None
        else pd.bdate_range(start, periods=len(prices))
    )
    opens = np.array([p[0] for p in prices], dtype=float)
    closes = np.array([p[1] for p in prices], dtype=float)
    df = pd.DataFrame(
        {
            "open": opens,
            "high": np.maximum(opens, closes),
            "low": np.minimum(opens, closes),
            "close": closes,
            "volume": np.asarray(volume, dtype=float) if volume is not None else 1e6,
        },
        index=index,
    )
    for name, values in extra.items():
        df[name] = list(values)
    return df


def bars(frames: dict[str, pd.DataFrame], **kwargs: Any) -> qe.Bars:
    """``Bars.from_frames`` shorthand."""
    return qe.Bars.from_frames(frames, **kwargs)


def scripted(
    orders: dict[int, list[tuple[str, float]]], *, hook: Callable[..., Any] | None = None
) -> SimpleNamespace:
    """An event strategy that calls ``ctx.order(symbol, shares)`` on the given bar numbers."""
    counter = {"bar": 0}

    def handle_bar(ctx: Any, data: Any) -> None:
        bar = counter["bar"]
        counter["bar"] += 1
        if hook is not None:
            hook(bar, ctx, data)
        for symbol, shares in orders.get(bar, []):
            ctx.order(symbol, shares)

    return SimpleNamespace(handle_bar=handle_bar)


def run(
    frames: dict[str, pd.DataFrame],
    orders: dict[int, list[tuple[str, float]]],
    *,
    listing_dates: dict[str, Any] | None = None,
    hook: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> qe.Result:
    """Backtest a scripted strategy on ``frames``."""
    kwargs.setdefault("initial_capital", 100_000)
    return qe.backtest(
        scripted(orders, hook=hook), bars(frames, listing_dates=listing_dates), **kwargs
    )


def fill_rows(result: qe.Result) -> list[tuple[str, str, str, int, float]]:
    """Fills as (date, symbol, side, shares, price) tuples."""
    f = result.fills
    return [
        (d.date().isoformat(), s, side, int(n), round(float(p), 6))
        for d, s, side, n, p in zip(f.date, f.symbol, f.side, f.shares, f.price, strict=True)
    ]


def refusal_rows(result: qe.Result) -> list[tuple[str, str, str, int, int, str]]:
    """Refusals as (date, symbol, side, requested, filled, reason) tuples."""
    r = result.refusals
    return [
        (d.date().isoformat(), s, side, int(q), int(f), reason)
        for d, s, side, q, f, reason in zip(
            r.date, r.symbol, r.side, r.requested, r.filled, r.reason, strict=True
        )
    ]
