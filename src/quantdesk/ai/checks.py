"""Deterministic checks of a strategy and its backtests: the facts an analysis stands on.

Five checks, each pure (plain data in, findings out), so the analysis endpoint, the assistant's
tools and the offline analyst give the same warnings for the same strategy:

* look-ahead patterns in the code (the AST): `shift(-n)`, `pct_change(-n)`, centred windows,
  back-fills and, in vectorized code, whole-history aggregates and the last rows of the history;
* position limits: nothing in the code caps or normalises position sizes;
* over-trading: fills per symbol and year, turnover, and what costs took from the gross profit;
* parameter overfitting: how far a grid's best combination stands above the rest and its
  neighbours, and how many combinations were tried;
* drawdown versus return (Calmar), Sharpe, and the result against the benchmark.
"""

from __future__ import annotations

import ast
import re
import statistics
from dataclasses import asdict, dataclass
from typing import Any

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
CHECKS = ("look_ahead", "position_limits", "over_trading", "overfitting", "drawdown_vs_return")
_AGGREGATES = {"mean", "max", "min", "std", "var", "median", "quantile", "sum", "rank", "idxmax"}
_WINDOWS = {"rolling", "expanding", "ewm", "groupby", "resample"}
_LIMIT_PARAM = re.compile(r"max|limit|cap|weight|position|size|top_n|pct|percent|fraction", re.I)
_ABSOLUTE_ORDERS = {"order", "order_value", "order_target", "order_target_value"}
_PORTFOLIO_FACTS = {"total_value", "cash", "positions"}


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str  # high | medium | low
    message: str
    suggestion: str
    line: int | None = None
    evidence: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- the code


def _negative(node: ast.AST | None) -> int | None:
    """The value of a literal negative integer (`-1`, `-n` literals only), else None."""
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int)
    ):
        return -node.operand.value
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and node.value < 0:
        return node.value
    return None


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return None if isinstance(node.value, bool) else float(node.value)
    return None


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _calls(node: ast.AST) -> set[str]:
    return {
        n.func.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }


def _mentions_index(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "index" for n in ast.walk(node))


def _taints(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names holding dates only (built from `.index`) and names holding windowed data."""
    calendar: set[str] = set()
    windowed: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        targets = {t.id for t in node.targets if isinstance(t, ast.Name)}
        names = _names(node.value)
        if _mentions_index(node.value) or (names and names <= calendar):
            calendar |= targets
        if _calls(node.value) & _WINDOWS or names & windowed:
            windowed |= targets
    return calendar, windowed


def _source(code: str, node: ast.AST) -> str:
    text = ast.get_source_segment(code, node) or ""
    return text if len(text) <= 120 else text[:117] + "..."


def look_ahead(code: str, tree: ast.Module, api: str) -> list[Finding]:
    """Patterns that let a date see later prices (vectorized code) or only misalign (event)."""
    vectorized = api == "vectorized"
    calendar, windowed = _taints(tree)
    found: list[Finding] = []

    def add(node: ast.AST, severity: str, message: str, suggestion: str) -> None:
        line = getattr(node, "lineno", None)
        found.append(
            Finding("look_ahead", severity, message, suggestion, line, _source(code, node))
        )

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, receiver = node.func.attr, node.func.value
            periods = node.args[0] if node.args else None
            for keyword in node.keywords:
                if keyword.arg == "periods":
                    periods = keyword.value
            if attr in {"shift", "pct_change", "diff"} and _negative(periods) is not None:
                dates_only = _mentions_index(receiver) or (
                    bool(_names(receiver)) and _names(receiver) <= calendar
                )
                if dates_only:
                    add(
                        node,
                        "low",
                        f"{attr}({_negative(periods)}) on dates reads the next trading date: "
                        "harmless while the exchange calendar is known in advance",
                        "Keep it only for calendar logic such as 'last day of the month'.",
                    )
                elif vectorized:
                    add(
                        node,
                        "high",
                        f"{attr}({_negative(periods)}) moves later values onto earlier dates: "
                        "each date would trade on prices it could not have known",
                        "Use positive shifts only (shift(1) is yesterday); the engine already "
                        "trades day t's weights at day t+1.",
                    )
                else:
                    add(
                        node,
                        "low",
                        f"{attr}({_negative(periods)}) in event code cannot see the future "
                        "(history ends at the current bar) but misaligns the window",
                        "Check that the shifted values line up with the bars you mean.",
                    )
            if attr == "rolling" and any(
                k.arg == "center" and isinstance(k.value, ast.Constant) and k.value.value
                for k in node.keywords
            ):
                add(
                    node,
                    "high" if vectorized else "low",
                    "rolling(center=True) averages bars after each date",
                    "Use trailing windows (the default center=False).",
                )
            method = next(
                (
                    k.value.value
                    for k in node.keywords
                    if k.arg == "method" and isinstance(k.value, ast.Constant)
                ),
                None,
            )
            backfill = {"bfill", "backfill"}
            if vectorized and (attr in backfill or (attr == "fillna" and method in backfill)):
                add(
                    node,
                    "medium",
                    "back-filling copies a later value into earlier gaps",
                    "Forward-fill (ffill) or leave NaN, which means 'no change'.",
                )
            axis = next((k.value for k in node.keywords if k.arg == "axis"), None)
            across_dates = axis is None or (
                isinstance(axis, ast.Constant) and axis.value in (0, "index")
            )
            names = _names(receiver)
            if (
                vectorized
                and attr in _AGGREGATES
                and across_dates
                and not (_calls(receiver) & _WINDOWS)
                and not (names & windowed)
                and not (names and names <= calendar)
                and not _mentions_index(receiver)
            ):
                add(
                    node,
                    "medium",
                    f".{attr}() over the whole history gives every date a number computed "
                    "from later dates too",
                    "Use rolling(n) or expanding() windows, or axis=1 to aggregate across "
                    "symbols on the same date.",
                )
        if (
            vectorized
            and isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in {"iloc", "values"}
        ):
            index = node.slice.lower if isinstance(node.slice, ast.Slice) else node.slice
            if _negative(index) is not None and not _mentions_index(node.value.value):
                add(
                    node,
                    "medium",
                    "indexing from the end of the history ([-n]) in vectorized code reads the "
                    "last rows, which lie in the future of every earlier date",
                    "Compute per date with shift/rolling instead of reading the final rows.",
                )
    return found


def _evidence_of_limits(tree: ast.Module, params: dict[str, Any]) -> list[str]:
    evidence = [f"PARAMS[{key!r}]" for key in params if _LIMIT_PARAM.search(key)]
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if (
                isinstance(right, ast.Call)
                and isinstance(right.func, ast.Name)
                and right.func.id == "len"
            ):
                evidence.append("divides by the number of symbols")
            if "sum" in _calls(right):
                evidence.append("normalises by a row sum")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in {"min", "minimum", "clip"}:
                evidence.append(f"caps values with {name}()")
            if name == "div" and any("sum" in _calls(arg) for arg in node.args):
                evidence.append("normalises by a row sum")
            if name == "order_target_percent" and len(node.args) >= 2:
                value = node.args[1]
                fraction = _number(value)
                if fraction is not None and 0 < fraction <= 0.5:
                    evidence.append(f"targets {fraction:g} of equity per order")
    return list(dict.fromkeys(evidence))


def position_limits(tree: ast.Module, api: str, params: dict[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    evidence = _evidence_of_limits(tree, params)
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        fraction = _number(node.args[1]) if len(node.args) >= 2 else None
        if node.func.attr == "order_target_percent" and fraction is not None and fraction >= 1:
            found.append(
                Finding(
                    "position_limits",
                    "medium",
                    f"order_target_percent(..., {fraction:g}) puts the whole portfolio into "
                    "one symbol",
                    "Divide by the number of symbols or cap each weight (e.g. 0.2).",
                    node.lineno,
                )
            )
    absolute = {
        n.func.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in _ABSOLUTE_ORDERS
    }
    if api == "event" and absolute and not (attributes & _PORTFOLIO_FACTS):
        found.append(
            Finding(
                "position_limits",
                "medium",
                f"fixed order sizes ({', '.join(sorted(absolute))}) never look at cash, total "
                "value or positions",
                "Size orders from ctx.total_value or use order_target_percent.",
            )
        )
    if not evidence:
        found.append(
            Finding(
                "position_limits",
                "medium",
                "no position limit found: nothing caps or normalises the size of a position",
                "Cap each symbol's weight (for example with min() or clip(upper=...)) and "
                "divide by the number of symbols.",
            )
        )
    return found


def code_checks(code: str, api: str, params: dict[str, Any]) -> dict[str, Any]:
    """Look-ahead and position-limit findings of a strategy's code, plus what limits it has."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:  # stored code passed the sandbox check; old rows may not have
        finding = Finding("look_ahead", "high", f"the code does not parse: {exc.msg}", "Fix it.")
        return {"look_ahead": [finding], "position_limits": [], "limit_evidence": []}
    return {
        "look_ahead": look_ahead(code, tree, api),
        "position_limits": position_limits(tree, api, params),
        "limit_evidence": _evidence_of_limits(tree, params),
    }


# ---------------------------------------------------------------- a backtest's numbers


def over_trading(facts: dict[str, Any]) -> tuple[list[Finding], dict[str, Any]]:
    """Fills per symbol-year, turnover, and what costs took (from a finished run's facts)."""
    metrics, costs = facts["metrics"], facts["cost_summary"]
    years = max(facts["bars_count"] / 252.0, 1 / 252.0)
    fills = metrics.get("trades_count") or 0
    per_symbol_year = fills / years / max(len(facts["symbols"]), 1)
    turnover = metrics.get("turnover")
    capital = facts["initial_capital"]
    cost = costs["total"] + costs.get("slippage", 0.0)
    gross = (metrics.get("final_value") or capital) - capital + cost
    cost_of_gross = cost / gross if gross > 0 else None
    numbers = {
        "fills": fills,
        "years": round(years, 2),
        "fills_per_symbol_year": round(per_symbol_year, 1),
        "turnover": turnover,
        "costs": round(cost, 2),
        "costs_per_year_of_capital": round(cost / years / capital, 4),
        "costs_of_gross_profit": None if cost_of_gross is None else round(cost_of_gross, 4),
        "min_commission_fills": costs.get("min_commission_fills", 0),
    }
    found: list[Finding] = []
    fix = "Trade less often: longer signals, a holding period, or a band before re-trading."
    if per_symbol_year > 100 or (turnover is not None and turnover > 20):
        found.append(
            Finding(
                "over_trading",
                "high",
                f"{per_symbol_year:.0f} fills per symbol a year (turnover {turnover or 0:.1f}x "
                "a year): most of the edge goes to costs and slippage",
                fix,
            )
        )
    elif per_symbol_year > 40 or (turnover is not None and turnover > 8):
        found.append(
            Finding(
                "over_trading",
                "medium",
                f"{per_symbol_year:.0f} fills per symbol a year (turnover {turnover or 0:.1f}x)",
                fix,
            )
        )
    if cost_of_gross is not None and cost_of_gross > 0.5:
        found.append(
            Finding(
                "over_trading",
                "high",
                f"costs took {cost_of_gross * 100:.0f}% of the gross profit",
                fix,
            )
        )
    if fills >= 10 and numbers["min_commission_fills"] / fills > 0.5:
        found.append(
            Finding(
                "over_trading",
                "low",
                f"{numbers['min_commission_fills']} of {fills} fills paid the minimum "
                "commission: orders are small for the fee schedule",
                "Trade fewer, larger orders, or raise the capital per symbol.",
            )
        )
    return found, numbers


def drawdown_vs_return(metrics: dict[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    total, annual = metrics.get("total_return"), metrics.get("annual_return")
    drawdown, sharpe = metrics.get("max_drawdown"), metrics.get("sharpe_ratio")
    bench = metrics.get("benchmark_return")
    if total is not None and total <= 0:
        found.append(
            Finding(
                "drawdown_vs_return",
                "high",
                f"the run lost money: total return {total * 100:.1f}%",
                "Revisit the signal before tuning parameters.",
            )
        )
    elif drawdown and annual is not None and annual > 0:
        calmar = annual / drawdown
        if calmar < 0.5:
            severity = "high"
        elif calmar < 1:
            severity = "medium"
        else:
            severity = ""
        if severity:
            found.append(
                Finding(
                    "drawdown_vs_return",
                    severity,
                    f"the worst drawdown ({drawdown * 100:.1f}%) is {1 / calmar:.1f}x the annual "
                    f"return ({annual * 100:.1f}%)",
                    "Add an exit or a volatility-based position size to cut the drawdowns.",
                )
            )
    if drawdown is not None and drawdown > 0.3:
        found.append(
            Finding(
                "drawdown_vs_return",
                "medium",
                f"a {drawdown * 100:.0f}% drawdown is hard to sit through",
                "Consider a stop, smaller positions, or a cash filter in down markets.",
            )
        )
    if sharpe is not None and sharpe < 0.5 and (total or 0) > 0:
        found.append(
            Finding(
                "drawdown_vs_return",
                "low",
                f"a Sharpe ratio of {sharpe:.2f} earns little per unit of risk",
                "Compare it with simply holding the benchmark.",
            )
        )
    if bench is not None and total is not None and total < bench:
        found.append(
            Finding(
                "drawdown_vs_return",
                "medium",
                f"it trailed its benchmark ({total * 100:.1f}% against {bench * 100:.1f}%)",
                "Check whether the strategy adds anything over holding the benchmark.",
            )
        )
    return found


def overfitting(
    grid: dict[str, Any] | None, params: dict[str, Any], bars_count: int | None
) -> tuple[list[Finding], dict[str, Any]]:
    """Best-of-grid risk: the best against the median and its neighbours, and the search size."""
    numeric = [
        k for k, v in params.items() if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    found: list[Finding] = []
    if len(numeric) >= 5:
        found.append(
            Finding(
                "overfitting",
                "low",
                f"{len(numeric)} numeric parameters: every one is a knob a search can overfit",
                "Fix the parameters that matter little and test the rest out of sample.",
            )
        )
    if grid is None:
        return found, {"grid_id": None, "parameters": len(numeric)}
    lower = bool(grid.get("lower_is_better"))
    rows = [r for r in grid["rows"] if r["status"] == "finished" and r["score"] is not None]
    sign = -1.0 if lower else 1.0
    facts: dict[str, Any] = {
        "grid_id": grid["grid_id"],
        "rank_by": grid["rank_by"],
        "combinations": len(grid["rows"]),
        "finished": len(rows),
        "parameters": len(numeric),
    }
    if len(rows) < 3:
        return found, facts
    scores = [sign * float(r["score"]) for r in rows]
    best_row = max(rows, key=lambda r: sign * float(r["score"]))
    best, median = sign * float(best_row["score"]), statistics.median(scores)
    spread = statistics.pstdev(scores) or 0.0
    neighbours = [
        sign * float(r["score"])
        for r in rows
        if r is not best_row
        and sum(r["params"].get(k) != v for k, v in best_row["params"].items()) == 1
    ]
    facts.update(
        best_params=best_row["params"],
        best_score=best_row["score"],
        median_score=sign * median,
        neighbour_mean=sign * statistics.fmean(neighbours) if neighbours else None,
    )
    if spread > 0 and (best - median) / spread > 2.5:
        found.append(
            Finding(
                "overfitting",
                "high",
                f"the best combination ({best_row['params']}) stands "
                f"{(best - median) / spread:.1f} standard deviations above the median of "
                f"{len(rows)}: likely luck of the search",
                "Prefer a parameter region that is good on average, and confirm it on later data.",
            )
        )
    if neighbours and best > 0 and statistics.fmean(neighbours) < 0.5 * best:
        found.append(
            Finding(
                "overfitting",
                "high",
                "the best combination is an isolated peak: changing one parameter by one step "
                "loses more than half of its score",
                "Choose parameters whose neighbours score nearly as well (a plateau).",
            )
        )
    if median <= 0 < best:
        found.append(
            Finding(
                "overfitting",
                "medium",
                "most combinations score at or below zero; only the chosen few look good",
                "Treat the best result as optimistic; test out of sample.",
            )
        )
    if bars_count and len(grid["rows"]) > bars_count / 10:
        found.append(
            Finding(
                "overfitting",
                "medium",
                f"{len(grid['rows'])} combinations tried on {bars_count} bars",
                "Use fewer combinations or more history.",
            )
        )
    return found, facts
