"""The engine's exceptions, so callers (sandbox, API) can map them to a 422 with the reason."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError, ValueError):
    """A run's configuration (market, costs, rules, params, benchmark) is invalid."""


class DataError(EngineError, ValueError):
    """The bars handed to the engine are unusable (missing columns, duplicate dates, ...)."""


class StrategyError(EngineError):
    """The strategy code is invalid (both or neither API, bad params) or failed while running."""
