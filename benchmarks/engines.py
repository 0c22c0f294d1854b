"""QuantDesk's backtest engine against backtrader, backtesting.py and vectorbt (issue 3, point 7).

Run it with ``python3 dev.py bench`` (builds ``.venv-bench`` from requirements-bench.lock) or
``.venv-bench/bin/python benchmarks/engines.py [--repeat N] [--skip-backtrader-grid]``. It:

1. runs one strategy (engines_data.py) on backtesting.py's GOOG bars in QuantDesk (event and
   vectorized API), backtrader, backtesting.py and vectorbt in this process, asserts the same
   fills (date, side, shares) and final equity (1e-9 relative), and times each (median);
2. times the vectorized API with the ``cn_a`` rules on a seeded 500-symbol x 2,500-bar universe
   against one vectorbt ``Portfolio.from_signals`` over the whole panel;
3. times a 100-combination (fast, slow) grid on GOOG: ``qe.backtest_grid`` against vectorbt's
   vectorised grid and backtrader's ``optstrategy``;
4. measures peak memory of the 500 x 2,500 run in a fresh process;

then prints a table and the targets with PASS/FAIL. Figures from this machine: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar: not part of a run

import pandas as pd
from engines_data import (
    CASH,
    COMMISSION,
    EVENT_ALL_IN,
    EVENT_TARGET_PERCENT,
    GRID_FAST,
    GRID_SLOW,
    UNIVERSE_BARS,
    UNIVERSE_CASH,
    UNIVERSE_SYMBOLS,
    UNIVERSE_WEIGHT,
    VECTORIZED,
    goog,
    universe_bars,
    universe_panels,
)
from engines_peers import (
    Run,
    grid_backtrader,
    grid_vectorbt,
    run_backtesting,
    run_backtrader,
    run_universe_vectorbt,
    run_vectorbt,
    universe_vectorbt_inputs,
)

import quantdesk.engine as qe

ROOT = Path(__file__).resolve().parents[1]
US_COSTS = qe.Costs(commission_rate=COMMISSION, min_commission=0.0)
REL_TOL = 1e-9
MEMORY_LIMIT_MB = 400.0


@dataclass
class Figures:
    """Everything measured, in seconds (medians) unless the name says otherwise."""

    times: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _round_robin(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median of ``repeat`` rounds, each engine once per round (machine drift hits all alike)."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


# --- 1. GOOG: one strategy, five runs, the same trades -----------------------------------------


def run_quantdesk_event(frame: pd.DataFrame, source: str = EVENT_ALL_IN) -> tuple[Run, qe.Result]:
    """QuantDesk's event API from the raw DataFrame: Bars, then the backtest."""
    bars = qe.Bars.from_frames({"GOOG": frame})
    result = qe.backtest(source, bars, market="us", initial_capital=CASH, costs=US_COSTS)
    return _as_run(result), result


def run_quantdesk_vectorized(frame: pd.DataFrame) -> tuple[Run, qe.Result]:
    """QuantDesk's vectorized API from the raw DataFrame."""
    bars = qe.Bars.from_frames({"GOOG": frame})
    result = qe.backtest(VECTORIZED, bars, market="us", initial_capital=CASH, costs=US_COSTS)
    return _as_run(result), result


def _as_run(result: qe.Result) -> Run:
    f = result.fills
    fills = [
        (d.date(), str(side), int(n))
        for d, side, n in zip(f["date"], f["side"], f["shares"], strict=True)
    ]
    return Run(fills, float(result.equity["equity"].iloc[-1]))


def _same(name: str, run: Run, reference: Run) -> None:
    if run.fills != reference.fills:
        diff = [(a, b) for a, b in zip(run.fills, reference.fills, strict=False) if a != b]
        raise AssertionError(
            f"{name}: fills differ from QuantDesk's ({len(run.fills)} vs "
            f"{len(reference.fills)}); first differences: {diff[:3]}"
        )
    rel = abs(run.final_equity - reference.final_equity) / abs(reference.final_equity)
    if rel > REL_TOL:
        raise AssertionError(
            f"{name}: final equity {run.final_equity!r} vs QuantDesk's "
            f"{reference.final_equity!r} (relative difference {rel:.2e} > {REL_TOL})"
        )


def goog_section(figures: Figures, repeat: int) -> None:
    frame = goog()
    print(f"GOOG: {len(frame)} bars {frame.index[0].date()} .. {frame.index[-1].date()}")
    reference, _ = run_quantdesk_event(frame)
    peers = {
        "backtrader": run_backtrader(frame),
        "backtesting.py": run_backtesting(frame),
        "vectorbt": run_vectorbt(frame),
    }
    for name, run in peers.items():
        _same(name, run, reference)
    buys = sum(1 for _, side, _ in reference.fills if side == "buy")
    worst = max(
        abs(run.final_equity - reference.final_equity) / reference.final_equity
        for run in peers.values()
    )
    figures.notes["goog_fills"] = len(reference.fills)
    figures.notes["goog_final_equity"] = {
        "quantdesk": reference.final_equity,
        **{name: run.final_equity for name, run in peers.items()},
    }
    print(
        f"  same fills in all four engines: {len(reference.fills)} fills ({buys} buys), "
        f"final equity {reference.final_equity:,.5f} (largest relative difference "
        f"{worst:.1e})"
    )

    # The vectorized API sizes a weight at the signal day's close (STRATEGY_API.md 1b), so it
    # is checked against its event-API twin (ctx.order_target_percent), not the all-in runs.
    vectorized, _ = run_quantdesk_vectorized(frame)
    twin, _ = run_quantdesk_event(frame, EVENT_TARGET_PERCENT)
    _same("QuantDesk vectorized vs its event twin", vectorized, twin)
    dates = [(d, side) for d, side, _ in vectorized.fills]
    if dates != [(d, side) for d, side, _ in reference.fills]:
        raise AssertionError("the vectorized API trades on other days than the all-in runs")
    first = next((a, b) for a, b in zip(vectorized.fills, reference.fills, strict=True) if a != b)
    figures.notes["goog_vectorized_final_equity"] = vectorized.final_equity
    figures.notes["goog_vectorized_first_difference"] = [str(first[0][0]), first[0][2], first[1][2]]
    print(
        f"  vectorized API (weights are sized at the signal day's close): same dates, first "
        f"different size {first[0][0]} ({first[0][2]} vs {first[1][2]} shares); final equity "
        f"{vectorized.final_equity:,.5f}; equal to its event-API twin"
    )

    fns: dict[str, Callable[[], object]] = {
        "goog/quantdesk-event": lambda: run_quantdesk_event(frame),
        "goog/quantdesk-vectorized": lambda: run_quantdesk_vectorized(frame),
        "goog/backtrader": lambda: run_backtrader(frame),
        "goog/backtesting.py": lambda: run_backtesting(frame),
        "goog/vectorbt": lambda: run_vectorbt(frame),
    }
    for fn in fns.values():  # warm-up: imports, numba dispatch, caches
        fn()
    _freeze()
    figures.times.update(_round_robin(fns, repeat))


def _freeze() -> None:
    """Move every object alive now out of the garbage collector's sight (``gc.freeze``).

    This process has imported all four engines (vectorbt alone brings hundreds of thousands of
    objects); without this, each full collection triggered inside a timed run would scan them
    all, a cost of the harness that no engine has on its own. Objects the runs create are
    still collected as usual.
    """
    gc.collect()
    gc.freeze()


# --- 2. the 500 x 2500 universe ------------------------------------------------------------


def universe_section(figures: Figures, repeat: int) -> None:
    start = time.perf_counter()
    panels = universe_panels()
    figures.notes["universe_generate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    bars = universe_bars(panels)
    figures.notes["universe_bars_s"] = time.perf_counter() - start
    print(
        f"universe: {UNIVERSE_SYMBOLS} symbols x {UNIVERSE_BARS} bars generated in "
        f"{figures.notes['universe_generate_s']:.2f} s; Bars.from_frames "
        f"{figures.notes['universe_bars_s']:.2f} s (not timed below)"
    )

    def quantdesk() -> qe.Result:
        result = qe.backtest(VECTORIZED, bars, market="cn_a", initial_capital=UNIVERSE_CASH)
        result.fills  # noqa: B018 - timed with its fills table (built on first access)
        return result

    result = quantdesk()
    refusals = result.refusals["reason"].value_counts().to_dict()
    figures.notes["universe_fills"] = len(result.fills)
    figures.notes["universe_refusals"] = {str(k): int(v) for k, v in refusals.items()}
    print(
        f"  QuantDesk cn_a: {len(result.fills)} fills, refusals {refusals}, final equity "
        f"{result.equity['equity'].iloc[-1]:,.2f}"
    )

    start = time.perf_counter()
    close, entries, exits = universe_vectorbt_inputs(panels)
    figures.notes["universe_vectorbt_signals_s"] = time.perf_counter() - start

    def vectorbt_call() -> object:
        return run_universe_vectorbt(
            panels, entries, exits, cash=UNIVERSE_CASH, weight=UNIVERSE_WEIGHT
        )

    def vectorbt_with_signals() -> object:
        _, e, x = universe_vectorbt_inputs(panels)
        return run_universe_vectorbt(panels, e, x, cash=UNIVERSE_CASH, weight=UNIVERSE_WEIGHT)

    portfolio: Any = vectorbt_call()
    figures.notes["universe_vectorbt_orders"] = int(portfolio.orders.count().sum())
    del close
    fns: dict[str, Callable[[], object]] = {
        "universe/quantdesk-vectorized": quantdesk,
        "universe/vectorbt-from_signals": vectorbt_call,
        "universe/vectorbt-signals+from_signals": vectorbt_with_signals,
    }
    figures.times.update(_round_robin(fns, repeat))


# --- 3. the 100-combination grid -------------------------------------------------------------


def grid_section(figures: Figures, repeat: int, backtrader_repeat: int) -> None:
    frame = goog()
    grid = {"fast": list(GRID_FAST), "slow": list(GRID_SLOW)}

    def quantdesk() -> pd.DataFrame:
        bars = qe.Bars.from_frames({"GOOG": frame})
        return qe.backtest_grid(
            VECTORIZED, bars, param_grid=grid, market="us", initial_capital=CASH, costs=US_COSTS
        )

    rows = quantdesk()
    single = qe.backtest(
        VECTORIZED,
        qe.Bars.from_frames({"GOOG": frame}),
        market="us",
        initial_capital=CASH,
        costs=US_COSTS,
        params={"fast": 10, "slow": 60},
    )
    row = rows[(rows["fast"] == 10) & (rows["slow"] == 60)].iloc[0]
    if row["final_value"] != single.metrics["final_value"]:
        raise AssertionError("backtest_grid's row differs from backtest() with the same params")
    figures.notes["grid_combinations"] = len(rows)
    figures.notes["grid_best"] = (
        rows.sort_values("sharpe_ratio")
        .iloc[-1][["fast", "slow", "sharpe_ratio", "final_value"]]
        .to_dict()
    )
    grid_vectorbt(frame)  # warm-up
    fns: dict[str, Callable[[], object]] = {
        "grid/quantdesk": quantdesk,
        "grid/vectorbt": lambda: grid_vectorbt(frame),
    }
    figures.times.update(_round_robin(fns, repeat))
    if backtrader_repeat > 0:
        print(f"  backtrader optstrategy: {len(rows)} runs x {backtrader_repeat} (slow) ...")
        figures.times["grid/backtrader"] = _median(
            lambda: grid_backtrader(frame), backtrader_repeat
        )


# --- 4. memory (in a fresh process) ------------------------------------------------------------


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        return False
    return True


def _vm(name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return float(line.split()[1]) / 1024.0
    return float("nan")


def _release_freed_memory() -> None:
    """Hand memory freed by the data generation back to the OS (glibc's malloc_trim)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_child() -> None:
    """The universe run alone in a fresh process; prints its memory figures as JSON.

    1. imports and ``qe.use_numba()`` (the configuration the timings use); 2. the seeded
    universe is generated and turned into Bars, the generator's arrays are freed; 3. the peak
    RSS is reset and the vectorized ``cn_a`` backtest runs (reading its equity and fills).
    The target is the peak RSS of step 3: the whole process (interpreter, numpy, pandas,
    numba, the Bars) while the universe is backtested.
    """
    status = qe.use_numba()
    baseline_mb = _vm("VmRSS")
    bars = universe_bars(universe_panels())
    gc.collect()
    _release_freed_memory()
    before_mb = _vm("VmRSS")
    generation_peak_mb = _vm("VmHWM")
    reset = _reset_peak_rss()
    tracemalloc.start()
    result = qe.backtest(VECTORIZED, bars, market="cn_a", initial_capital=UNIVERSE_CASH)
    equity, fills = result.equity, result.fills
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    figures = {
        "numba": status.enabled,
        "rss_after_imports_mb": baseline_mb,
        "rss_before_run_mb": before_mb,
        # Without the reset (not Linux) the peak includes the data generation: an upper bound.
        "peak_rss_run_mb": _vm("VmHWM"),
        "peak_rss_reset": reset,
        "peak_rss_generation_mb": generation_peak_mb,
        "traced_peak_run_mb": traced_peak,
        "fills": len(fills),
        "final_equity": float(equity["equity"].iloc[-1]),
    }
    print(json.dumps(figures))


def memory_section(figures: Figures) -> None:
    done = subprocess.run(  # noqa: S603 - this interpreter, this file
        [sys.executable, str(Path(__file__).resolve()), "--memory-child"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    figures.notes["memory"] = measured


# --- report ------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("numpy", "pandas", "numba", "backtrader", "backtesting", "vectorbt")
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except Exception:
            found[name] = "absent"
    return found


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f}"


def report(figures: Figures) -> list[tuple[str, bool | None]]:
    t = figures.times
    event = t["goog/quantdesk-event"]
    rows = [
        ("GOOG 1 x 2,148 bars", "QuantDesk event API", t["goog/quantdesk-event"], 1.0),
        ("", "QuantDesk vectorized API", t["goog/quantdesk-vectorized"], None),
        ("", "backtrader", t["goog/backtrader"], t["goog/backtrader"] / event),
        ("", "backtesting.py", t["goog/backtesting.py"], t["goog/backtesting.py"] / event),
        ("", "vectorbt", t["goog/vectorbt"], t["goog/vectorbt"] / event),
    ]
    uni = t.get("universe/quantdesk-vectorized")
    if uni is not None:
        call = t["universe/vectorbt-from_signals"]
        full = t["universe/vectorbt-signals+from_signals"]
        rows += [
            ("500 x 2,500 cn_a", "QuantDesk vectorized (whole backtest)", uni, 1.0),
            ("", "vectorbt from_signals call", call, call / uni),
            ("", "vectorbt signals + from_signals", full, full / uni),
        ]
    grid = t.get("grid/quantdesk")
    if grid is not None:
        rows += [
            ("grid 100 x GOOG", "QuantDesk backtest_grid", grid, 1.0),
            ("", "vectorbt vectorised grid", t["grid/vectorbt"], t["grid/vectorbt"] / grid),
        ]
        if "grid/backtrader" in t:
            rows.append(
                ("", "backtrader optstrategy", t["grid/backtrader"], t["grid/backtrader"] / grid)
            )
    print()
    print(f"{'case':<20} {'engine':<40} {'median ms':>12} {'x QuantDesk':>12}")
    print("-" * 87)
    for case, engine, seconds, ratio in rows:
        shown = "-" if ratio is None else f"{ratio:,.1f}"
        print(f"{case:<20} {engine:<40} {_ms(seconds):>12} {shown:>12}")
    memory = figures.notes.get("memory")
    if memory:
        print(
            f"{'memory 500 x 2,500':<20} {'peak RSS during the run (process)':<40} "
            f"{memory['peak_rss_run_mb']:>9,.0f} MB"
        )
        print(
            f"{'':<20} {'  of which interpreter+libs+numba':<40} "
            f"{memory['rss_after_imports_mb']:>9,.0f} MB"
        )
        print(
            f"{'':<20} {'  of which the run allocated (traced)':<40} "
            f"{memory['traced_peak_run_mb']:>9,.0f} MB"
        )
        print(
            f"{'':<20} {'(peak while generating the data)':<40} "
            f"{memory['peak_rss_generation_mb']:>9,.0f} MB"
        )

    targets: list[tuple[str, bool | None]] = []
    bt_ratio = t["goog/backtrader"] / event
    py_ratio = t["goog/backtesting.py"] / event
    targets.append(
        (f"event API on GOOG >= 20x faster than backtrader ({bt_ratio:.1f}x)", bt_ratio >= 20)
    )
    targets.append(
        (f"event API on GOOG >= 3x faster than backtesting.py ({py_ratio:.1f}x)", py_ratio >= 3)
    )
    if uni is not None:
        call = t["universe/vectorbt-from_signals"]
        targets.append(
            (
                f"500 x 2,500 cn_a no slower than vectorbt's from_signals call "
                f"({_ms(uni)} vs {_ms(call)} ms)",
                uni <= call,
            )
        )
    if grid is not None:
        vbt = t["grid/vectorbt"]
        targets.append((f"grid <= 1.5x vectorbt's grid ({grid / vbt:.2f}x)", grid <= 1.5 * vbt))
        if "grid/backtrader" in t:
            ratio = t["grid/backtrader"] / grid
            targets.append((f"grid >= 100x faster than backtrader's ({ratio:,.0f}x)", ratio >= 100))
        else:
            targets.append(("grid >= 100x faster than backtrader's (skipped)", None))
    if memory:
        peak = memory["peak_rss_run_mb"]
        targets.append(
            (
                f"peak memory 500 x 2,500 < {MEMORY_LIMIT_MB:.0f} MB ({peak:,.0f} MB)",
                peak < MEMORY_LIMIT_MB,
            )
        )
    print()
    print("targets (issue 3, point 7):")
    for text, ok in targets:
        mark = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  [{mark}] {text}")
    return targets


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per case (median)")
    parser.add_argument(
        "--backtrader-grid-repeat",
        type=int,
        default=1,
        help="runs of backtrader's 100-run optstrategy (about 20 s each)",
    )
    parser.add_argument("--skip-backtrader-grid", action="store_true")
    parser.add_argument("--skip-universe", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child()
        return 0

    versions = _versions()
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print("  ".join(f"{k} {v}" for k, v in versions.items()))
    start = time.perf_counter()
    status = qe.use_numba()
    print(
        f"qe.use_numba(): {'compiled' if status.enabled else 'unavailable'} in "
        f"{time.perf_counter() - start:.2f} s (cache {status.cache_dir}) {status.reason}"
    )
    figures = Figures(notes={"versions": versions, "numba_seconds": status.seconds})
    goog_section(figures, args.repeat)
    if not args.skip_universe:
        universe_section(figures, args.repeat)
    grid_section(
        figures, args.repeat, 0 if args.skip_backtrader_grid else args.backtrader_grid_repeat
    )
    if not args.skip_memory:
        memory_section(figures)
    targets = report(figures)
    if args.json:
        payload = {"times_s": figures.times, "notes": figures.notes, "targets": targets}
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0 if all(ok is not False for _, ok in targets) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
