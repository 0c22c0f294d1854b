"""A run's market profile as arrays: the rulebook and per-run overrides applied to the bars once."""

from __future__ import annotations

from dataclasses import dataclass
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

    ``limit_up``/``limit_down`` are +inf/-inf where no limit applies; ``fill_price`` is the open
    (``next_open``) or the close (``next_close``); ``mark`` is the last known close, 0 before the
    first bar (marks only positions, which cannot exist before a bar).
    """

    market: Market
    boards: tuple[Board, ...]
    min_lot: FloatArray  # (N,)
    lot_step: FloatArray  # (N,)
    t_plus_1: bool
    tradable: BoolArray  # (T, N)
    fill_price: FloatArray  # (T, N)
    mark: FloatArray  # (T, N)
    limit_up: FloatArray  # (T, N)
    limit_down: FloatArray  # (T, N)
    commission_rate: FloatArray  # (T,)
    min_commission: FloatArray  # (T,)
    stamp_duty_buy: FloatArray  # (T,)
    stamp_duty_sell: FloatArray  # (T,)
    transfer_fee: FloatArray  # (T,)


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
    min_lot = per_symbol(Rule.MIN_LOT)[-1]
    lot_step = per_symbol(Rule.LOT_STEP)[-1]
    if rules.lot_size is not None:
        min_lot = np.full(len(boards), float(rules.lot_size))
        lot_step = np.full(len(boards), float(rules.lot_size))
    if rules.min_lot is not None:
        min_lot = np.full(len(boards), float(rules.min_lot))
    if rules.lot_step is not None:
        lot_step = np.full(len(boards), float(rules.lot_step))
    t_plus_1 = bool(per_date(Rule.T_PLUS_1)[-1])
    if rules.t_plus_1 is not None:
        t_plus_1 = rules.t_plus_1

    pct = per_symbol(Rule.PRICE_LIMIT)
    pct_st = per_symbol(Rule.PRICE_LIMIT_ST)
    if rules.price_limit is not None:
        pct = np.full(bars.shape, rules.price_limit)
    if rules.price_limit_st is not None:
        pct_st = np.full(bars.shape, rules.price_limit_st)
    pct = np.where(bars.is_st, pct_st, pct)
    free_days = per_symbol(Rule.NEW_LISTING_FREE_DAYS)
    if rules.new_listing_free_days is not None:
        free_days = np.full(bars.shape, float(rules.new_listing_free_days))
    pct = np.where(_new_listing_mask(bars, free_days), 0.0, pct)
    if rules.price_limits is False:
        pct = np.zeros(bars.shape)
    limit_up, limit_down = limit_prices(np.asarray(bars.prev_close), pct)

    def cost(rule: Rule, override: float | None) -> FloatArray:
        return np.full(len(dates), override) if override is not None else per_date(rule)

    stamp_buy = per_date(Rule.STAMP_DUTY_BUY)
    if costs.stamp_duty_rate is not None:
        stamp_buy = np.zeros(len(dates))

    price = bars.open if fill == "next_open" else bars.close
    return MarketArrays(
        market=market,
        boards=tuple(boards),
        min_lot=min_lot,
        lot_step=lot_step,
        t_plus_1=t_plus_1,
        tradable=bars.has_bar & ~bars.suspended & np.isfinite(price) & (price > 0),
        fill_price=np.asarray(price),
        mark=np.nan_to_num(ffill_rows(np.asarray(bars.close)), nan=0.0),
        limit_up=limit_up,
        limit_down=limit_down,
        commission_rate=cost(Rule.COMMISSION_RATE, costs.commission_rate),
        min_commission=cost(Rule.MIN_COMMISSION, costs.min_commission),
        stamp_duty_buy=stamp_buy,
        stamp_duty_sell=cost(Rule.STAMP_DUTY_SELL, costs.stamp_duty_rate),
        transfer_fee=cost(Rule.TRANSFER_FEE, costs.transfer_fee_rate),
    )
