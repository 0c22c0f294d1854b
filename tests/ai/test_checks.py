"""The deterministic checks behind the strategy analysis, on code and numbers chosen to trip
each of them (and on the built-in templates, which must not raise false alarms)."""

from __future__ import annotations

from typing import Any

import pytest

from quantdesk.ai import checks
from quantdesk.strategies.templates import templates


def _look_ahead(code: str, api: str = "vectorized") -> list[tuple[str, int | None]]:
    found = checks.code_checks(code, api, {})["look_ahead"]
    return [(f.severity, f.line) for f in found]


def test_the_templates_raise_no_serious_warning() -> None:
    for template in templates():
        found = checks.code_checks(template.code, template.api, template.params)
        serious = [f for f in found["look_ahead"] if f.severity != "low"]
        assert serious == [], template.slug
        assert found["position_limits"] == [], template.slug
        assert found["limit_evidence"], template.slug


@pytest.mark.parametrize(
    ("line", "severity"),
    [
        ("w = close.shift(-1) > close", "high"),
        ("w = close.pct_change(periods=-5) > 0", "high"),
        ("w = close.diff(-1) > 0", "high"),
        ("w = close.rolling(5, center=True).mean() < close", "high"),
        ("w = (close > close.mean()).astype(float)", "medium"),
        ("w = (close > close.max(axis=0) / 2).astype(float)", "medium"),
        ("w = (close > close.iloc[-1]).astype(float)", "medium"),
        ("w = (close > 0).astype(float).fillna(method='bfill')", "medium"),
    ],
)
def test_vectorized_look_ahead_patterns(line: str, severity: str) -> None:
    code = f"def target_weights(data, params):\n    close = data.close\n    {line}\n    return w\n"
    assert _look_ahead(code) == [(severity, 3)]


@pytest.mark.parametrize(
    "line",
    [
        "w = close.shift(1) > close",
        "w = close.rolling(20).mean() < close",
        "w = close.expanding().max() == close",
        "w = close.rank(axis=1) <= 3",
        "w = close.div(close.sum(axis=1), axis=0)",
    ],
)
def test_past_only_code_is_not_flagged(line: str) -> None:
    code = f"def target_weights(data, params):\n    close = data.close\n    {line}\n    return w\n"
    assert _look_ahead(code) == []


def test_windowed_names_and_calendar_shifts() -> None:
    code = (
        "def target_weights(data, params):\n"
        "    close = data.close\n"
        "    window = close.rolling(10)\n"
        "    month = close.index.to_series().dt.month\n"
        "    last = (month != month.shift(-1)).to_numpy()\n"
        "    return (window.mean() < close).astype(float)\n"
    )
    assert _look_ahead(code) == [("low", 5)]  # the next date's month only


def test_event_code_cannot_look_ahead_but_is_told_about_misalignment() -> None:
    code = (
        "import pandas as pd\n"
        "def handle_bar(ctx, data):\n"
        "    close = pd.Series(data.history('AAPL', 'close', 20))\n"
        "    if close.shift(-1).iloc[0] > close.mean():\n"
        "        ctx.order_target_percent('AAPL', 0.1)\n"
    )
    assert _look_ahead(code, "event") == [("low", 4)]


def test_position_limits() -> None:
    def limits(code: str, params: dict[str, Any] | None = None) -> list[str]:
        found = checks.code_checks(code, "event", params or {})["position_limits"]
        return [f.message for f in found]

    all_in = "def handle_bar(ctx, data):\n    ctx.order_target_percent('AAPL', 1)\n"
    messages = limits(all_in)
    assert messages[0].startswith("order_target_percent(..., 1) puts the whole portfolio")
    assert messages[1].startswith("no position limit found")
    fixed = "def handle_bar(ctx, data):\n    ctx.order('AAPL', 1000)\n"
    assert limits(fixed)[0].startswith("fixed order sizes (order) never look at cash")
    assert limits(fixed, {"max_weight": 0.2}) == [limits(fixed)[0]]  # a limit param is evidence
    capped = (
        "def handle_bar(ctx, data):\n    ctx.order_target_percent('AAPL', min(0.3, ctx.cash))\n"
    )
    assert limits(capped) == []


def _facts(**metrics: Any) -> dict[str, Any]:
    base = {"final_value": 1_100_000.0, "trades_count": 20, "turnover": 2.0}
    return {
        "symbols": ["600519.SH"],
        "bars_count": 252,
        "initial_capital": 1_000_000.0,
        "metrics": {**base, **metrics},
        "cost_summary": {"total": 2_000.0, "slippage": 0.0, "min_commission_fills": 0},
    }


def test_over_trading() -> None:
    calm, numbers = checks.over_trading(_facts())
    assert calm == []
    assert numbers["fills_per_symbol_year"] == 20
    assert numbers["costs_of_gross_profit"] == round(2_000 / 102_000, 4)
    busy, _ = checks.over_trading(_facts(trades_count=300))
    assert [f.severity for f in busy] == ["high"]
    eaten = _facts()
    eaten["cost_summary"]["total"] = 150_000.0
    found, numbers = checks.over_trading(eaten)
    assert numbers["costs_of_gross_profit"] == round(150_000 / 250_000, 4)
    assert [f.message.startswith("costs took 60%") for f in found] == [True]


def test_drawdown_against_return() -> None:
    def severities(**metrics: Any) -> list[tuple[str, str]]:
        return [(f.severity, f.message) for f in checks.drawdown_vs_return(metrics)]

    assert severities(total_return=0.5, annual_return=0.2, max_drawdown=0.1, sharpe_ratio=1.5) == []
    lost = severities(total_return=-0.1, annual_return=-0.05, max_drawdown=0.2)
    assert lost[0][0] == "high"
    assert lost[0][1].startswith("the run lost money")
    deep = severities(total_return=0.3, annual_return=0.1, max_drawdown=0.35, sharpe_ratio=0.4)
    assert [s for s, _ in deep] == ["high", "medium", "low"]
    behind = severities(
        total_return=0.1, annual_return=0.1, max_drawdown=0.05, benchmark_return=0.3
    )
    assert behind == [("medium", "it trailed its benchmark (10.0% against 30.0%)")]


def _grid(scores: dict[tuple[int, int], float]) -> dict[str, Any]:
    rows = [
        {"params": {"fast": f, "slow": s}, "status": "finished", "score": score}
        for (f, s), score in scores.items()
    ]
    return {"grid_id": 1, "rank_by": "sharpe_ratio", "lower_is_better": False, "rows": rows}


def test_overfitting_finds_an_isolated_lucky_peak() -> None:
    scores = {(f, s): 0.1 for f in (3, 5, 10, 15) for s in (20, 40, 60)}
    scores[(5, 40)] = 2.5
    found, facts = checks.overfitting(_grid(scores), {"fast": 5, "slow": 40}, bars_count=1000)
    assert facts["best_params"] == {"fast": 5, "slow": 40}
    assert facts["neighbour_mean"] == pytest.approx(0.1)
    messages = [f.message for f in found]
    assert any("standard deviations above the median" in m for m in messages)
    assert any("isolated peak" in m for m in messages)


def test_a_plateau_is_not_overfitting() -> None:
    scores = {(f, s): 1.0 + 0.01 * f for f in (3, 5, 10) for s in (20, 40)}
    found, facts = checks.overfitting(_grid(scores), {"fast": 5, "slow": 40}, bars_count=1000)
    assert found == []
    assert facts["combinations"] == 6
    many, _ = checks.overfitting(_grid(scores), {"fast": 5, "slow": 40}, bars_count=40)
    assert [f.message for f in many] == ["6 combinations tried on 40 bars"]
    knobs = {f"p{n}": n for n in range(6)}
    found, _ = checks.overfitting(None, knobs, bars_count=None)
    assert [f.severity for f in found] == ["low"]
