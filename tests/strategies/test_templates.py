"""The built-in templates: each passes the sandbox check and trades under the restricted runtime."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import quantdesk.engine as qe
from quantdesk.sandbox.guard import load_strategy
from quantdesk.strategies.templates import Template, templates

SYMBOLS = ("600000.SH", "000001.SZ", "300750.SZ", "688981.SH", "601318.SH", "002594.SZ")


@pytest.fixture(scope="module")
def bars() -> qe.Bars:
    """Two years of seeded random walks on four boards (the sample provider's data later)."""
    rng = np.random.default_rng(20240101)
    frames = {}
    for symbol in SYMBOLS:
        n = 500
        close = 20 * np.exp(np.cumsum(rng.normal(0.0003, 0.018, n)))
        open_ = close * (1 + rng.normal(0, 0.004, n))
        frames[symbol] = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) * 1.01,
                "low": np.minimum(open_, close) * 0.99,
                "close": close,
                "volume": 1e6,
            },
            index=pd.bdate_range("2022-01-03", periods=n),
        )
    return qe.Bars.from_frames(frames)


def _run(template: Template, bars: qe.Bars) -> qe.Result:
    return qe.backtest(
        load_strategy(template.code).namespace, bars, market="cn_a", initial_capital=1_000_000
    )


@pytest.mark.parametrize("template", templates(), ids=lambda t: t.slug)
def test_template_trades_in_the_sandbox_runtime(template: Template, bars: qe.Bars) -> None:
    result = _run(template, bars)
    assert len(result.fills) > 0
    assert result.metrics["final_value"] is not None
    assert result.metrics["trades_count"] == len(result.fills)
    # Whole lots on buys (100, or 200+ on STAR) and never a negative cash balance.
    buys = result.fills[result.fills.side == "buy"]
    star = buys.symbol == "688981.SH"
    assert (buys[~star].shares % 100 == 0).all()
    assert (buys[star].shares >= 200).all()
    assert (result.equity.cash >= -1e-6).all()


def test_both_apis_are_among_the_templates() -> None:
    assert {t.api for t in templates()} == {"event", "vectorized"}
    assert len(templates()) >= 6


def test_momentum_rotation_holds_at_most_top_n(bars: qe.Bars) -> None:
    template = next(t for t in templates() if t.slug == "momentum_rotation")
    result = _run(template, bars)
    held = result.positions[result.positions.shares > 0].groupby("date").symbol.nunique()
    assert held.max() <= template.params["top_n"]
    assert held.max() >= 1


def test_equal_weight_monthly_trades_only_after_month_ends(bars: qe.Bars) -> None:
    template = next(t for t in templates() if t.slug == "equal_weight_monthly")
    result = _run(template, bars)
    dates = pd.DatetimeIndex(result.fills.date.unique())
    previous = pd.DatetimeIndex([d - pd.offsets.BDay(1) for d in dates])
    # Every fill day follows a month's last trading day (weights from t fill at t+1's open).
    assert (previous.month != dates.month).all()
    first = result.positions[result.positions.date == result.positions.date.max()]
    assert (first.shares > 0).sum() == len(SYMBOLS)
