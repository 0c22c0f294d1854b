"""A scripted provider for sync tests: bars from a table, failures on demand, calls counted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quantdesk.market.providers.base import Listing, NotCovered, ProviderError

START = dt.date(2024, 1, 2)


def make_bars(
    days: int, *, start: dt.date = START, price: float = 10.0, factor: float = 1.0, seed: int = 7
) -> pd.DataFrame:
    """`days` weekday bars of a seeded random walk, unadjusted, with a constant factor."""
    # One stream per column: make_bars(30) starts with the same 20 bars as make_bars(20).
    moves, gaps, sizes = (np.random.default_rng([seed, k]) for k in range(3))
    dates = pd.bdate_range(start, periods=days).date
    close = np.round(price * np.exp(np.cumsum(moves.normal(0, 0.02, days))), 2)
    open_ = np.round(close * (1 + gaps.normal(0, 0.005, days)), 2)
    return pd.DataFrame(
        {
            "date": dates,
            "open": open_,
            "high": np.round(np.maximum(open_, close) + 0.05, 2),
            "low": np.round(np.minimum(open_, close) - 0.05, 2),
            "close": close,
            "volume": sizes.integers(1_000, 100_000, days) * 100,
            "amount": np.round(close * 1e6, 2),
            "adj_factor": factor,
        }
    )


@dataclass
class FakeProvider:
    """Serves `table[symbol]`; `failures[symbol]` lists errors raised on successive calls."""

    name: str = "fake"
    table: dict[str, pd.DataFrame] = field(default_factory=dict)
    failures: dict[str, list[ProviderError]] = field(default_factory=dict)
    calls: list[tuple[str, dt.date, dt.date]] = field(default_factory=list)

    def covers(self, symbol: str) -> bool:
        return symbol in self.table or symbol in self.failures

    def listings(self, symbols: Sequence[str] | None = None) -> list[Listing]:
        wanted = list(self.table) if symbols is None else list(symbols)
        missing = [s for s in wanted if s not in self.table and s not in self.failures]
        if missing:
            raise NotCovered(f"fake has no {missing}")
        return [
            Listing(s, f"Fake {s}", "NASDAQ", "us", "us", sector="Testing", currency="USD")
            for s in wanted
        ]

    def bars(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        self.calls.append((symbol, start, end))
        pending = self.failures.get(symbol)
        if pending:
            raise pending.pop(0)
        table = self.table[symbol]
        dates = pd.Series(table["date"])
        return table[((dates >= start) & (dates <= end)).to_numpy()].reset_index(drop=True)
