"""The built-in example strategies users start from; each file is a complete, checked strategy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from quantdesk.sandbox.checker import check


@dataclass(frozen=True)
class Template:
    slug: str
    name: str
    description: str
    api: str
    category: str
    risk_level: str
    params: dict[str, Any]
    code: str


# slug -> (display name, category, risk level); the description is the file's docstring.
_CATALOGUE: dict[str, tuple[str, str, str]] = {
    "dual_moving_average": ("Dual moving-average crossover", "trend", "medium"),
    "macd_trend": ("MACD trend", "trend", "medium"),
    "rsi_mean_reversion": ("RSI mean reversion", "mean_reversion", "medium"),
    "bollinger_breakout": ("Bollinger breakout", "breakout", "high"),
    "momentum_rotation": ("Momentum rotation (weekly top N)", "rotation", "high"),
    "equal_weight_monthly": ("Equal weight, monthly rebalance", "allocation", "low"),
}


@cache
def templates() -> tuple[Template, ...]:
    """Every template, checked by the sandbox's static check (a broken one fails loudly)."""
    found = []
    for slug, (name, category, risk_level) in _CATALOGUE.items():
        code = resources.files(__package__).joinpath(f"{slug}.py").read_text(encoding="utf-8")
        result = check(code)
        if not result.valid or result.api is None:
            raise RuntimeError(f"template {slug} fails the sandbox check: {result.violations}")
        description = code.split('"""')[1].strip()
        found.append(
            Template(slug, name, description, result.api, category, risk_level, result.params, code)
        )
    return tuple(found)


def template(slug: str) -> Template | None:
    return next((t for t in templates() if t.slug == slug), None)
