"""What makes two backtests the same run: the request hash, the engine version, the metric names.

STYLE.md pattern 9 (after freqtrade's backtest caching): a run is identified by the hash of the
code, the parameters, the data it reads (a fingerprint of the stored bars), the rules and the
engine version; a finished run with the same hash is reused rather than run again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import quantdesk

if TYPE_CHECKING:
    from quantdesk.backtests.models import Backtest

#: STRATEGY_API.md section 4, in the order reports list them (plus round_trips_count).
METRICS: tuple[str, ...] = (
    "final_value",
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "max_drawdown_duration",
    "calmar_ratio",
    "trades_count",
    "round_trips_count",
    "win_rate",
    "profit_loss_ratio",
    "benchmark_return",
    "alpha",
    "beta",
    "information_ratio",
    "tracking_error",
    "turnover",
)
#: Metrics where smaller is better when a grid is ranked by them (risk, not reward).
LOWER_IS_BETTER = frozenset(
    {"annual_volatility", "max_drawdown", "max_drawdown_duration", "tracking_error"}
)
DEFAULT_RANK_BY = "sharpe_ratio"

_CODE_ROOT = Path(quantdesk.__file__).parent


@cache
def engine_version() -> str:
    """The package version plus a digest of the engine's and the sandbox's source.

    Any change to the code that computes a result (the engine, the parent-side verification)
    gives another version, so a stored result is never reused across such a change; computed
    once per process.
    """
    digest = hashlib.sha256()
    for folder in ("engine", "sandbox"):
        for path in sorted((_CODE_ROOT / folder).glob("*.py")):
            digest.update(f"{folder}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return f"{quantdesk.__version__}+{digest.hexdigest()[:12]}"


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def canonical(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal inputs give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def request_hash(inputs: Mapping[str, Any]) -> str:
    """The sha256 of everything that decides a run's result (see :func:`hash_inputs`)."""
    return hashlib.sha256(canonical(dict(inputs)).encode("utf-8")).hexdigest()


def hash_inputs(
    *,
    code_sha: str,
    config: Mapping[str, Any],
    symbols: Sequence[str],
    start: Any,
    end: Any,
    adjust: str,
    benchmark: str | None,
    data_fingerprint: str,
    rulebook_version: str,
    engine: str,
) -> dict[str, Any]:
    """The inputs of a run's identity; the symbols keep their order (it is ctx.universe's)."""
    return {
        "code": code_sha,
        "config": dict(config),
        "symbols": list(symbols),
        "start": str(start),
        "end": str(end),
        "adjust": adjust,
        "benchmark": benchmark,
        "data": data_fingerprint,
        "rulebook": rulebook_version,
        "engine": engine,
    }


def hash_of(backtest: Backtest) -> str:
    """The request hash of a backtest row: code, config, data, rules and engine version."""
    inputs = hash_inputs(
        code_sha=backtest.code_sha256,
        config=backtest.config,
        symbols=backtest.symbols,
        start=backtest.start_date,
        end=backtest.end_date,
        adjust=backtest.adjust,
        benchmark=backtest.benchmark,
        data_fingerprint=backtest.data_fingerprint,
        rulebook_version=backtest.rulebook_version,
        engine=backtest.engine_version,
    )
    if backtest.kind == "grid":
        inputs["param_grid"] = backtest.param_grid
    return request_hash(inputs)


def combinations(param_grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid, in key order with the last key varying fastest."""
    names = list(param_grid)
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(param_grid[n] for n in names))
    ]


def combination_count(param_grid: Mapping[str, Sequence[Any]]) -> int:
    count = 1
    for values in param_grid.values():
        count *= len(values)
    return count


def sort_key(rank_by: str, value: float | None) -> tuple[int, float]:
    """Best first: missing values last, then by the metric in its better direction."""
    if value is None:
        return (1, 0.0)
    return (0, value if rank_by in LOWER_IS_BETTER else -value)
