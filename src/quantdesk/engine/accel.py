"""Optional numba compilation of :mod:`quantdesk.engine.kernels`, switched on explicitly.

Importing the engine never imports numba, touches the environment or writes files. A process
that wants compiled kernels (a worker, a notebook, the benchmarks) calls :func:`use_numba` once;
it points numba's on-disk cache at a writable folder (default ``./var/numba-cache``), compiles
the kernels or loads them from that cache, and returns whether they are ready. Compiled and
plain kernels give bit-identical results (tests/engine/test_accel.py), so the choice changes
speed, never results. Costs (REFERENCE.md, "numba"): about a second per kernel to compile the
first time, about a quarter second to load from the cache in a new process, nothing in a
process forked after the call.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from quantdesk.engine import kernels
from quantdesk.engine.errors import ConfigError

#: Where :func:`use_numba` keeps compiled kernels unless told otherwise (relative to the
#: current directory; ``NUMBA_CACHE_DIR`` in the environment wins over it).
DEFAULT_CACHE_DIR = Path("var") / "numba-cache"

# Plain helpers the compiled kernels call: compiled inline (numba's register_jitable).
_HELPERS = (
    kernels.lot_floor,
    kernels.sell_quantity,
    kernels.buy_total,
    kernels.affordable,
    kernels.limit_price,
    kernels._block_sum,
    kernels.pairwise_sum,
    kernels.portfolio_value,
    kernels.add_refusal,
    kernels.add_fill,
    kernels.refuse_all,
    kernels.fill_orders,  # also called by run_weights
)


@dataclass(frozen=True, slots=True)
class Kernels:
    """The kernels one run uses: plain Python (``compiled=False``) or numba-compiled."""

    fill_orders: Callable[..., tuple[float, int, int]]
    run_weights: Callable[..., tuple[int, float, int, int, int]]
    compiled: bool


@dataclass(frozen=True, slots=True)
class NumbaStatus:
    """What :func:`use_numba` did: whether kernels are compiled, where they are cached, timing."""

    enabled: bool
    cache_dir: str | None
    seconds: float
    reason: str = ""


PYTHON_KERNELS = Kernels(
    fill_orders=kernels.fill_orders, run_weights=kernels.run_weights, compiled=False
)

# The compiled kernels of this process, once use_numba() has built them. Like numba's own
# dispatcher cache this is process-wide code, not per-run data: it never changes a result.
_lock = threading.Lock()
_compiled: dict[str, Any] = {}


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _warm_up(k: Kernels) -> None:
    """Run both kernels once on 3 bars through the real code path (so the argument types are
    those of real runs): later runs never compile."""
    import pandas as pd

    from quantdesk.engine.broker import Book
    from quantdesk.engine.data import Bars
    from quantdesk.engine.profile import build_market
    from quantdesk.engine.rules import Costs, Market, Rules
    from quantdesk.engine.sim import simulate_events, simulate_weights

    prices = [10.0, 10.5, 11.0]
    frame = pd.DataFrame(
        {"open": prices, "high": prices, "low": prices, "close": prices, "volume": 1e6},
        index=pd.bdate_range("2024-01-02", periods=3),
    )
    bars = Bars.from_frames({"600000.SH": frame})
    market = build_market(bars, Market.CN_A, costs=Costs(), rules=Rules(), fill="next_open")
    weights = np.full(bars.shape, 0.5)
    weights.setflags(write=False)
    simulate_weights(market, k, weights=weights, initial_capital=1e4, slippage_bps=1.0)
    orders = {0: 100.0, 1: -100.0}

    def step(t: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        qty = orders.get(t)
        if qty is None:
            return np.empty(0, np.int64), np.empty(0)
        return np.zeros(1, np.int64), np.array([qty])

    simulate_events(market, k, book=Book.empty(1e4, 1), slippage_bps=1.0, step=step)


def use_numba(cache_dir: str | os.PathLike[str] | None = None) -> NumbaStatus:
    """Compile the engine's kernels with numba (or load them from its cache) for this process.

    Call it once at start-up in a process that runs many or large backtests; afterwards
    ``backtest(..., accelerate=None)`` (the default) uses the compiled kernels. Safe to call
    again (it returns at once) and from several threads.

    Parameters
    ----------
    cache_dir : path, optional
        Writable folder for numba's cache of compiled code. Default: ``NUMBA_CACHE_DIR`` from
        the environment if set, else :data:`DEFAULT_CACHE_DIR` (``./var/numba-cache``). It is
        created if missing and exported as ``NUMBA_CACHE_DIR`` (child processes share it).
        When it cannot be written the kernels are compiled without a disk cache.

    Returns
    -------
    NumbaStatus
        ``enabled`` is False (with the ``reason``) when numba is not installed.
    """
    with _lock:
        done = _compiled.get("status")
        if isinstance(done, NumbaStatus) and done.enabled:
            return done
        started = time.perf_counter()
        try:
            import numba
            from numba.extending import register_jitable
        except ImportError as exc:  # an optional speed-up: the plain kernels still work
            return NumbaStatus(False, None, 0.0, f"numba is not importable: {exc}")
        env = os.environ.get("NUMBA_CACHE_DIR")
        folder = Path(cache_dir) if cache_dir is not None else Path(env or DEFAULT_CACHE_DIR)
        cache = _writable(folder)
        if cache:
            resolved = str(folder.resolve())
            os.environ["NUMBA_CACHE_DIR"] = resolved
            config: Any = numba.config
            config.CACHE_DIR = resolved  # numba read the environment when it was imported
        for helper in _HELPERS:
            register_jitable(helper)
        compiled = Kernels(
            fill_orders=numba.njit(cache=cache)(kernels.fill_orders),
            run_weights=numba.njit(cache=cache)(kernels.run_weights),
            compiled=True,
        )
        _warm_up(compiled)
        _compiled["kernels"] = compiled
        status = NumbaStatus(
            enabled=True,
            cache_dir=str(folder.resolve()) if cache else None,
            seconds=time.perf_counter() - started,
            reason="" if cache else f"{folder} is not writable: compiled without a disk cache",
        )
        _compiled["status"] = status
        return status


def numba_enabled() -> bool:
    """True once :func:`use_numba` has compiled the kernels in this process."""
    return "kernels" in _compiled


def kernels_for(accelerate: bool | None) -> Kernels:
    """The kernels of a run: ``None`` compiled if :func:`use_numba` ran, ``True`` compiled
    (calling :func:`use_numba` with its defaults if needed), ``False`` plain Python."""
    if accelerate is False:
        return PYTHON_KERNELS
    ready = _compiled.get("kernels")
    if isinstance(ready, Kernels):
        return ready
    if accelerate is None:
        return PYTHON_KERNELS
    status = use_numba()
    if not status.enabled:
        raise ConfigError(f"accelerate=True needs numba: {status.reason}")
    compiled: Kernels = _compiled["kernels"]
    return compiled
