"""Backtests: run a strategy on stored bars in the sandbox; store, report and export the result."""
