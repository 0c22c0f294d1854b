"""Strategies: user code with version history, validation, templates, and paper trading."""
