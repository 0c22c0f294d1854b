"""The broker and bar-loop kernels: scalar loops over arrays, run as Python or compiled by numba.

One source for both paths (STYLE.md pattern 10, the ``nb.py`` layer): these functions use only
numpy arrays, floats, ints and tuples, so :mod:`quantdesk.engine.accel` can compile them with
numba, and without numba they run as they are. Both give bit-identical results (a test); no
numba is imported here. STRATEGY_API.md section 2, step 2 is :func:`fill_orders`; the whole
vectorized run is :func:`run_weights`.

Record layouts (all rows appended in execution order):

- fills: ``fill_i[k] = (bar, symbol column, side +1/-1)``,
  ``fill_f[k] = (shares, price, commission, min_commission_topup, stamp_duty, transfer_fee,
  slippage)``;
- refusals: ``ref_i[k] = (bar, symbol column, side, reason code)``,
  ``ref_f[k] = (requested, filled)``; reason codes index ``broker.REASONS``.

Cost rates per bar are the columns of ``rates``: :data:`COMMISSION`, :data:`MIN_COMMISSION`,
:data:`STAMP_BUY`, :data:`STAMP_SELL`, :data:`TRANSFER`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

COMMISSION, MIN_COMMISSION, STAMP_BUY, STAMP_SELL, TRANSFER = 0, 1, 2, 3, 4
N_RATES = 5
FILL_INTS, FILL_FLOATS = 3, 7
REFUSAL_INTS, REFUSAL_FLOATS = 4, 2

# Reason codes: the order of broker.Reason (checked by a test).
SUSPENDED, LIMIT_UP, LIMIT_DOWN, T_PLUS_1, LOT_SIZE, CASH, NO_NEXT_BAR = 0, 1, 2, 3, 4, 5, 6

# An open within a micro-yuan of the limit price counts as "at the limit" (float noise only).
LIMIT_TOL = 1e-6
# Lot arithmetic tolerates float noise in (qty - min_lot) / step.
_LOT_EPS = 1e-9


def lot_floor(qty: float, min_lot: float, step: float) -> float:
    """The largest valid buy quantity <= ``qty``: 0 below ``min_lot``, then ``step`` increments."""
    if qty < min_lot:
        return 0.0
    steps: float = np.floor((qty - min_lot) / step + _LOT_EPS)
    return min_lot + steps * step


def sell_quantity(qty: float, sellable: float, min_lot: float, step: float) -> tuple[float, float]:
    """A sell after the sellable cut and the lot rules: ``(cut, final)``.

    Selling all sellable shares is always valid (the odd remainder goes in one order). Below
    that a sell must be a valid lot quantity, or, on boards with 100-share lots, the whole odd
    remainder plus whole lots (SSE/SZSE Trading Rules art. 3.3.5).
    """
    cut = min(qty, sellable)
    if cut >= sellable:
        return cut, sellable
    lots = lot_floor(cut, min_lot, step)
    odd = sellable % step if (min_lot == step and step > 1) else 0.0
    with_odd = 0.0
    if odd > 0 and cut >= odd:
        with_odd = odd + np.floor((cut - odd) / step + _LOT_EPS) * step
    return cut, max(lots, with_odd)


def buy_total(value: float, rate: float, min_commission: float, stamp: float, fee: float) -> float:
    """Cash a buy of ``value`` costs: value, commission (at least its minimum), stamp duty, fee."""
    if value <= 0:
        return 0.0
    commission = max(value * rate, min_commission)
    return value + commission + value * stamp + value * fee


def affordable(
    cash: float,
    price: float,
    min_lot: float,
    step: float,
    rate: float,
    min_commission: float,
    stamp: float,
    fee: float,
) -> float:
    """The largest valid buy quantity at ``price`` whose total cost is <= ``cash``."""
    if cash <= min_commission:
        return 0.0
    other = stamp + fee
    value = cash / (1.0 + rate + other)  # commission above its minimum
    if value * rate < min_commission:
        value = (cash - min_commission) / (1.0 + other)  # the minimum commission binds
    qty = lot_floor(np.floor(value / price), min_lot, step)
    while qty > 0 and buy_total(qty * price, rate, min_commission, stamp, fee) > cash:
        qty = qty - step if qty - step >= min_lot else 0.0
    return qty


def limit_price(prev_close: float, pct: float, up: bool) -> float:
    """``prev_close * (1 +- pct)`` rounded half up to 0.01; +-inf without a limit.

    The scalar form of :func:`rules.limit_prices`, in the same exact integer arithmetic
    (prev_close to 4 decimals, pct to basis points).
    """
    if not (pct > 0 and abs(prev_close) < np.inf):
        return np.inf if up else -np.inf
    p4 = int(np.rint(prev_close * 10_000.0))
    bp = int(np.rint(pct * 10_000.0))
    if up:
        return ((p4 * (10_000 + bp) + 500_000) // 1_000_000) / 100.0
    return ((p4 * (10_000 - bp) + 500_000) // 1_000_000) / 100.0


def _block_sum(values: FloatArray, start: int, n: int) -> float:
    """numpy's pairwise summation of a block of at most 128 values (8 running sums)."""
    if n < 8:
        small = 0.0
        for i in range(start, start + n):
            small += values[i]
        return small
    r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i = 8
    while i < n - n % 8:
        k = start + i
        r0 += values[k]
        r1 += values[k + 1]
        r2 += values[k + 2]
        r3 += values[k + 3]
        r4 += values[k + 4]
        r5 += values[k + 5]
        r6 += values[k + 6]
        r7 += values[k + 7]
        i += 8
    total: float = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[start + i]
        i += 1
    return total


def pairwise_sum(values: FloatArray, start: int, n: int) -> float:
    """``numpy.sum(values[start:start + n])`` to the last bit: numpy's pairwise summation.

    Blocks of more than 128 values split in two halves (the first a multiple of 8) that are
    summed separately and added; the recursion runs on an explicit stack (numba cannot inline
    a recursive helper).
    """
    if n <= 128:
        return _block_sum(values, start, n)
    starts = np.zeros(64, np.int64)
    sizes = np.zeros(64, np.int64)
    stages = np.zeros(64, np.int64)  # 0: not started, 1: left half pending, 2: right pending
    lefts = np.zeros(64)
    depth = 0
    starts[0], sizes[0] = start, n
    result = 0.0
    while depth >= 0:
        first, size = starts[depth], sizes[depth]
        half = size // 2
        half -= half % 8
        if stages[depth] == 0:
            if size <= 128:
                result = _block_sum(values, first, size)
                depth -= 1
                continue
            stages[depth] = 1
            depth += 1
            starts[depth], sizes[depth], stages[depth] = first, half, 0
        elif stages[depth] == 1:
            lefts[depth] = result
            stages[depth] = 2
            depth += 1
            starts[depth], sizes[depth], stages[depth] = first + half, size - half, 0
        else:
            result = lefts[depth] + result
            depth -= 1
    return result


def portfolio_value(cash: float, shares: FloatArray, mark: FloatArray, t: int) -> float:
    """``cash + sum_j shares[j] * mark[t, j]``, summed in column order (the one valuation)."""
    held = 0.0
    for j in range(shares.shape[0]):
        if shares[j] != 0.0:
            held += shares[j] * mark[t, j]
    return cash + held


def add_refusal(
    ref_i: IntArray,
    ref_f: FloatArray,
    nr: int,
    t: int,
    j: int,
    side: int,
    requested: float,
    filled: float,
    reason: int,
) -> int:
    ref_i[nr, 0] = t
    ref_i[nr, 1] = j
    ref_i[nr, 2] = side
    ref_i[nr, 3] = reason
    ref_f[nr, 0] = requested
    ref_f[nr, 1] = filled
    return nr + 1


def add_fill(
    fill_i: IntArray,
    fill_f: FloatArray,
    nf: int,
    t: int,
    j: int,
    side: int,
    qty: float,
    price: float,
    value: float,
    rate: float,
    min_commission: float,
    stamp_rate: float,
    fee_rate: float,
    slip: float,
) -> int:
    raw = value * rate
    fill_i[nf, 0] = t
    fill_i[nf, 1] = j
    fill_i[nf, 2] = side
    fill_f[nf, 0] = qty
    fill_f[nf, 1] = price
    fill_f[nf, 2] = max(raw, min_commission)
    fill_f[nf, 3] = max(min_commission - raw, 0.0)
    fill_f[nf, 4] = value * stamp_rate
    fill_f[nf, 5] = value * fee_rate
    fill_f[nf, 6] = slip
    return nf + 1


def fill_orders(
    t: int,
    order_sym: IntArray,
    order_qty: FloatArray,
    n_orders: int,
    cash: float,
    shares: FloatArray,
    sellable: FloatArray,
    avg_cost: FloatArray,
    fill_price: FloatArray,
    tradable: BoolArray,
    prev_close: FloatArray,
    limit_pct: FloatArray,
    min_lot: FloatArray,
    lot_step: FloatArray,
    rates: FloatArray,
    slippage: float,
    t_plus_1: bool,
    seen: IntArray,
    scratch: FloatArray,
    fill_i: IntArray,
    fill_f: FloatArray,
    nf: int,
    ref_i: IntArray,
    ref_f: FloatArray,
    nr: int,
) -> tuple[float, int, int]:
    """Fill the orders queued for bar ``t``: sells first, then buys, each in queue order.

    Mutates ``shares``, ``sellable`` and ``avg_cost``; appends fills and refusals at ``nf`` and
    ``nr`` (the buffers must hold ``n_orders`` more rows each). ``seen`` (one int per symbol,
    all below ``3 t + 1`` before the call: -1 at the start of a run, then one call per bar in
    bar order) and ``scratch`` (at least ``n_orders`` floats) are work space. Returns
    ``(cash, nf, nr)``.
    """
    rate = rates[t, COMMISSION]
    min_commission = rates[t, MIN_COMMISSION]
    stamp_buy = rates[t, STAMP_BUY]
    stamp_sell = rates[t, STAMP_SELL]
    fee = rates[t, TRANSFER]

    # --- sells. Orders for distinct symbols do not interact; their proceeds are added to cash
    # as one pairwise sum (numpy's, so cash matches the engine's earlier vectorised broker to
    # the last bit). A symbol sold twice in one bar goes order by order.
    unique = True
    mark_sell = 3 * t + 1
    for k in range(n_orders):
        if order_qty[k] < 0:
            j = order_sym[k]
            if seen[j] == mark_sell:
                unique = False
            seen[j] = mark_sell
    n_net = 0
    for k in range(n_orders):
        if order_qty[k] >= 0:
            continue
        j = order_sym[k]
        req = -order_qty[k]
        ref = fill_price[t, j]
        ok = tradable[t, j]
        floor_price = limit_price(prev_close[t, j], limit_pct[t, j], False)
        at_limit = ok and ref <= floor_price + LIMIT_TOL
        cut, final = sell_quantity(req, sellable[j], min_lot[j], lot_step[j])
        qty = final if (ok and not at_limit) else 0.0
        if qty < req:
            if not ok:
                reason = SUSPENDED
            elif at_limit:
                reason = LIMIT_DOWN
            elif final < cut:
                reason = LOT_SIZE
            else:
                reason = T_PLUS_1
            nr = add_refusal(ref_i, ref_f, nr, t, j, -1, req, qty, reason)
        if qty > 0:
            price = max(ref * (1.0 - slippage), floor_price)
            value = qty * price
            nf = add_fill(
                fill_i, fill_f, nf, t, j, -1, qty, price, value, rate, min_commission,
                stamp_sell, fee, abs(ref - price) * qty,
            )  # fmt: skip
            net = value - fill_f[nf - 1, 2] - fill_f[nf - 1, 4] - fill_f[nf - 1, 5]
            if unique:
                scratch[n_net] = net
                n_net += 1
            else:
                cash = cash + net
            shares[j] -= qty
            sellable[j] -= qty
            if not shares[j] > 0:
                avg_cost[j] = 0.0
    if unique:
        cash = cash + pairwise_sum(scratch, 0, n_net)

    # --- buys: each is cut to its lots; cash pays for them in queue order. Pass 1 sizes them.
    n_buys = 0
    for k in range(n_orders):
        if order_qty[k] > 0:
            scratch[n_buys] = 0.0  # the filled quantity of the n-th buy
            n_buys += 1
    if n_buys == 0:
        return cash, nf, nr
    remaining = cash
    b = 0  # the buy being looked at (0..n_buys-1), with k its order index
    k = 0
    paid = 0.0  # sum of the costs of the run of orders paid for in full (numpy's cumsum)
    run_start = -1  # first order of that run; -1 when none is open
    skipping = False  # cash ran short: skip orders until one can pay for its minimum lot
    done = False
    while k < n_orders and not done:
        if order_qty[k] <= 0:
            k += 1
            continue
        j = order_sym[k]
        ref = fill_price[t, j]
        ok = tradable[t, j]
        cap = limit_price(prev_close[t, j], limit_pct[t, j], True)
        if not ok or ref >= cap - LIMIT_TOL:
            b += 1
            k += 1
            continue
        lots = lot_floor(order_qty[k], min_lot[j], lot_step[j])
        if not lots > 0:
            b += 1
            k += 1
            continue
        price = min(ref * (1.0 + slippage), cap)
        if skipping:
            if buy_total(min_lot[j] * price, rate, min_commission, stamp_buy, fee) > remaining:
                b += 1
                k += 1
                continue
            skipping = False
        cost = buy_total(lots * price, rate, min_commission, stamp_buy, fee)
        if paid + cost <= remaining:
            paid = paid + cost
            scratch[b] = lots
            if run_start < 0:
                run_start = b
            b += 1
            k += 1
            continue
        # The first order cash does not fully pay for: settle the run before it, then cut it.
        if run_start >= 0:
            remaining = max(remaining - paid, 0.0)
        paid = 0.0
        run_start = -1
        cut = affordable(
            remaining, price, min_lot[j], lot_step[j], rate, min_commission, stamp_buy, fee
        )
        qty = min(cut, lots)
        scratch[b] = qty
        remaining = max(
            remaining - buy_total(qty * price, rate, min_commission, stamp_buy, fee), 0.0
        )
        skipping = True
        b += 1
        k += 1
    if run_start >= 0:
        remaining = max(remaining - paid, 0.0)

    # Pass 2: refusals, fills and the book, in queue order.
    mark_buy = 3 * t + 2
    b = 0
    for k in range(n_orders):
        if order_qty[k] <= 0:
            continue
        j = order_sym[k]
        req = order_qty[k]
        qty = scratch[b]
        b += 1
        ref = fill_price[t, j]
        ok = tradable[t, j]
        cap = limit_price(prev_close[t, j], limit_pct[t, j], True)
        at_limit = ok and ref >= cap - LIMIT_TOL
        lots = lot_floor(req, min_lot[j], lot_step[j])
        if qty < req:
            if not ok:
                reason = SUSPENDED
            elif at_limit:
                reason = LIMIT_UP
            elif not lots > 0:
                reason = LOT_SIZE
            elif qty < lots:
                reason = CASH
            else:
                reason = LOT_SIZE
            nr = add_refusal(ref_i, ref_f, nr, t, j, 1, req, qty, reason)
        if qty > 0:
            price = min(ref * (1.0 + slippage), cap)
            value = qty * price
            nf = add_fill(
                fill_i, fill_f, nf, t, j, 1, qty, price, value, rate, min_commission,
                stamp_buy, fee, (price - ref) * qty,
            )  # fmt: skip
            if seen[j] != mark_buy:  # the cost basis before this bar's first buy of j
                seen[j] = mark_buy
                avg_cost[j] = avg_cost[j] * shares[j]
            avg_cost[j] += value  # holds the basis until the loop below
            shares[j] += qty
            if not t_plus_1:
                sellable[j] += qty
    for k in range(n_orders):
        j = order_sym[k]
        if order_qty[k] > 0 and seen[j] == mark_buy:
            seen[j] = mark_buy + 1  # each symbol once (3 t + 3: below the next bar's marks)
            avg_cost[j] = avg_cost[j] / shares[j] if shares[j] > 0 else 0.0
    return remaining, nf, nr


def refuse_all(
    t: int,
    order_sym: IntArray,
    order_qty: FloatArray,
    n_orders: int,
    reason: int,
    ref_i: IntArray,
    ref_f: FloatArray,
    nr: int,
) -> int:
    """Refuse every order with one reason (``no_next_bar`` for orders queued on the last bar)."""
    for k in range(n_orders):
        side = 1 if order_qty[k] > 0 else -1
        nr = add_refusal(ref_i, ref_f, nr, t, order_sym[k], side, abs(order_qty[k]), 0.0, reason)
    return nr


def run_weights(
    t_start: int,
    weights: FloatArray,
    mark: FloatArray,
    fill_price: FloatArray,
    tradable: BoolArray,
    prev_close: FloatArray,
    limit_pct: FloatArray,
    min_lot: FloatArray,
    lot_step: FloatArray,
    rates: FloatArray,
    slippage: float,
    t_plus_1: bool,
    cash: float,
    shares: FloatArray,
    sellable: FloatArray,
    avg_cost: FloatArray,
    seen: IntArray,
    scratch: FloatArray,
    order_sym: IntArray,
    order_qty: FloatArray,
    n_orders: int,
    equity: FloatArray,
    cash_path: FloatArray,
    shares_path: FloatArray,
    fill_i: IntArray,
    fill_f: FloatArray,
    nf: int,
    ref_i: IntArray,
    ref_f: FloatArray,
    nr: int,
) -> tuple[int, float, int, int, int]:
    """Run target weights from bar ``t_start`` to the end, or until the record buffers are full.

    Each bar: unlock T+1 shares, fill the queued orders, mark to market (``equity``,
    ``cash_path``, ``shares_path``), then queue ``floor(w * value / close) - shares`` for every
    symbol with a weight (NaN = no change) and a price, as ``ctx.order_target_percent`` would.
    Returns ``(t, cash, n_orders, nf, nr)``; ``t`` is the number of bars when done, else the bar
    to resume from (with the returned cash and orders) after growing the buffers.
    """
    n_bars, n_symbols = mark.shape
    for t in range(t_start, n_bars):
        need_refusals = n_orders + (n_symbols if t == n_bars - 1 else 0)
        if nf + n_orders > fill_i.shape[0] or nr + need_refusals > ref_i.shape[0]:
            return t, cash, n_orders, nf, nr
        if t_plus_1:
            for j in range(n_symbols):
                sellable[j] = shares[j]
        if n_orders:
            cash, nf, nr = fill_orders(
                t, order_sym, order_qty, n_orders, cash, shares, sellable, avg_cost, fill_price,
                tradable, prev_close, limit_pct, min_lot, lot_step, rates, slippage, t_plus_1,
                seen, scratch, fill_i, fill_f, nf, ref_i, ref_f, nr,
            )  # fmt: skip
        total = portfolio_value(cash, shares, mark, t)
        equity[t] = total
        cash_path[t] = cash
        for j in range(n_symbols):
            shares_path[t, j] = shares[j]
        n_orders = 0
        for j in range(n_symbols):
            w = weights[t, j]
            price = mark[t, j]
            if w == w and price > 0:
                delta = np.floor(w * total / price) - shares[j]
                if delta != 0:
                    order_sym[n_orders] = j
                    order_qty[n_orders] = delta
                    n_orders += 1
        if t == n_bars - 1 and n_orders:
            nr = refuse_all(t, order_sym, order_qty, n_orders, NO_NEXT_BAR, ref_i, ref_f, nr)
            n_orders = 0
    return n_bars, cash, n_orders, nf, nr
