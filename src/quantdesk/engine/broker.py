"""The broker's vocabulary: refusal reasons, the book of one run, fills and refusals as arrays.

STRATEGY_API.md section 2, step 2 (orders queued on day t-1 fill on day t at the fill price
moved against the order by the slippage, sells before buys; refused or trimmed orders keep
their reason) is carried out by :func:`kernels.fill_orders`; this module holds the types around
it and array forms of the lot rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from quantdesk.engine import kernels

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Reason(StrEnum):
    """Why an order was refused or trimmed (the ``reason`` column of the refusal ledger)."""

    SUSPENDED = "suspended"  # no bar, zero volume or suspended on the fill day
    LIMIT_UP = "limit_up"  # a buy when the fill price is at the limit-up price
    LIMIT_DOWN = "limit_down"  # a sell when the fill price is at the limit-down price
    T_PLUS_1 = "t_plus_1"  # a sell cut to the sellable shares
    LOT_SIZE = "lot_size"  # a quantity cut to the board's lot rules
    CASH = "cash"  # a buy cut to what the cash pays for, costs included
    NO_NEXT_BAR = "no_next_bar"  # queued on the last bar


REASONS: tuple[Reason, ...] = tuple(Reason)


@dataclass(slots=True)
class Book:
    """The mutable portfolio of one run (cash and per-symbol arrays); owned by that run only."""

    cash: float
    shares: FloatArray
    sellable: FloatArray
    avg_cost: FloatArray

    @classmethod
    def empty(cls, cash: float, n_symbols: int) -> Book:
        """A book with ``cash`` and no positions."""
        zeros = np.zeros(n_symbols)
        return cls(float(cash), zeros, zeros.copy(), zeros.copy())


class Fills(NamedTuple):
    """Fills of one or more bars as parallel arrays (``side`` +1 buy, -1 sell)."""

    sym: IntArray
    side: npt.NDArray[np.int8]
    shares: FloatArray
    price: FloatArray
    commission: FloatArray
    min_commission_topup: FloatArray
    stamp_duty: FloatArray
    transfer_fee: FloatArray
    slippage: FloatArray


class Refusals(NamedTuple):
    """Refused or trimmed orders as parallel arrays; ``reason`` indexes :data:`REASONS`."""

    sym: IntArray
    side: npt.NDArray[np.int8]
    requested: FloatArray
    filled: FloatArray
    reason: npt.NDArray[np.int8]


def lot_floor(qty: FloatArray, min_lot: FloatArray, step: FloatArray) -> FloatArray:
    """The largest valid buy quantity <= ``qty``: 0 below ``min_lot``, then ``step`` increments.

    Element by element :func:`kernels.lot_floor`, the rule the fills use.
    """
    q, lo, st = np.broadcast_arrays(np.asarray(qty, float), np.asarray(min_lot, float), step)
    return np.array(
        [kernels.lot_floor(*args) for args in zip(q.flat, lo.flat, st.flat, strict=True)]
    )


def sell_quantity(
    qty: FloatArray, sellable: FloatArray, min_lot: FloatArray, step: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Sell quantities after the sellable cut and the lot rules: ``(cut, final)``.

    Element by element :func:`kernels.sell_quantity`: selling all sellable shares is always
    valid (the odd remainder goes in one order); below that a sell must be a valid lot quantity,
    or, on boards with 100-share lots, the whole odd remainder plus whole lots (SSE/SZSE Trading
    Rules art. 3.3.5).
    """
    arrays = np.broadcast_arrays(*(np.asarray(a, float) for a in (qty, sellable, min_lot, step)))
    pairs = [kernels.sell_quantity(*args) for args in zip(*(a.flat for a in arrays), strict=True)]
    cut = np.array([p[0] for p in pairs], dtype=np.float64)
    final = np.array([p[1] for p in pairs], dtype=np.float64)
    return cut, final
