"""Property tests (hypothesis): accounting identities hold and both APIs trade identically."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import quantdesk.engine as qe

SYMBOLS = ("600000.SH", "300750.SZ", "688981.SH")
PROFILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def panels(draw: st.DrawFn) -> qe.Bars:
    """2-3 symbols, 8-30 bars of random walks with limit moves, zero-volume days and gaps."""
    n = draw(st.integers(8, 30))
    k = draw(st.integers(2, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=n)
    frames = {}
    for symbol in SYMBOLS[:k]:
        moves = rng.choice([-0.1, -0.03, 0.0, 0.02, 0.1], size=n)
        close = np.round(10 * np.cumprod(1 + moves), 2)
        opens = np.round(close * (1 + rng.normal(0, 0.01, n)), 2)
        volume = np.where(rng.random(n) < 0.1, 0.0, 1e6)
        df = pd.DataFrame(
            {
                "open": opens,
                "high": np.maximum(opens, close),
                "low": np.minimum(opens, close),
                "close": close,
                "volume": volume,
            },
            index=dates,
        )
        keep = rng.random(n) > 0.05
        keep[0] = True
        frames[symbol] = df[keep]
    return qe.Bars.from_frames(frames)


def _random_orders(seed: int, n_bars: int, symbols: tuple[str, ...]) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    plan = {
        t: [
            (str(rng.choice(symbols)), int(rng.integers(-3000, 3000)))
            for _ in range(rng.integers(0, 4))
        ]
        for t in range(n_bars)
    }

    def handle_bar(ctx: Any, data: Any) -> None:
        for symbol, shares in plan[ctx.state.setdefault("t", 0)]:
            ctx.order(symbol, shares)
        ctx.state["t"] += 1

    return SimpleNamespace(handle_bar=handle_bar)


@PROFILE
@given(
    bars=panels(), seed=st.integers(0, 10_000), capital=st.sampled_from([5_000, 50_000, 500_000])
)
def test_accounting_invariants(bars: qe.Bars, seed: int, capital: float) -> None:
    strategy = _random_orders(seed, len(bars.dates), bars.symbols)
    result = qe.backtest(strategy, bars, initial_capital=capital, slippage_bps=5)
    eq = result.equity
    # Cash is never negative.
    assert (eq.cash >= 0).all()
    # Every day equity = cash + sum(shares x close) (the last close for a day without a bar).
    held = result.positions.groupby("date").market_value.sum().reindex(eq.index, fill_value=0.0)
    np.testing.assert_allclose(eq.equity, eq.cash + held, rtol=1e-12, atol=1e-6)
    # Never more sold than held: replay the fills.
    shares = dict.fromkeys(bars.symbols, 0)
    for row in result.fills.itertuples():
        assert row.shares > 0
        shares[row.symbol] += row.shares if row.side == "buy" else -row.shares
        assert shares[row.symbol] >= 0
    final = result.final_positions.set_index("symbol").shares.to_dict()
    assert {s: n for s, n in shares.items() if n} == final
    # Cash recomputed from the fills matches the recorded cash.
    f = result.fills
    flows = (
        np.where(f.side == "buy", -1, 1) * f.shares * f.price
        - f.commission
        - f.stamp_duty
        - f.transfer_fee
    )
    np.testing.assert_allclose(capital + flows.sum(), eq.cash.iloc[-1], rtol=1e-9, atol=1e-6)
    # Trimmed orders never fill more than requested.
    assert (result.refusals.filled < result.refusals.requested).all()


@PROFILE
@given(
    bars=panels(), seed=st.integers(0, 10_000), fill=st.sampled_from(["next_open", "next_close"])
)
def test_event_and_vectorized_forms_give_identical_fills(
    bars: qe.Bars, seed: int, fill: str
) -> None:
    rng = np.random.default_rng(seed)
    n, k = bars.shape
    raw = rng.random((n, k)) * rng.choice([0.0, 1.0], size=(n, k))
    raw = raw / np.maximum(raw.sum(axis=1, keepdims=True), 1.0)
    raw[rng.random((n, k)) < 0.3] = np.nan  # NaN = no change
    weights = pd.DataFrame(raw, index=bars.dates, columns=list(bars.symbols))

    vectorized = SimpleNamespace(target_weights=lambda data, params: weights)

    def handle_bar(ctx: Any, data: Any) -> None:
        row = weights.loc[pd.Timestamp(ctx.now)]
        for symbol in ctx.universe:
            if not np.isnan(row[symbol]):
                ctx.order_target_percent(symbol, float(row[symbol]))

    event = SimpleNamespace(handle_bar=handle_bar)
    kwargs: dict[str, Any] = {"initial_capital": 200_000, "fill": fill, "slippage_bps": 3}
    a = qe.backtest(event, bars, **kwargs)
    b = qe.backtest(vectorized, bars, **kwargs)
    pd.testing.assert_frame_equal(a.fills, b.fills)
    pd.testing.assert_frame_equal(a.refusals, b.refusals)
    pd.testing.assert_frame_equal(a.equity, b.equity)
