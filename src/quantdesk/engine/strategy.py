"""Loading a strategy: which API it defines, its hooks, and its params merged with the run's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from quantdesk.engine.errors import StrategyError


class Api(StrEnum):
    """The two strategy APIs of STRATEGY_API.md section 1."""

    EVENT = "event"
    VECTORIZED = "vectorized"


@dataclass(frozen=True, slots=True)
class Strategy:
    """A loaded strategy: its API, hooks and default params."""

    api: Api
    initialize: Callable[..., Any] | None
    handle_bar: Callable[..., Any] | None
    target_weights: Callable[..., Any] | None
    defaults: Mapping[str, Any]


def _namespace(strategy: str | object) -> Mapping[str, Any]:
    if isinstance(strategy, str):
        namespace: dict[str, Any] = {"__name__": "strategy", "__builtins__": __builtins__}
        try:
            code = compile(strategy, "<strategy>", "exec")
        except SyntaxError as exc:
            raise StrategyError(f"syntax error in strategy, line {exc.lineno}: {exc.msg}") from exc
        # Trusted code only: the sandbox (another module) checks and isolates user code first.
        exec(code, namespace)  # noqa: S102
        return namespace
    if isinstance(strategy, Mapping):
        return strategy
    names = ("PARAMS", "initialize", "handle_bar", "target_weights")
    return {name: getattr(strategy, name) for name in names if hasattr(strategy, name)}


def load_strategy(strategy: str | object) -> Strategy:
    """Load ``strategy`` (source code, a module, a namespace or a mapping of names).

    Raises
    ------
    StrategyError
        When it defines both APIs or neither, a hook is not callable, or ``PARAMS`` is not a
        dict with string keys.
    """
    ns = _namespace(strategy)
    hooks: dict[str, Callable[..., Any] | None] = {}
    for name in ("initialize", "handle_bar", "target_weights"):
        hook = ns.get(name)
        if hook is not None and not callable(hook):
            raise StrategyError(f"{name} must be a function")
        hooks[name] = hook
    event = hooks["handle_bar"] is not None or hooks["initialize"] is not None
    vectorized = hooks["target_weights"] is not None
    if event and vectorized:
        raise StrategyError(
            "the strategy defines both APIs: keep either initialize/handle_bar (event) "
            "or target_weights (vectorized)"
        )
    if not event and not vectorized:
        raise StrategyError(
            "the strategy defines neither API: define handle_bar(ctx, data) (event) "
            "or target_weights(data, params) (vectorized)"
        )
    if event and hooks["handle_bar"] is None:
        raise StrategyError(
            "the event API needs handle_bar(ctx, data); initialize alone is not enough"
        )
    defaults = ns.get("PARAMS", {})
    if not isinstance(defaults, Mapping) or not all(isinstance(k, str) for k in defaults):
        raise StrategyError("PARAMS must be a dict with string keys")
    return Strategy(
        api=Api.EVENT if event else Api.VECTORIZED,
        initialize=hooks["initialize"],
        handle_bar=hooks["handle_bar"],
        target_weights=hooks["target_weights"],
        defaults=dict(defaults),
    )


def merge_params(defaults: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``PARAMS`` overridden by the run's ``params``; keys not in ``PARAMS`` are an error."""
    given = dict(params or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise StrategyError(f"unknown params: {', '.join(unknown)} (PARAMS defines: {known})")
    return {**defaults, **given}
