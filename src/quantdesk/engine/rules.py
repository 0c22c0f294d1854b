"""The dated market rulebook: lots, T+1, price limits and costs as data, so rules change by date."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from quantdesk.engine.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Written into every result; bump it whenever a row of RULEBOOK changes.
RULEBOOK_VERSION = "2026.07.06-1"


class Market(StrEnum):
    """A market profile: which rows of the rulebook apply."""

    CN_A = "cn_a"
    US = "us"


class Board(StrEnum):
    """A listing board; price limits and lot rules differ by board."""

    MAIN = "main"  # SSE 600/601/603/605, SZSE 000/001/002/003
    CHINEXT = "chinext"  # SZSE 300/301
    STAR = "star"  # SSE 688/689
    BSE = "bse"  # Beijing Stock Exchange (.BJ)
    US = "us"  # any ticker without an exchange suffix


class Rule(StrEnum):
    """Names of the dated rules (one value per rule, market, board and date)."""

    MIN_LOT = "min_lot"  # smallest buy, in shares
    LOT_STEP = "lot_step"  # buy increments above the minimum, in shares
    T_PLUS_1 = "t_plus_1"  # 1 = shares bought today are sellable next trading day
    PRICE_LIMIT = "price_limit"  # fraction of previous close; 0 = no limit
    PRICE_LIMIT_ST = "price_limit_st"  # the same for ST / *ST stocks
    NEW_LISTING_FREE_DAYS = "new_listing_free_days"  # first trading days with no limit
    COMMISSION_RATE = "commission_rate"  # fraction of order value
    MIN_COMMISSION = "min_commission"  # currency per order
    STAMP_DUTY_SELL = "stamp_duty_sell"  # fraction of sell value
    STAMP_DUTY_BUY = "stamp_duty_buy"  # fraction of buy value
    TRANSFER_FEE = "transfer_fee"  # fraction of value, both sides


ALL = "*"  # board wildcard: the row applies to every board of its market


@dataclass(frozen=True, slots=True)
class RuleRow:
    """A rulebook row: ``rule`` for ``market``/``board`` is ``value`` from ``valid_from`` on."""

    rule: Rule
    market: Market
    board: str
    value: float
    valid_from: date
    source: str


_CN, _US = Market.CN_A, Market.US
_D = date
# Dates before the first row of a rule use that first row (documented in docs/engine.md).
_EPOCH = date(1990, 12, 19)  # SSE's first trading day

# Citations name the rule documents; article numbers move between revisions, so they are
# left out rather than guessed.
_SSE_RULES = "SSE Trading Rules (2023 rev.), orders: buy in 100-share lots; odd lots sold at once"
_SZSE_RULES = "SZSE Trading Rules (2023 rev.), orders: buy in 100-share lots; odd lots sold at once"
_STAR_RULES = "SSE STAR Market Trading Special Provisions (2019): >= 200 shares, then 1-share steps"
_BSE_RULES = "BSE Trading Rules (2021), orders: >= 100 shares, then 1-share steps"
_LIMIT_RULES = "SSE/SZSE price-limit rules since 1996-12-16: +-10% of previous close, ST +-5%"
_CHINEXT_REFORM = "CSRC/SZSE ChiNext registration reform, effective 2020-08-24: +-20%, ST +-20%"
_STAR_LIMIT = "SSE STAR Market Trading Special Provisions (2019-07-22): +-20%"
_BSE_LIMIT = "BSE Trading Rules (2021-11-15): +-30%"
_ST_2026 = "SSE/SZSE 2026 rule change: main-board ST/*ST limit +-10% from 2026-07-06"
_NEW_LISTING = (
    "SSE/SZSE/BSE Trading Rules: no price limit in the first 5 trading days after listing"
)
_T1 = "SSE/SZSE Trading Rules, settlement: shares bought are sellable from the next trading day"
_COMMISSION = (
    "Broker schedule (CSRC caps at 0.3%): 0.025% with 5.00 minimum per order, typical retail"
)
_STAMP_2001 = "MoF announcement 2001-11-16: stamp duty 0.2% on both sides"
_STAMP_2005 = "MoF announcement 2005-01-24: stamp duty 0.1% on both sides"
_STAMP_2007 = "MoF announcement 2007-05-30: stamp duty 0.3% on both sides"
_STAMP_2008A = "MoF announcement 2008-04-24: stamp duty 0.1% on both sides"
_STAMP_2008 = "MoF / State Taxation Administration announcement 2008-09-19: 0.1%, sells only"
_STAMP_2023 = (
    "MoF / State Taxation Administration announcement 2023 No. 39, 2023-08-28: 0.05%, sells"
)
_TRANSFER_2015 = (
    "CSDC notice (effective 2015-08-01): transfer fee 0.002% of value for SSE and SZSE, both sides"
)
_TRANSFER_2022 = "CSDC notice 2022: transfer fee halved to 0.001% of value from 2022-04-29"
_US_RULES = "US equities: 1-share lots, no daily price limits (LULD is intraday), T+0 for trading"
_US_COSTS = "US default: zero-commission retail brokers; SEC/FINRA fees ignored"


def _cn(rule: Rule, board: str, value: float, valid_from: date, source: str) -> RuleRow:
    return RuleRow(rule, _CN, board, value, valid_from, source)


#: The rulebook. A rule's value on a date is the row with the latest ``valid_from`` not after
#: it (board-specific rows win over ``*`` rows); dates before the first row use the first row.
RULEBOOK: tuple[RuleRow, ...] = (
    # --- cn_a lots
    _cn(Rule.MIN_LOT, Board.MAIN, 100, _EPOCH, _SSE_RULES),
    _cn(Rule.LOT_STEP, Board.MAIN, 100, _EPOCH, _SSE_RULES),
    _cn(Rule.MIN_LOT, Board.CHINEXT, 100, _D(2009, 10, 30), _SZSE_RULES),
    _cn(Rule.LOT_STEP, Board.CHINEXT, 100, _D(2009, 10, 30), _SZSE_RULES),
    _cn(Rule.MIN_LOT, Board.STAR, 200, _D(2019, 7, 22), _STAR_RULES),
    _cn(Rule.LOT_STEP, Board.STAR, 1, _D(2019, 7, 22), _STAR_RULES),
    _cn(Rule.MIN_LOT, Board.BSE, 100, _D(2021, 11, 15), _BSE_RULES),
    _cn(Rule.LOT_STEP, Board.BSE, 1, _D(2021, 11, 15), _BSE_RULES),
    # --- cn_a settlement
    _cn(Rule.T_PLUS_1, ALL, 1, _EPOCH, _T1),
    # --- cn_a price limits
    _cn(Rule.PRICE_LIMIT, Board.MAIN, 0.10, _D(1996, 12, 16), _LIMIT_RULES),
    _cn(Rule.PRICE_LIMIT_ST, Board.MAIN, 0.05, _D(1996, 12, 16), _LIMIT_RULES),
    _cn(Rule.PRICE_LIMIT_ST, Board.MAIN, 0.10, _D(2026, 7, 6), _ST_2026),
    _cn(Rule.PRICE_LIMIT, Board.CHINEXT, 0.10, _D(2009, 10, 30), _LIMIT_RULES),
    _cn(Rule.PRICE_LIMIT, Board.CHINEXT, 0.20, _D(2020, 8, 24), _CHINEXT_REFORM),
    _cn(Rule.PRICE_LIMIT_ST, Board.CHINEXT, 0.05, _D(2009, 10, 30), _LIMIT_RULES),
    _cn(Rule.PRICE_LIMIT_ST, Board.CHINEXT, 0.20, _D(2020, 8, 24), _CHINEXT_REFORM),
    _cn(Rule.PRICE_LIMIT, Board.STAR, 0.20, _D(2019, 7, 22), _STAR_LIMIT),
    _cn(Rule.PRICE_LIMIT_ST, Board.STAR, 0.20, _D(2019, 7, 22), _STAR_LIMIT),
    _cn(Rule.PRICE_LIMIT, Board.BSE, 0.30, _D(2021, 11, 15), _BSE_LIMIT),
    _cn(Rule.PRICE_LIMIT_ST, Board.BSE, 0.30, _D(2021, 11, 15), _BSE_LIMIT),
    _cn(Rule.NEW_LISTING_FREE_DAYS, ALL, 5, _EPOCH, _NEW_LISTING),
    # --- cn_a costs
    _cn(Rule.COMMISSION_RATE, ALL, 0.00025, _EPOCH, _COMMISSION),
    _cn(Rule.MIN_COMMISSION, ALL, 5.0, _EPOCH, _COMMISSION),
    _cn(Rule.STAMP_DUTY_SELL, ALL, 0.002, _D(2001, 11, 16), _STAMP_2001),
    _cn(Rule.STAMP_DUTY_BUY, ALL, 0.002, _D(2001, 11, 16), _STAMP_2001),
    _cn(Rule.STAMP_DUTY_SELL, ALL, 0.001, _D(2005, 1, 24), _STAMP_2005),
    _cn(Rule.STAMP_DUTY_BUY, ALL, 0.001, _D(2005, 1, 24), _STAMP_2005),
    _cn(Rule.STAMP_DUTY_SELL, ALL, 0.003, _D(2007, 5, 30), _STAMP_2007),
    _cn(Rule.STAMP_DUTY_BUY, ALL, 0.003, _D(2007, 5, 30), _STAMP_2007),
    _cn(Rule.STAMP_DUTY_SELL, ALL, 0.001, _D(2008, 4, 24), _STAMP_2008A),
    _cn(Rule.STAMP_DUTY_BUY, ALL, 0.001, _D(2008, 4, 24), _STAMP_2008A),
    _cn(Rule.STAMP_DUTY_SELL, ALL, 0.001, _D(2008, 9, 19), _STAMP_2008),
    _cn(Rule.STAMP_DUTY_BUY, ALL, 0.0, _D(2008, 9, 19), _STAMP_2008),
    _cn(Rule.STAMP_DUTY_SELL, ALL, 0.0005, _D(2023, 8, 28), _STAMP_2023),
    _cn(Rule.TRANSFER_FEE, ALL, 0.00002, _D(2015, 8, 1), _TRANSFER_2015),
    _cn(Rule.TRANSFER_FEE, ALL, 0.00001, _D(2022, 4, 29), _TRANSFER_2022),
    # --- us
    RuleRow(Rule.MIN_LOT, _US, ALL, 1, _EPOCH, _US_RULES),
    RuleRow(Rule.LOT_STEP, _US, ALL, 1, _EPOCH, _US_RULES),
    RuleRow(Rule.T_PLUS_1, _US, ALL, 0, _EPOCH, _US_RULES),
    RuleRow(Rule.PRICE_LIMIT, _US, ALL, 0.0, _EPOCH, _US_RULES),
    RuleRow(Rule.PRICE_LIMIT_ST, _US, ALL, 0.0, _EPOCH, _US_RULES),
    RuleRow(Rule.NEW_LISTING_FREE_DAYS, _US, ALL, 0, _EPOCH, _US_RULES),
    RuleRow(Rule.COMMISSION_RATE, _US, ALL, 0.0, _EPOCH, _US_COSTS),
    RuleRow(Rule.MIN_COMMISSION, _US, ALL, 0.0, _EPOCH, _US_COSTS),
    RuleRow(Rule.STAMP_DUTY_SELL, _US, ALL, 0.0, _EPOCH, _US_COSTS),
    RuleRow(Rule.STAMP_DUTY_BUY, _US, ALL, 0.0, _EPOCH, _US_COSTS),
    RuleRow(Rule.TRANSFER_FEE, _US, ALL, 0.0, _EPOCH, _US_COSTS),
)

DEFAULT_BENCHMARK: dict[Market, str] = {Market.CN_A: "000300.SH", Market.US: "SPY"}

_SH_STAR = ("688", "689")
_SZ_CHINEXT = ("300", "301")


def board_of(symbol: str) -> Board:
    """Return the listing board of ``symbol`` from its code and exchange suffix.

    Parameters
    ----------
    symbol : str
        ``600519.SH``, ``300750.SZ``, ``688981.SH``, ``430047.BJ`` or a US ticker (no suffix).

    Returns
    -------
    Board
        ``STAR`` for 688/689.SH, ``CHINEXT`` for 300/301.SZ, ``BSE`` for .BJ, ``US`` without a
        suffix, else ``MAIN`` (600/601/603/605.SH, 000/001/002/003.SZ and, conservatively, any
        other SSE/SZSE code such as an index).
    """
    code, dot, suffix = symbol.upper().partition(".")
    if not dot:
        return Board.US
    if suffix == "BJ":
        return Board.BSE
    if suffix == "SH":
        return Board.STAR if code.startswith(_SH_STAR) else Board.MAIN
    if suffix == "SZ":
        return Board.CHINEXT if code.startswith(_SZ_CHINEXT) else Board.MAIN
    raise ConfigError(f"unknown exchange suffix in symbol {symbol!r} (expected .SH, .SZ or .BJ)")


def market_of(symbols: list[str] | tuple[str, ...]) -> Market:
    """Infer the market from the symbols: all suffixed -> ``cn_a``, none suffixed -> ``us``."""
    boards = {board_of(s) == Board.US for s in symbols}
    if boards == {True}:
        return Market.US
    if boards == {False}:
        return Market.CN_A
    raise ConfigError("symbols mix A-share codes and US tickers: pass market= explicitly")


def _rows(rule: Rule, market: Market, board: Board) -> list[RuleRow]:
    own = [r for r in RULEBOOK if r.rule == rule and r.market == market and r.board == board]
    rows = own or [r for r in RULEBOOK if r.rule == rule and r.market == market and r.board == ALL]
    if not rows:
        raise ConfigError(f"the rulebook has no {rule} for {market}/{board}")
    return sorted(rows, key=lambda r: r.valid_from)


def rule_values(rule: Rule, market: Market, board: Board, dates: npt.NDArray[Any]) -> FloatArray:
    """Return the value of ``rule`` on each of ``dates`` (``datetime64[D]``), vectorised.

    A date before the rule's first row gets the first row's value.
    """
    rows = _rows(rule, market, board)
    starts = np.array([np.datetime64(r.valid_from, "D") for r in rows])
    values = np.array([r.value for r in rows], dtype=np.float64)
    pos = np.searchsorted(starts, dates.astype("datetime64[D]"), side="right") - 1
    return values[np.clip(pos, 0, None)]


def rule_value(rule: Rule, market: Market, board: Board, on: date) -> float:
    """Return the value of ``rule`` for ``market``/``board`` on the date ``on``."""
    return float(rule_values(rule, market, board, np.array([on], dtype="datetime64[D]"))[0])


def limit_prices(prev_close: FloatArray, pct: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Limit-up and limit-down prices: ``prev_close * (1 +- pct)`` rounded half up to 0.01.

    Exact half-up (SSE/SZSE Trading Rules: limit prices are rounded to the 0.01 tick, half up) in
    integer arithmetic: ``prev_close`` is taken to 4 decimals and ``pct`` to basis points, so
    10.05 * 1.1 = 11.055 gives 11.06, never the banker's or binary-float 11.05. Where ``pct``
    is 0 or ``prev_close`` is NaN there is no limit: +inf / -inf.
    """
    valid = np.isfinite(prev_close) & (pct > 0)
    p4 = np.rint(np.where(valid, prev_close, 0.0) * 10_000).astype(np.int64)
    bp = np.rint(np.where(valid, pct, 0.0) * 10_000).astype(np.int64)
    up_cents = (p4 * (10_000 + bp) + 500_000) // 1_000_000
    down_cents = (p4 * (10_000 - bp) + 500_000) // 1_000_000
    up = np.where(valid, up_cents / 100.0, np.inf)
    down = np.where(valid, down_cents / 100.0, -np.inf)
    return up, down


def _known_overrides(cls: type, value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A dict of per-run overrides, refused when it names a field ``cls`` does not have."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"unknown {what}: {', '.join(unknown)} (known: {sorted(known)})")
    return dict(value)


def _set_overrides(overrides: Any) -> dict[str, Any]:
    """The fields of an overrides dataclass that are set (not None)."""
    return {
        f.name: getattr(overrides, f.name)
        for f in fields(overrides)
        if getattr(overrides, f.name) is not None
    }


@dataclass(frozen=True, slots=True)
class Costs:
    """Per-run overrides of the market's cost rules; ``None`` keeps the dated default.

    Parameters
    ----------
    commission_rate : float, optional
        Fraction of each order's value (0.00025 = 0.025%).
    min_commission : float, optional
        Minimum commission per order, in the account currency.
    stamp_duty_rate : float, optional
        Fraction of the value of sells; an override also sets the buy-side stamp duty to 0.
    transfer_fee_rate : float, optional
        Fraction of the value of every order, both sides.
    """

    commission_rate: float | None = None
    min_commission: float | None = None
    stamp_duty_rate: float | None = None
    transfer_fee_rate: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"costs.{f.name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def coerce(cls, value: Costs | Mapping[str, Any] | None) -> Costs:
        """Accept ``None``, a ``Costs`` or a dict of its fields (unknown keys are an error)."""
        if value is None:
            return cls()
        if isinstance(value, Costs):
            return value
        return cls(**_known_overrides(cls, value, "costs"))

    def as_dict(self) -> dict[str, float]:
        """The overrides that are set, for the result's config."""
        return _set_overrides(self)


@dataclass(frozen=True, slots=True)
class Rules:
    """Per-run overrides of the market's trading rules; ``None`` keeps the rulebook's value.

    Parameters
    ----------
    t_plus_1 : bool, optional
        Shares bought are sellable only from the next trading day.
    price_limits : bool, optional
        ``False`` switches daily price limits off.
    lot_size : int, optional
        Sets both ``min_lot`` and ``lot_step`` (e.g. 1 for share-level trading).
    min_lot, lot_step : int, optional
        Smallest buy and the increments above it, in shares.
    price_limit, price_limit_st : float, optional
        Limit fractions for every board (normal and ST stocks).
    new_listing_free_days : int, optional
        Trading days after listing without a price limit.
    """

    t_plus_1: bool | None = None
    price_limits: bool | None = None
    lot_size: int | None = None
    min_lot: int | None = None
    lot_step: int | None = None
    price_limit: float | None = None
    price_limit_st: float | None = None
    new_listing_free_days: int | None = None

    def __post_init__(self) -> None:
        for name in ("lot_size", "min_lot", "lot_step"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ConfigError(f"rules.{name} must be a positive integer, got {value!r}")
        for name in ("price_limit", "price_limit_st"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"rules.{name} must be in [0, 1), got {value!r}")

    @classmethod
    def coerce(cls, value: Rules | Mapping[str, Any] | None) -> Rules:
        """Accept ``None``, a ``Rules`` or a dict of its fields (unknown keys are an error)."""
        if value is None:
            return cls()
        if isinstance(value, Rules):
            return value
        return cls(**_known_overrides(cls, value, "rules"))

    def as_dict(self) -> dict[str, Any]:
        """The overrides that are set, for the result's config."""
        return _set_overrides(self)
