"""QuantDesk's backtest engine: a pure library (no web, database, I/O) for tasks and notebooks.

Usage::

    import quantdesk.engine as qe
    bars = qe.Bars.from_frames({"GOOG": goog_df})
    result = qe.backtest(strategy_source, bars, market="us", initial_capital=100_000)
    sweep = qe.backtest_grid(vectorized_source, bars, param_grid={"fast": [5, 10], "slow": [30]})

``qe.use_numba()`` (once per process) compiles the kernels for large universes and sweeps.
"""

from quantdesk.engine.accel import NumbaStatus, numba_enabled, use_numba
from quantdesk.engine.broker import Reason
from quantdesk.engine.context import LogLimits, Position
from quantdesk.engine.data import Bars
from quantdesk.engine.errors import ConfigError, DataError, EngineError, StrategyError
from quantdesk.engine.grid import GRID_METRICS, ROUND_TRIP_METRICS, backtest_grid
from quantdesk.engine.result import Result
from quantdesk.engine.resume import Resume
from quantdesk.engine.rules import (
    RULEBOOK,
    RULEBOOK_VERSION,
    Board,
    Costs,
    Market,
    Rule,
    RuleRow,
    Rules,
    board_of,
    limit_prices,
    rule_value,
)
from quantdesk.engine.run import VectorData, backtest

__all__ = [
    "GRID_METRICS",
    "ROUND_TRIP_METRICS",
    "RULEBOOK",
    "RULEBOOK_VERSION",
    "Bars",
    "Board",
    "ConfigError",
    "Costs",
    "DataError",
    "EngineError",
    "LogLimits",
    "Market",
    "NumbaStatus",
    "Position",
    "Reason",
    "Result",
    "Resume",
    "Rule",
    "RuleRow",
    "Rules",
    "StrategyError",
    "VectorData",
    "backtest",
    "backtest_grid",
    "board_of",
    "limit_prices",
    "numba_enabled",
    "rule_value",
    "use_numba",
]
