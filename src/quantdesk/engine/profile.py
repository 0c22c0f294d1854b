"""A run's market profile as arrays: the rulebook and per-run overrides applied to the bars once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from quantdesk.engine.data import Bars, ffill_rows
from quantdesk.engine.rules import (
    Board,
    Costs,
    Market,
    Rule,
    Rules,
    board_of,
    limit_prices,
    rule_values,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class MarketArrays:
    """Everything the broker kernel needs, per date (T) or per date and symbol (T, N).

    ``limit_pct`` is the price-limit fraction in force (0: no limit) and ``prev_close`` the
    close it applies to; the kernels round the limit prices only for the orders they fill, and
    ``limit_up``/``limit_down`` give them all (+inf/-inf where no limit applies; computed on
    first use). ``fill_price`` is the open (``next_open``) or the close (``next_close``);
    ``mark`` is the last known close, 0 before the first bar (marks only positions, which
    cannot exist before a bar).
    """

    market: Market
    boards: tuple[Board, ...]
    min_lot: FloatArray  # (N,)
    lot_step: FloatArray  # (N,)
    t_plus_1: bool
    tradable: BoolArray  # (T, N)
    fill_price: FloatArray  # (T, N)
    mark: FloatArray  # (T, N)
    prev_close: FloatArray  # (T, N)
    limit_pct: FloatArray  # (T, N)
    commission_rate: FloatArray  # (T,)
    min_commission: FloatArray  # (T,)
    stamp_duty_buy: FloatArray  # (T,)
    stamp_duty_sell: FloatArray  # (T,)
    transfer_fee: FloatArray  # (T,)
    rates: FloatArray  # (T, 5): the five cost columns above, in kernels.COMMISSION.. order
    _limits: list[FloatArray] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def limit_up(self) -> FloatArray:
        """``(T, N)`` limit-up prices (+inf where no limit applies)."""
        return self._limit_prices()[0]

    @property
    def limit_down(self) -> FloatArray:
        """``(T, N)`` limit-down prices (-inf where no limit applies)."""
        return self._limit_prices()[1]

    def _limit_prices(self) -> list[FloatArray]:
        if not self._limits:
            up, down = limit_prices(np.asarray(self.prev_close), np.asarray(self.limit_pct))
            self._limits[:] = [_frozen(up), _frozen(down)]
        return self._limits


def _per_board(
    rule: Rule, market: Market, boards: list[Board], dates: npt.NDArray[Any]
) -> FloatArray:
    """``(T, len(boards))`` values of a dated rule."""
    return np.stack([rule_values(rule, market, b, dates) for b in boards], axis=1)


def _new_listing_mask(bars: Bars, free_days: FloatArray) -> BoolArray:
    """True on each symbol's first ``free_days`` trading dates on or after its listing date."""
    mask = np.zeros(bars.shape, dtype=bool)
    dates = bars.dates.to_numpy().astype("datetime64[D]")
    for j, symbol in enumerate(bars.symbols):
        listed = bars.listing_dates.get(symbol)
        if listed is None:
            continue
        first = int(np.searchsorted(dates, np.datetime64(listed, "D"), side="left"))
        days = int(free_days[min(first, len(dates) - 1), j])
        mask[first : first + days, j] = True
    return mask


def build_market(
    bars: Bars, market: Market, *, costs: Costs, rules: Rules, fill: str
) -> MarketArrays:
    """Apply the rulebook, then the run's ``costs`` and ``rules`` overrides, to ``bars``."""
    dates = bars.dates.to_numpy().astype("datetime64[D]")
    boards = [board_of(s) if market == Market.CN_A else Board.US for s in bars.symbols]
    unique = sorted(set(boards))
    col = np.array([unique.index(b) for b in boards], dtype=np.int64)

    def per_symbol(rule: Rule) -> FloatArray:
        return _per_board(rule, market, unique, dates)[:, col]  # (T, N)

    def per_date(rule: Rule) -> FloatArray:
        # Cost rules are board-independent ("*" rows); the first board's values stand for all.
        return rule_values(rule, market, unique[0], dates)

    # Lots and T+1 have not changed within the rulebook's span: the last date's rows apply.
    last = dates[-1:]
    min_lot = _per_board(Rule.MIN_LOT, market, unique, last)[-1][col]
    lot_step = _per_board(Rule.LOT_STEP, market, unique, last)[-1][col]
    if rules.lot_size is not None:
        min_lot = np.full(len(boards), float(rules.lot_size))
        lot_step = np.full(len(boards), float(rules.lot_size))
    if rules.min_lot is not None:
        min_lot = np.full(len(boards), float(rules.min_lot))
    if rules.lot_step is not None:
        lot_step = np.full(len(boards), float(rules.lot_step))
    t_plus_1 = bool(rule_values(Rule.T_PLUS_1, market, unique[0], last)[-1])
    if rules.t_plus_1 is not None:
        t_plus_1 = rules.t_plus_1

    pct = per_symbol(Rule.PRICE_LIMIT)
    if rules.price_limit is not None:
        pct = np.full(bars.shape, rules.price_limit)
    if bars.is_st.any():
        pct_st = per_symbol(Rule.PRICE_LIMIT_ST)
        if rules.price_limit_st is not None:
            pct_st = np.full(bars.shape, rules.price_limit_st)
        pct = np.where(bars.is_st, pct_st, pct)
    if bars.listing_dates:
        free_days = per_symbol(Rule.NEW_LISTING_FREE_DAYS)
        if rules.new_listing_free_days is not None:
            free_days = np.full(bars.shape, float(rules.new_listing_free_days))
        pct = np.where(_new_listing_mask(bars, free_days), 0.0, pct)
    if rules.price_limits is False:
        pct = np.zeros(bars.shape)
    close = np.asarray(bars.close)
    # The last known close; a symbol without a bar yet is marked at 0 (it cannot be held).
    mark = close if np.isfinite(close).all() else np.nan_to_num(ffill_rows(close), nan=0.0)

    def cost(rule: Rule, override: float | None) -> FloatArray:
        return np.full(len(dates), override) if override is not None else per_date(rule)

    stamp_buy = per_date(Rule.STAMP_DUTY_BUY)
    if costs.stamp_duty_rate is not None:
        stamp_buy = np.zeros(len(dates))

    price = bars.open if fill == "next_open" else bars.close
    per_date_costs = (
        cost(Rule.COMMISSION_RATE, costs.commission_rate),
        cost(Rule.MIN_COMMISSION, costs.min_commission),
        stamp_buy,
        cost(Rule.STAMP_DUTY_SELL, costs.stamp_duty_rate),
        cost(Rule.TRANSFER_FEE, costs.transfer_fee_rate),
    )
    # The kernels read these; read-only and C-ordered, so a compiled kernel sees one type.
    return MarketArrays(
        market=market,
        boards=tuple(boards),
        min_lot=_frozen(min_lot),
        lot_step=_frozen(lot_step),
        t_plus_1=t_plus_1,
        tradable=_frozen(bars.has_bar & ~bars.suspended & np.isfinite(price) & (price > 0)),
        fill_price=_frozen(price),
        mark=_frozen(mark),
        prev_close=_frozen(bars.prev_close),
        limit_pct=_frozen(pct),
        commission_rate=per_date_costs[0],
        min_commission=per_date_costs[1],
        stamp_duty_buy=per_date_costs[2],
        stamp_duty_sell=per_date_costs[3],
        transfer_fee=per_date_costs[4],
        rates=_frozen(np.stack(per_date_costs, axis=1)),
    )


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A C-ordered read-only array (a view when ``array`` already is one)."""
    out = np.ascontiguousarray(array)
    if out.flags.writeable:
        out = out.view()
        out.setflags(write=False)
    return out
