"""Strategy analysis: the facts of a strategy and its backtests, checked, and put into words.

`strategy_report` is the deterministic part of `POST /api/ai/analyze-strategy` (always
computed): the five checks of checks.py, a summary, strengths, risks, warnings and suggestions.
The facts come from the strategies and backtests services as the requesting user sees them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.orm import Session

from quantdesk.ai import checks
from quantdesk.ai.checks import SEVERITY_ORDER, Finding
from quantdesk.auth.models import User
from quantdesk.backtests import results
from quantdesk.backtests import service as backtests
from quantdesk.backtests.grids import grid_table
from quantdesk.backtests.models import Backtest, Kind, Status
from quantdesk.strategies.models import Strategy

# Why the engine refused or trimmed an order (STRATEGY_API.md section 3), for people.
REFUSAL_REASONS: dict[str, str] = {
    "suspended": "the symbol had no bar or no volume on the fill day (suspended)",
    "limit_up": "the buy would have filled at the limit-up price, where no seller is left",
    "limit_down": "the sell would have filled at the limit-down price, where no buyer is left",
    "t_plus_1": "shares bought that day are not sellable until the next trading day (T+1)",
    "lot_size": "the quantity was cut to whole lots (100 shares on the main board)",
    "cash": "the buy was cut to what the cash pays for, costs included",
    "no_next_bar": "the order came on the last bar, with no next bar to fill it",
}
EXAMPLES = 20  # refusals and trades shown per run


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def strategy_facts(strategy: Strategy, *, code_chars: int = 20_000) -> dict[str, Any]:
    code = strategy.code
    return {
        "strategy_id": strategy.id,
        "name": strategy.name,
        "description": strategy.description,
        "api": strategy.api,
        "version": strategy.version,
        "status": strategy.status,
        "category": strategy.category,
        "risk_level": strategy.risk_level,
        "params": strategy.params,
        "code": code if len(code) <= code_chars else code[:code_chars] + "\n# ... (cut)",
    }


def backtest_facts(session: Session, *, user: User, backtest: Backtest) -> dict[str, Any]:
    """A backtest as the analysis and the assistant read it: config, outcome, and, once it has
    finished, metrics, costs, refused orders (with their reasons explained) and trades."""
    facts: dict[str, Any] = {
        "backtest_id": backtest.id,
        "name": backtest.name,
        "kind": backtest.kind,
        "status": backtest.status,
        "progress": backtest.progress,
        "strategy_id": backtest.strategy_id,
        "strategy_version": backtest.strategy_version,
        "symbols": backtest.symbols,
        "start_date": _iso(backtest.start_date),
        "end_date": _iso(backtest.end_date),
        "initial_capital": backtest.initial_capital,
        "market": backtest.market,
        "benchmark": backtest.benchmark,
        "params": backtest.params,
        "costs": backtest.costs,
        "fill": backtest.fill,
        "slippage_bps": backtest.slippage_bps,
        "error": backtest.error,
        "notices": backtest.notices,
    }
    if backtest.status != Status.FINISHED:
        return facts
    run = results.finished_run(session, user=user, backtest_id=backtest.id)
    reasons = Counter(r.reason for r in run.refusals)
    facts.update(
        combination_id=run.backtest.id if run.backtest.id != backtest.id else None,
        bars_count=run.backtest.bars_count or len(run.equity),
        metrics=run.metrics,
        cost_summary=run.cost_summary,
        refusals={
            "count": len(run.refusals),
            "by_reason": dict(reasons.most_common()),
            "explanations": {reason: REFUSAL_REASONS.get(reason, reason) for reason in reasons},
            "examples": [
                {
                    "date": _iso(r.date),
                    "symbol": r.symbol,
                    "side": r.side,
                    "requested": r.requested,
                    "filled": r.filled,
                    "reason": r.reason,
                }
                for r in run.refusals[:EXAMPLES]
            ],
        },
        trades={
            "count": len(run.trades),
            "first": [_trade(t) for t in run.trades[:5]],
            "last": [_trade(t) for t in run.trades[-5:]] if len(run.trades) > 5 else [],
        },
        positions=run.result.positions,
    )
    if backtest.kind == Kind.GRID:
        table = grid_table(session, user=user, grid_id=backtest.id)
        facts["grid"] = {**table, "rows": table["rows"][:10]}
    return facts


def _trade(trade: Any) -> dict[str, Any]:
    return {key: _iso(value) for key, value in results.trade_dict(trade).items() if key != "id"}


def latest_grid(session: Session, *, user: User, strategy_id: int) -> dict[str, Any] | None:
    """The newest finished parameter grid of a strategy, for the overfitting check."""
    stmt = backtests.list_backtests(
        session, user=user, strategy_id=strategy_id, status=Status.FINISHED
    ).where(Backtest.kind == Kind.GRID)
    grid = session.scalars(stmt.limit(1)).first()
    return grid_table(session, user=user, grid_id=grid.id) if grid else None


# ---------------------------------------------------------------- the report


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.check))


def _section(findings: list[Finding], facts: dict[str, Any] | None, ran: bool) -> dict[str, Any]:
    status = "not_run" if not ran else ("warn" if findings else "pass")
    return {
        "status": status,
        "findings": [f.as_dict() for f in _sorted(findings)],
        "facts": facts or {},
    }


def strategy_report(
    strategy: dict[str, Any], backtest: dict[str, Any] | None, grid: dict[str, Any] | None
) -> dict[str, Any]:
    """The deterministic analysis of a strategy (and a backtest of it, and its latest grid)."""
    code = checks.code_checks(strategy["code"], strategy["api"], strategy["params"])
    finished = backtest is not None and backtest["status"] == Status.FINISHED
    trading: list[Finding] = []
    trading_facts: dict[str, Any] | None = None
    drawdown: list[Finding] = []
    if finished and backtest is not None:
        trading, trading_facts = checks.over_trading(backtest)
        drawdown = checks.drawdown_vs_return(backtest["metrics"])
    bars = backtest.get("bars_count") if backtest else None
    fitting, fitting_facts = checks.overfitting(grid, strategy["params"], bars)
    sections = {
        "look_ahead": _section(code["look_ahead"], None, True),
        "position_limits": _section(
            code["position_limits"], {"evidence": code["limit_evidence"]}, True
        ),
        "over_trading": _section(trading, trading_facts, finished),
        "overfitting": _section(fitting, fitting_facts, True),
        "drawdown_vs_return": _section(
            drawdown, backtest["metrics"] if finished and backtest else None, finished
        ),
    }
    found = [*code["look_ahead"], *code["position_limits"], *trading, *fitting, *drawdown]
    warnings = _sorted(found)
    return {
        "summary": _summary(strategy, backtest, warnings),
        "strengths": _strengths(code, backtest if finished else None, sections),
        "risks": [w.message for w in warnings if w.severity in {"high", "medium"}],
        "warnings": [w.as_dict() for w in warnings],
        "suggestions": list(dict.fromkeys(w.suggestion for w in warnings))
        or [
            "No check found a problem: confirm the result on a later period (out of sample) "
            "before trusting it."
        ],
        "checks": sections,
    }


def _summary(
    strategy: dict[str, Any], backtest: dict[str, Any] | None, warnings: list[Finding]
) -> str:
    high = sum(1 for w in warnings if w.severity == "high")
    parts = [
        f"Strategy {strategy['name']!r} ({strategy['api']} API, version {strategy['version']}): "
        f"{len(warnings)} warning(s), {high} serious."
    ]
    if backtest is None:
        parts.append("No backtest was given, so only the code and any parameter grid were checked.")
    elif backtest["status"] != Status.FINISHED:
        parts.append(
            f"Backtest {backtest['backtest_id']} is {backtest['status']}: its results are not "
            "checked yet."
        )
    else:
        m = backtest["metrics"]
        parts.append(
            f"Backtest {backtest['backtest_id']} on {', '.join(backtest['symbols'])} from "
            f"{backtest['start_date']} to {backtest['end_date']}: total return "
            f"{_pct(m.get('total_return'))}, annual {_pct(m.get('annual_return'))}, max drawdown "
            f"{_pct(m.get('max_drawdown'))}, Sharpe {_num(m.get('sharpe_ratio'))}, "
            f"{m.get('trades_count') or 0} fills."
        )
    return " ".join(parts)


def _strengths(
    code: dict[str, Any], backtest: dict[str, Any] | None, sections: dict[str, Any]
) -> list[str]:
    found: list[str] = []
    if not any(f.severity in {"high", "medium"} for f in code["look_ahead"]):
        found.append("No look-ahead pattern found in the code.")
    if code["limit_evidence"] and not code["position_limits"]:
        found.append("Position sizes are bounded: " + "; ".join(code["limit_evidence"]) + ".")
    if backtest is not None:
        m = backtest["metrics"]
        if (m.get("sharpe_ratio") or 0) >= 1:
            found.append(f"A Sharpe ratio of {m['sharpe_ratio']:.2f} over the run.")
        if (m.get("calmar_ratio") or 0) >= 1:
            found.append(
                f"Annual return exceeds the worst drawdown (Calmar {m['calmar_ratio']:.2f})."
            )
        bench = m.get("benchmark_return")
        if bench is not None and (m.get("total_return") or 0) > bench:
            found.append("It beat its benchmark over the period.")
        if (m.get("win_rate") or 0) > 0.5 and (m.get("profit_loss_ratio") or 0) > 1:
            found.append("It wins more often than it loses, and wins more than it loses.")
        if sections["over_trading"]["status"] == "pass":
            found.append("Trading frequency and costs look reasonable for the result.")
    if sections["overfitting"]["status"] == "pass" and sections["overfitting"]["facts"].get(
        "grid_id"
    ):
        found.append("The parameter grid shows no sign of a lucky, isolated optimum.")
    return found


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def report_text(report: dict[str, Any]) -> str:
    """The offline analyst's narrative of a report: the summary, then what matters most."""
    lines = [report["summary"]]
    if report["strengths"]:
        lines.append("Strengths: " + " ".join(report["strengths"]))
    if report["risks"]:
        lines.append("Risks: " + "; ".join(report["risks"][:5]) + ".")
    lines.append("Next: " + " ".join(report["suggestions"][:3]))
    return "\n\n".join(lines)
