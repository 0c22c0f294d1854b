"""Helpers for the sandbox tests: small bars, real strategies, limits small enough to be fast."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import quantdesk.engine as qe
from quantdesk.sandbox.limits import SandboxLimits
from quantdesk.sandbox.runner import ForkServer, SandboxOutcome, run_backtest

SMA = """
PARAMS = {"fast": 5, "slow": 20}

def handle_bar(ctx, data):
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"]:
            continue
        if close[-ctx.params["fast"]:].mean() > close.mean():
            ctx.order_target_percent(symbol, 1.0 / len(ctx.universe))
        else:
            ctx.order_target_percent(symbol, 0)
"""

VECTORIZED = """
PARAMS = {"fast": 5, "slow": 20}

def target_weights(data, params):
    close = data.close
    long = close.rolling(params["fast"]).mean() > close.rolling(params["slow"]).mean()
    weights = long.astype(float)
    return weights.div(weights.sum(axis=1).clip(lower=1), axis=0)
"""

# Small limits keep the suite fast; each test that is about a limit sets its own.
FAST = SandboxLimits(
    cpu_seconds=5,
    wall_seconds=10,
    memory_mb=1024,
    file_size_mb=1,
    max_result_bytes=5_000_000,
)


def price_frame(n: int = 120, seed: int = 0, start: str = "2023-01-02") -> pd.DataFrame:
    """A random-walk daily frame with consistent open/high/low/close."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    opens = close * (1 + rng.normal(0, 0.003, n))
    return pd.DataFrame(
        {
            "open": opens,
            "high": np.maximum(opens, close) * 1.005,
            "low": np.minimum(opens, close) * 0.995,
            "close": close,
            "volume": 1e6,
        },
        index=pd.bdate_range(start, periods=n),
    )


def small_bars(n: int = 120, symbols: tuple[str, ...] = ("AAPL",)) -> qe.Bars:
    """Bars of ``symbols`` (different seeds) over ``n`` business days."""
    return qe.Bars.from_frames({s: price_frame(n, seed=i) for i, s in enumerate(symbols)})


def attack(body: str) -> str:
    """A strategy whose ``initialize`` runs ``body`` and logs what ``body`` put in ``out``."""
    return (
        "def initialize(ctx):\n"
        "    out = []\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
        + "\n    for line in out:\n        ctx.log(str(line))\n\n"
        "def handle_bar(ctx, data):\n    pass\n"
    )


def run(
    code: str,
    *,
    bars: qe.Bars | None = None,
    config: dict[str, Any] | None = None,
    language_layers: bool = False,
    server: ForkServer | None = None,
    **limits: Any,
) -> SandboxOutcome:
    """One sandboxed run with :data:`FAST` limits overridden by ``limits``."""
    chosen = SandboxLimits(**{**FAST.as_dict(), **limits})
    bars = bars if bars is not None else small_bars(30)
    config = config if config is not None else {"market": "us"}
    if server is not None:
        return server.run(code, bars, config, limits=chosen, language_layers=language_layers)
    return run_backtest(code, bars, config, limits=chosen, language_layers=language_layers)


def logged(outcome: SandboxOutcome) -> list[str]:
    """The messages the run logged (fails the test when the run did not finish)."""
    assert outcome.status == "finished", (outcome.error, outcome.traceback, outcome.diagnostics)
    return [row["message"] for row in outcome.logs]


def everything(outcome: SandboxOutcome) -> str:
    """All text an outcome carries, to search for leaked secrets."""
    return repr((outcome.result, outcome.error, outcome.traceback, outcome.diagnostics))


def pids_named(name: str) -> list[int]:
    """Host PIDs whose command name (``/proc/PID/comm``) is ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def pids_of_uid(uid: int) -> list[int]:
    """Host PIDs running as ``uid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))
