"""The kernels: numba-compiled and plain Python give bit-identical results; numba stays opt-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import quantdesk.engine as qe
from quantdesk.engine import kernels
from quantdesk.engine.broker import REASONS, Reason
from quantdesk.engine.sim import held_value

SYMBOLS = ("600000.SH", "300750.SZ", "688981.SH", "430047.BJ", "000001.SZ")
PROFILE = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def compiled() -> None:
    status = qe.use_numba()
    assert status.enabled, status.reason


def _python(code: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh interpreter; it prints one JSON value."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})},
        timeout=110,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_engine_has_no_side_effects(tmp_path: Path) -> None:
    seen = _python(
        "import json, os, sys\n"
        "import quantdesk.engine as qe\n"
        "print(json.dumps(['numba' in sys.modules, os.environ.get('NUMBA_CACHE_DIR'),"
        " qe.numba_enabled(), os.listdir('.')]))",
        cwd=tmp_path,
        env={"NUMBA_CACHE_DIR": ""},
    )
    assert seen == [False, "", False, []]


@pytest.mark.slow
def test_without_a_writable_cache_it_compiles_in_memory(tmp_path: Path) -> None:
    seen = _python(
        "import json\n"
        "import quantdesk.engine as qe\n"
        "status = qe.use_numba('/proc/no-such-dir/numba')\n"
        "print(json.dumps([status.enabled, status.cache_dir, status.reason]))",
        cwd=tmp_path,
    )
    assert seen[0] is True
    assert seen[1] is None
    assert "not writable" in seen[2]


def test_without_numba_the_plain_kernels_run(tmp_path: Path) -> None:
    seen = _python(
        "import json, sys\n"
        "sys.modules['numba'] = None  # as if numba were not installed\n"
        "import pandas as pd\n"
        "import quantdesk.engine as qe\n"
        "status = qe.use_numba()\n"
        "frame = pd.DataFrame({'open': [1.0, 1.1, 1.2], 'high': 1.2, 'low': 1.0,"
        " 'close': [1.0, 1.1, 1.2], 'volume': 1e6},"
        " index=pd.bdate_range('2024-01-02', periods=3))\n"
        "bars = qe.Bars.from_frames({'AAPL': frame})\n"
        "weights = lambda data, params: data.close * 0 + 1.0\n"
        "result = qe.backtest({'target_weights': weights}, bars, initial_capital=100)\n"
        "try:\n"
        "    qe.backtest({'target_weights': weights}, bars, accelerate=True)\n"
        "    error = ''\n"
        "except qe.ConfigError as exc:\n"
        "    error = str(exc)\n"
        "print(json.dumps([status.enabled, len(result.fills), error]))",
        cwd=tmp_path,
    )
    assert seen[0] is False
    assert seen[1] == 1
    assert "needs numba" in seen[2]


def test_reason_codes_follow_the_reason_enum() -> None:
    codes = {
        Reason.SUSPENDED: kernels.SUSPENDED,
        Reason.LIMIT_UP: kernels.LIMIT_UP,
        Reason.LIMIT_DOWN: kernels.LIMIT_DOWN,
        Reason.T_PLUS_1: kernels.T_PLUS_1,
        Reason.LOT_SIZE: kernels.LOT_SIZE,
        Reason.CASH: kernels.CASH,
        Reason.NO_NEXT_BAR: kernels.NO_NEXT_BAR,
    }
    assert [REASONS[code] for code in codes.values()] == list(codes)


def test_scalar_limit_price_equals_the_rulebook_arrays() -> None:
    rng = np.random.default_rng(3)
    prev = np.concatenate(
        [np.round(rng.uniform(0.01, 2000, 20_000), 2), [10.05, 1.0, np.nan, np.inf, 0.0]]
    )
    pct = rng.choice([0.0, 0.05, 0.1, 0.2, 0.3], size=prev.size)
    up, down = qe.limit_prices(prev, pct)
    scalar_up = [kernels.limit_price(p, q, True) for p, q in zip(prev, pct, strict=True)]
    scalar_down = [kernels.limit_price(p, q, False) for p, q in zip(prev, pct, strict=True)]
    np.testing.assert_array_equal(up, scalar_up)
    np.testing.assert_array_equal(down, scalar_down)


@given(st.lists(st.floats(-1e9, 1e9), max_size=600), st.integers(0, 5))
def test_pairwise_sum_is_numpy_sum(values: list[float], start: int) -> None:
    array = np.array([0.0] * start + values)
    assert kernels.pairwise_sum(array, start, len(values)) == float(np.sum(array[start:]))


def test_held_value_is_the_kernels_valuation() -> None:
    rng = np.random.default_rng(5)
    shares = np.where(rng.random((50, 7)) < 0.5, 0.0, rng.integers(1, 10_000, (50, 7)) * 100.0)
    mark = rng.uniform(1, 500, (50, 7))
    expected = [kernels.portfolio_value(0.0, shares[t], mark, t) for t in range(50)]
    assert held_value(shares, mark).tolist() == expected


@st.composite
def runs(draw: st.DrawFn) -> tuple[qe.Bars, dict[str, Any], np.random.Generator]:
    """Panels with limit moves, ST days, suspensions and gaps, and a run configuration."""
    n = draw(st.integers(5, 40))
    k = draw(st.integers(1, len(SYMBOLS)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dates = pd.bdate_range("2020-08-03", periods=n)
    frames = {}
    for symbol in SYMBOLS[:k]:
        moves = rng.choice([-0.2, -0.1, -0.03, 0.0, 0.02, 0.1, 0.2], size=n)
        close = np.round(10 * np.cumprod(1 + moves), 2)
        opens = np.round(close * (1 + rng.normal(0, 0.01, n)), 2)
        frame = pd.DataFrame(
            {
                "open": opens,
                "high": np.maximum(opens, close),
                "low": np.minimum(opens, close),
                "close": close,
                "volume": np.where(rng.random(n) < 0.1, 0.0, 1e6),
                "is_st": rng.random(n) < 0.2,
            },
            index=dates,
        )
        keep = rng.random(n) > 0.05
        keep[0] = True
        frames[symbol] = frame[keep]
    bars = qe.Bars.from_frames(frames, listing_dates={SYMBOLS[0]: "2020-08-04"})
    config: dict[str, Any] = {
        "initial_capital": draw(st.sampled_from([3_000, 60_000, 2_000_000])),
        "slippage_bps": draw(st.sampled_from([0.0, 5.0, 80.0])),
        "fill": draw(st.sampled_from(["next_open", "next_close"])),
    }
    if draw(st.booleans()):
        config["rules"] = {"t_plus_1": False}
    return bars, config, rng


def _assert_same(a: qe.Result, b: qe.Result) -> None:
    for name in ("fills", "refusals", "equity", "positions", "records"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)


@PROFILE
@given(runs())
def test_event_runs_are_bit_identical(run: tuple[qe.Bars, dict[str, Any], Any]) -> None:
    bars, config, rng = run
    n = len(bars.dates)
    plan = {
        t: [
            (str(rng.choice(bars.symbols)), int(rng.integers(-3000, 3000)))
            for _ in range(rng.integers(0, 6))
        ]
        for t in range(n)
    }

    def handle_bar(ctx: Any, data: Any) -> None:
        t = ctx.state.setdefault("t", 0)
        for symbol, shares in plan[t]:
            ctx.order(symbol, shares)
        ctx.record(value=ctx.total_value)
        ctx.state["t"] = t + 1

    strategy = SimpleNamespace(handle_bar=handle_bar)
    _assert_same(
        qe.backtest(strategy, bars, accelerate=False, **config),
        qe.backtest(strategy, bars, accelerate=True, **config),
    )


@PROFILE
@given(runs())
def test_vectorized_runs_are_bit_identical(run: tuple[qe.Bars, dict[str, Any], Any]) -> None:
    bars, config, rng = run
    n, k = bars.shape
    raw = rng.random((n, k)) * rng.choice([0.0, 1.0], size=(n, k))
    raw = raw / np.maximum(raw.sum(axis=1, keepdims=True), 1.0)
    raw[rng.random((n, k)) < 0.3] = np.nan
    weights = pd.DataFrame(raw, index=bars.dates, columns=list(bars.symbols))
    strategy = SimpleNamespace(target_weights=lambda data, params: weights)
    _assert_same(
        qe.backtest(strategy, bars, accelerate=False, **config),
        qe.backtest(strategy, bars, accelerate=True, **config),
    )
