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
_PANEL_FIELDS = (*_FLOAT_FIELDS, "is_st", "suspended")


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


def _numeric(column: pd.Series) -> FloatArray:
    """A column as float64 (booleans as 0/1, missing as NaN); non-numbers are an error."""
    numeric = column if column.dtype.kind in "fiub" else pd.to_numeric(column, errors="raise")
    values: FloatArray = numeric.to_numpy(np.float64, na_value=np.nan)
    return values


def _normalise_index(index: pd.Index) -> pd.DatetimeIndex:
    stamps = (
        index if isinstance(index, pd.DatetimeIndex) else pd.DatetimeIndex(pd.to_datetime(index))
    )
    if stamps.tz is not None:
        stamps = stamps.tz_localize(None)
    values = stamps.to_numpy()
    days = values.astype("datetime64[D]").astype(values.dtype)  # midnight (NaT stays NaT)
    if np.array_equal(values, days, equal_nan=True):
        return stamps  # already midnight: skip normalize() and its frequency inference
    return stamps.normalize()


def _column_names(frame: pd.DataFrame, where: str) -> dict[str, Any]:
    """``{lower-cased name: the frame's column label}``; checks duplicates and required names."""
    names = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    seen: set[str] = set()
    dupes = []
    for name in names:
        if name in seen:
            dupes.append(name)
        seen.add(name)
    if dupes:
        raise DataError(f"{where}: columns {dupes} appear twice after lower-casing")
    missing = [c for c in _REQUIRED if c not in seen]
    if missing:
        raise DataError(f"{where}: missing columns {missing} (need {list(_REQUIRED)})")
    return dict(zip(names, frame.columns, strict=True))


def _lower_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    names = _column_names(frame, where)
    return frame.set_axis(list(names), axis=1)


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
        # Each frame straight into the (dates x symbols) panels: the same result as stacking
        # them into one long frame for from_long, without building it.
        parts: list[tuple[str, pd.DataFrame, dict[str, Any], npt.NDArray[Any]]] = []
        for symbol, frame in frames.items():
            where = f"bars of {symbol}"
            columns = _column_names(frame, where)
            date_column = columns.pop("date", None)
            source = frame.index if date_column is None else pd.Index(frame[date_column])
            index = _normalise_index(source)
            if index.has_duplicates:
                raise DataError(f"{where}: duplicate dates")
            if len(index):
                parts.append((str(symbol), frame, columns, index.to_numpy()))
        names = [part[0] for part in parts]
        if len(set(names)) != len(names):
            raise DataError("long bars: duplicate (date, symbol) rows")
        if not parts:
            raise DataError("no symbols given")
        stamps = [part[3] for part in parts]
        if len(stamps) == 1:  # unique already (checked above)
            dates = pd.DatetimeIndex(np.sort(stamps[0]))
        else:
            dates = pd.DatetimeIndex(np.unique(np.concatenate(stamps)))
        shape = (len(dates), len(parts))
        given = {col for part in parts for col in part[2]}
        panels = {col: np.full(shape, np.nan) for col in _PANEL_FIELDS if col in given}
        positions = dates.to_numpy()
        for j, (_, frame, columns, stamp) in enumerate(parts):
            rows = np.searchsorted(positions, stamp)
            for col, out in panels.items():
                label = columns.get(col)
                if label is not None:
                    out[rows, j] = _numeric(frame[label])
        return cls._assemble(dates, tuple(names), panels, listing_dates)

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
        panels: dict[str, FloatArray] = {}
        for col in _PANEL_FIELDS:
            if col in data.columns:
                out = panels[col] = np.full(shape, np.nan)
                out[date_codes, sym_codes] = _numeric(data[col])
        return cls._assemble(
            pd.DatetimeIndex(dates), tuple(str(s) for s in symbols), panels, listing_dates
        )

    @classmethod
    def _assemble(
        cls,
        dates: pd.DatetimeIndex,
        symbols: tuple[str, ...],
        panels: dict[str, FloatArray],
        listing_dates: Mapping[str, Any] | None,
    ) -> Bars:
        """Bars from ``(dates x symbols)`` panels of the given columns (NaN where not given)."""
        shape = (len(dates), len(symbols))

        def panel(col: str) -> FloatArray:
            given = panels.get(col)
            return given if given is not None else np.full(shape, np.nan)

        arrays = {name: panel(name) for name in PRICE_FIELDS}
        close = arrays["close"]
        has_bar = ~np.isnan(close)
        for name in PRICE_FIELDS:  # a row without a close is no bar at all
            arrays[name] = np.where(has_bar, arrays[name], np.nan)
        if "prev_close" in panels:
            given = np.where(has_bar, panels["prev_close"], np.nan)
            prev = np.where(np.isnan(given), _previous_close(close), given)
        else:
            prev = _previous_close(close)
        default_suspended = ~has_bar | (np.nan_to_num(arrays["volume"]) <= 0)
        given_st = panel("is_st")  # rows that leave a flag empty take the default
        is_st = np.where(np.isnan(given_st), False, given_st != 0)
        given_susp = panel("suspended")
        suspended = np.where(np.isnan(given_susp), default_suspended, given_susp != 0) | ~has_bar
        index = pd.DatetimeIndex(dates, name="date")
        listing = {str(s): pd.Timestamp(d).date() for s, d in (listing_dates or {}).items()}
        unknown = sorted(set(listing) - set(symbols))
        if unknown:
            raise DataError(f"listing_dates for symbols without bars: {unknown}")
        return cls(
            dates=index,
            symbols=symbols,
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
