"""The provider interface: listings and daily bars in one canonical shape, and typed failures.

Every provider (sample, akshare, yfinance) answers with the same `Listing` records and the same
bar columns, and turns its library's many ways of failing into the few errors below, so the
sync can decide what to retry and what to report without knowing where the data came from.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Columns of a provider's bar frame. `date` is a datetime.date; prices are unadjusted; volume
#: is in shares; `adj_factor` is cumulative (price x factor is comparable over time).
REQUIRED_COLUMNS = ("date", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("amount", "adj_factor", "prev_close", "is_st", "suspended")
BAR_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)

_LIBRARY_WARNINGS: tuple[type[Warning], ...] = (
    getattr(pd.errors, "Pandas4Warning", FutureWarning),
    FutureWarning,
    DeprecationWarning,
)
# More than this share of unusable rows means the source changed its format, not a bad day.
_MAX_BAD_SHARE = 0.1


@dataclass(frozen=True)
class Listing:
    """What a provider knows about one instrument."""

    symbol: str
    name: str
    exchange: str
    board: str
    market: str
    kind: str = "stock"
    sector: str | None = None
    industry: str | None = None
    market_cap: float | None = None
    currency: str = "CNY"
    listed_on: dt.date | None = None
    is_st: bool = False


class ProviderError(Exception):
    """A provider call failed; `retryable` says whether trying again may help."""

    retryable: ClassVar[bool] = True


class ProviderTimeout(ProviderError):
    """The source did not answer in time."""


class RateLimited(ProviderError):
    """The source refused us for asking too often (HTTP 429, a ban page instead of data)."""


class ProviderUnavailable(ProviderError):
    """Network error, server error, or an answer that is not what the source normally sends."""


class SchemaChanged(ProviderError):
    """The answer parsed, but its columns are not the ones we know: retrying will not help."""

    retryable = False


class NotCovered(ProviderError):
    """The provider has no data for this symbol at all (wrong market, unknown code)."""

    retryable = False


class Provider(Protocol):
    """A source of listings and daily bars."""

    name: str

    def covers(self, symbol: str) -> bool:
        """Whether this provider can have bars for `symbol`."""
        ...

    def listings(self, symbols: Sequence[str] | None = None) -> list[Listing]:
        """Listings of `symbols`, or of the provider's whole universe when None."""
        ...

    def bars(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Daily bars of `symbol` from start to end (both included), columns BAR_COLUMNS.

        An empty frame means the source has no bars in the range; failures raise ProviderError.
        """
        ...


def empty_bars() -> pd.DataFrame:
    return pd.DataFrame({column: [] for column in REQUIRED_COLUMNS})


def clean_bars(frame: pd.DataFrame, *, symbol: str, source: str) -> pd.DataFrame:
    """Check and tidy a provider's frame; refuse it when it does not look like daily bars.

    Rows without a positive price are dropped (a few per history happen); when more than a
    tenth of the rows are unusable, or a column is missing, the whole frame is refused with
    SchemaChanged, so a changed format never reaches the database. High and low are widened
    to contain open and close (sources round them separately).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaChanged(f"{source}: bars of {symbol} lack columns {missing}")
    if frame.empty:
        return empty_bars()
    out = frame.loc[:, [c for c in BAR_COLUMNS if c in frame.columns]].copy()
    try:
        out["date"] = pd.to_datetime(out["date"]).dt.date
        for column in ("open", "high", "low", "close", "amount", "adj_factor", "prev_close"):
            if column in out.columns:
                out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
        volume = pd.to_numeric(out["volume"], errors="coerce").astype("float64")
    except (TypeError, ValueError) as exc:
        raise SchemaChanged(f"{source}: bars of {symbol} have unreadable values: {exc}") from exc
    prices = out[["open", "high", "low", "close"]].to_numpy()
    good = np.isfinite(prices).all(axis=1) & (prices > 0).all(axis=1) & np.isfinite(volume)
    good &= volume.to_numpy() >= 0
    if "adj_factor" in out.columns:
        factor = out["adj_factor"].to_numpy()
        good &= np.isfinite(factor) & (factor > 0)
    bad = int((~good).sum())
    if bad > _MAX_BAD_SHARE * len(out):
        raise SchemaChanged(f"{source}: {bad} of {len(out)} bars of {symbol} are unusable")
    if bad:
        log.warning("%s: dropped %d unusable bars of %s", source, bad, symbol)
    out = out[good].copy()
    out["volume"] = volume[good].round().astype("int64")
    out["high"] = out[["open", "high", "low", "close"]].max(axis=1)
    out["low"] = out[["open", "high", "low", "close"]].min(axis=1)
    tidy: pd.DataFrame = out.drop_duplicates("date", keep="last").sort_values("date")
    return tidy.reset_index(drop=True)


def call_with_deadline(fn: Callable[[], T], *, timeout: float, what: str) -> T:
    """Run `fn` in a daemon thread and give up after `timeout` seconds.

    Some library functions take no timeout (akshare's index and calendar helpers call
    `requests.get` without one), so a hung socket would hang the sync; the thread is left to
    finish or die on its own, and the caller moves on with ProviderTimeout.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            with warnings.catch_warnings():
                # The libraries' own deprecations under pandas 3 (inplace=...) are theirs to fix.
                for category in _LIBRARY_WARNINGS:
                    warnings.simplefilter("ignore", category)
                result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread below
            error.append(exc)

    worker = threading.Thread(target=run, name=f"provider-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ProviderTimeout(f"{what}: no answer within {timeout:g} s")
    if error:
        raise error[0]
    return result[0]


class Pacer:
    """Keeps calls to one source at least `interval` seconds apart (sources ban eager clients)."""

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._clock, self._sleep = clock, sleep
        self._last = -float("inf")
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            pause = self._last + self.interval - self._clock()
            if pause > 0:
                self._sleep(pause)
            self._last = self._clock()
