"""Daily bars as aligned dates x symbols arrays, the one input format every engine path reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantdesk.engine.errors import DataError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

PRICE_FIELDS = ("open", "high", "low", "close", "volume", "amount")
_REQUIRED = ("open", "high", "low", "close", "volume")
_FLOAT_FIELDS = (*PRICE_FIELDS, "prev_close")


def _readonly(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.setflags(write=False)
    return array


def ffill_rows(values: FloatArray) -> FloatArray:
    """Forward-fill NaN down each column (the last known value per symbol)."""
    valid = ~np.isnan(values)
    rows = np.where(valid, np.arange(values.shape[0])[:, None], -1)
    np.maximum.accumulate(rows, axis=0, out=rows)
    filled = np.take_along_axis(values, np.maximum(rows, 0), axis=0)
    return np.where(rows >= 0, filled, np.nan)  # leading NaNs stay NaN


def _previous_close(close: FloatArray) -> FloatArray:
    """The symbol's previous bar's close, for each row where it has a bar (else NaN)."""
    last = ffill_rows(close)
    prev = np.full_like(close, np.nan)
    prev[1:] = last[:-1]
    return np.where(np.isnan(close), np.nan, prev)


def _normalise_index(index: pd.Index) -> pd.DatetimeIndex:
    stamps = pd.DatetimeIndex(pd.to_datetime(index))
    if stamps.tz is not None:
        stamps = stamps.tz_localize(None)
    return stamps.normalize()


def _lower_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    renamed = frame.rename(columns=lambda c: str(c).strip().lower().replace(" ", "_"))
    dupes = renamed.columns[renamed.columns.duplicated()].tolist()
    if dupes:
        raise DataError(f"{where}: columns {dupes} appear twice after lower-casing")
    missing = [c for c in _REQUIRED if c not in renamed.columns]
    if missing:
        raise DataError(f"{where}: missing columns {missing} (need {list(_REQUIRED)})")
    return renamed


@dataclass(frozen=True, eq=False)
class Bars:
    """Daily bars of many symbols as aligned ``dates x symbols`` float64 arrays.

    A symbol without a bar on a date has NaN there. Arrays are read-only, so one ``Bars`` can
    be shared by concurrent runs. Build it with :meth:`from_frames` or :meth:`from_long`.

    Attributes
    ----------
    dates : pandas.DatetimeIndex
        Trading dates (the union over symbols), ascending, tz-naive midnight.
    symbols : tuple of str
        Column order of every array.
    open, high, low, close, volume, amount, prev_close : ndarray
        ``(len(dates), len(symbols))`` float64; ``amount`` is NaN where not given;
        ``prev_close`` defaults to the symbol's previous bar's close.
    is_st, suspended : ndarray of bool
        ST/*ST flag and suspension flag (default: volume == 0 or no bar).
    listing_dates : dict
        Optional ``{symbol: date}`` for the "no limit in the first trading days" rule.
    """

    dates: pd.DatetimeIndex
    symbols: tuple[str, ...]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    amount: FloatArray
    prev_close: FloatArray
    is_st: BoolArray
    suspended: BoolArray
    listing_dates: Mapping[str, date] = field(default_factory=dict)

    @property
    def has_bar(self) -> BoolArray:
        """True where the symbol has a bar (a close) on the date."""
        return ~np.isnan(self.close)

    @property
    def shape(self) -> tuple[int, int]:
        """``(number of dates, number of symbols)``."""
        return (len(self.dates), len(self.symbols))

    def frame(self, name: str) -> pd.DataFrame:
        """One field as a DataFrame (index: dates, columns: symbols); a copy."""
        if name not in (*_FLOAT_FIELDS, "is_st", "suspended"):
            raise DataError(f"unknown field {name!r}")
        values = np.array(getattr(self, name))
        return pd.DataFrame(values, index=self.dates.copy(), columns=list(self.symbols))

    @classmethod
    def from_frames(
        cls,
        frames: Mapping[str, pd.DataFrame],
        listing_dates: Mapping[str, Any] | None = None,
    ) -> Bars:
        """Build from ``{symbol: DataFrame indexed by date}``.

        Parameters
        ----------
        frames : mapping of str to DataFrame
            Columns ``open high low close volume`` in any capitalisation, optional ``amount``,
            ``prev_close``, ``is_st``, ``suspended``; index: dates (a ``date`` column is used
            instead when present). tz-aware indexes keep their local calendar date.
        listing_dates : mapping of str to date-like, optional
            Listing date per symbol, for the first-trading-days price-limit exemption.

        Returns
        -------
        Bars
        """
        if not frames:
            raise DataError("no symbols given")
        parts: list[pd.DataFrame] = []
        for symbol, frame in frames.items():
            where = f"bars of {symbol}"
            df = _lower_columns(frame, where)
            if "date" in df.columns:
                df = df.set_index("date")
            df = df.copy()
            df.index = _normalise_index(df.index)
            if df.index.has_duplicates:
                raise DataError(f"{where}: duplicate dates")
            df = df.sort_index()
            df["symbol"] = str(symbol)
            df["date"] = df.index
            parts.append(df.reset_index(drop=True))
        return cls.from_long(pd.concat(parts, ignore_index=True), listing_dates)

    @classmethod
    def from_long(cls, df: pd.DataFrame, listing_dates: Mapping[str, Any] | None = None) -> Bars:
        """Build from one long DataFrame with ``date`` and ``symbol`` columns.

        Parameters
        ----------
        df : DataFrame
            One row per (date, symbol); the same value columns as :meth:`from_frames`.
        listing_dates : mapping of str to date-like, optional
            Listing date per symbol.

        Returns
        -------
        Bars
        """
        data = _lower_columns(df, "long bars")
        for col in ("date", "symbol"):
            if col not in data.columns:
                raise DataError(f"long bars: missing column {col!r}")
        stamps = _normalise_index(pd.Index(data["date"]))
        symbols_col = data["symbol"].astype(str).to_numpy()
        date_codes, dates = pd.factorize(stamps, sort=True)
        sym_codes, symbols = pd.factorize(symbols_col, sort=False)
        if len(symbols) == 0:
            raise DataError("no symbols given")
        key = date_codes.astype(np.int64) * len(symbols) + sym_codes
        if len(np.unique(key)) != len(key):
            raise DataError("long bars: duplicate (date, symbol) rows")
        shape = (len(dates), len(symbols))

        def panel(col: str, fill: float) -> FloatArray:
            out = np.full(shape, fill, dtype=np.float64)
            if col in data.columns:
                values = pd.to_numeric(data[col], errors="raise").to_numpy(
                    np.float64, na_value=np.nan
                )
                out[date_codes, sym_codes] = values
            return out

        arrays = {name: panel(name, np.nan) for name in PRICE_FIELDS}
        close = arrays["close"]
        has_bar = ~np.isnan(close)
        for name in PRICE_FIELDS:  # a row without a close is no bar at all
            arrays[name] = np.where(has_bar, arrays[name], np.nan)
        if "prev_close" in data.columns:
            given = np.where(has_bar, panel("prev_close", np.nan), np.nan)
            prev = np.where(np.isnan(given), _previous_close(close), given)
        else:
            prev = _previous_close(close)
        default_suspended = ~has_bar | (np.nan_to_num(arrays["volume"]) <= 0)
        given_st = panel("is_st", np.nan)  # rows that leave a flag empty take the default
        is_st = np.where(np.isnan(given_st), False, given_st != 0)
        given_susp = panel("suspended", np.nan)
        suspended = np.where(np.isnan(given_susp), default_suspended, given_susp != 0) | ~has_bar
        index = pd.DatetimeIndex(dates, name="date")
        symbols_t = tuple(str(s) for s in symbols)
        listing = {str(s): pd.Timestamp(d).date() for s, d in (listing_dates or {}).items()}
        unknown = sorted(set(listing) - set(symbols_t))
        if unknown:
            raise DataError(f"listing_dates for symbols without bars: {unknown}")
        return cls(
            dates=index,
            symbols=symbols_t,
            open=_readonly(arrays["open"]),
            high=_readonly(arrays["high"]),
            low=_readonly(arrays["low"]),
            close=_readonly(close),
            volume=_readonly(arrays["volume"]),
            amount=_readonly(arrays["amount"]),
            prev_close=_readonly(prev),
            is_st=_readonly(np.where(has_bar, is_st, False)),
            suspended=_readonly(suspended),
            listing_dates=listing,
        )
