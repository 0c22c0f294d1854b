"""Regenerate the golden-master files of test_golden.py.

    .venv/bin/python -m tests.engine.make_golden           # expected results from the CSV
    .venv/bin/python -m tests.engine.make_golden --data    # also rewrite the seeded CSV first

Only regenerate after a deliberate change of engine semantics, and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import quantdesk.engine as qe

DATA = Path(__file__).parent / "data"
BARS_CSV = DATA / "golden_bars.csv"
EXPECTED = DATA / "golden_expected.json"

STRATEGY = '''
"""Dual moving-average crossover on every symbol of the universe (STRATEGY_API.md 1a)."""
PARAMS = {"fast": 5, "slow": 20}

def handle_bar(ctx, data):
    weight = 1 / len(ctx.universe)
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"]:
            continue
        held = symbol in ctx.positions
        fast = close[-ctx.params["fast"]:].mean()
        if fast > close.mean() and not held:
            ctx.order_target_percent(symbol, weight * 0.98)
        elif fast <= close.mean() and held:
            ctx.order_target_percent(symbol, 0)
    ctx.record(cash=ctx.cash)
'''

# A run on 2020-06-01 .. 2021-05: crosses ChiNext's 2020-08-24 limit change; the main-board
# stock is ST for 30 bars and suspended for 3; slippage and the cn_a defaults are on.
CONFIG: dict[str, Any] = {"initial_capital": 1_000_000, "slippage_bps": 5.0}


def make_bars_csv() -> None:
    """Write 3 symbols x 250 seeded synthetic bars with limit moves, ST days and a suspension."""
    rng = np.random.default_rng(20260706)
    dates = pd.bdate_range("2020-06-01", periods=250)
    rows = []
    for symbol, start, vol in (
        ("600519.SH", 50.0, 0.02),
        ("300750.SZ", 80.0, 0.035),
        ("688981.SH", 60.0, 0.03),
    ):
        moves = rng.normal(0.0005, vol, len(dates))
        moves[rng.random(len(dates)) < 0.03] = 0.2  # occasional jumps that hit the limits
        close = start * np.cumprod(1 + moves)
        for i, d in enumerate(dates):
            prev = close[i - 1] if i else start
            limit = (
                0.1
                if symbol == "600519.SH"
                or (symbol == "300750.SZ" and d < pd.Timestamp("2020-08-24"))
                else 0.2
            )
            close[i] = float(np.clip(close[i], prev * (1 - limit), prev * (1 + limit)))
        close = np.round(close, 2)
        prev = np.concatenate([[start], close[:-1]])
        opens = np.round(prev * (1 + rng.normal(0, 0.01, len(dates))), 2)
        opens = np.where(moves == 0.2, close, opens)  # jump days open at the limit
        for i, d in enumerate(dates):
            suspended = symbol == "600519.SH" and 100 <= i < 103
            rows.append(
                {
                    "date": d.date().isoformat(),
                    "symbol": symbol,
                    "open": opens[i],
                    "high": max(opens[i], close[i]),
                    "low": min(opens[i], close[i]),
                    "close": close[i],
                    "volume": 0 if suspended else int(rng.integers(1e5, 1e6)),
                    "is_st": symbol == "600519.SH" and 150 <= i < 180,
                }
            )
    DATA.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(BARS_CSV, index=False)


def load_bars() -> qe.Bars:
    """The committed CSV as Bars."""
    return qe.Bars.from_long(pd.read_csv(BARS_CSV))


def run() -> qe.Result:
    """The golden run."""
    return qe.backtest(STRATEGY, load_bars(), **CONFIG)


def snapshot(result: qe.Result) -> dict[str, Any]:
    """What the golden master pins: fills, refusals, daily equity and cash, metrics."""
    data = result.to_dict()
    return {
        "fills": data["fills"],
        "refusals": data["refusals"],
        "equity": [[row["date"], row["equity"], row["cash"]] for row in data["equity"]],
        "metrics": data["metrics"],
        "rulebook_version": data["rulebook_version"],
    }


def main(argv: list[str]) -> None:
    if "--data" in argv:
        make_bars_csv()
    EXPECTED.write_text(json.dumps(snapshot(run()), indent=1, allow_nan=False) + "\n")
    print(f"wrote {EXPECTED}")


if __name__ == "__main__":
    main(sys.argv[1:])
