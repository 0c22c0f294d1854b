"""QuantDesk's backtest engine: a pure library (no web, database, I/O) for tasks and notebooks.

Usage::

    import quantdesk.engine as qe
    bars = qe.Bars.from_frames({"GOOG": goog_df})
    result = qe.backtest(strategy_source, bars, market="us", initial_capital=100_000)
"""

from quantdesk.engine.broker import Reason
from quantdesk.engine.context import LogLimits, Position
from quantdesk.engine.data import Bars
from quantdesk.engine.errors import ConfigError, DataError, EngineError, StrategyError
from quantdesk.engine.result import Result
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
    "Position",
    "Reason",
    "Result",
    "Rule",
    "RuleRow",
    "Rules",
    "StrategyError",
    "VectorData",
    "backtest",
    "board_of",
    "limit_prices",
    "rule_value",
]
