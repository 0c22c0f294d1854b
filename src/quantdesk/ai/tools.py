"""The assistant's tools: platform functions a model may call, as the requesting user only.

Each tool is a JSON-schema'd function over the same services the HTTP API uses (market data,
indicators, strategies, backtests), called with the user of the conversation, so a model can
read or start nothing the user could not through the API: another user's strategy is a "not
found" here too. Results are compact JSON (capped), and failures are results as well (an error
object the model can read), never exceptions out of the conversation.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from quantdesk.ai import advice, analysis
from quantdesk.ai.checks import code_checks
from quantdesk.auth.models import User
from quantdesk.backtests import service as backtests
from quantdesk.errors import APIError, Invalid
from quantdesk.market import service as market
from quantdesk.market import symbols as sym
from quantdesk.market.analytics import Adjust
from quantdesk.market.models import Stock
from quantdesk.notifications.delivery import Runtime
from quantdesk.strategies import service as strategies

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 12_000
MAX_HISTORY_BARS = 120
DEFAULT_CAPITAL = 1_000_000.0
# A-share codes (with or without the exchange) and ticker-like capitals, also next to CJK text.
_SYMBOLISH = re.compile(r"(?<![0-9A-Za-z.])(\d{6}(?:\.[A-Za-z]{2})?|[A-Z]{1,5})(?![0-9A-Za-z])")


@dataclass
class ToolContext:
    """Who the tools act for, and the app's services (tasks for a started backtest)."""

    session: Session
    user: User
    runtime: Runtime


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[..., Any]

    def spec(self) -> dict[str, Any]:
        """The OpenAI `tools` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: dict[str, Any]

    @property
    def text(self) -> str:
        """The result as the JSON text a `tool` message carries (capped)."""
        text = json.dumps(self.result, ensure_ascii=False, default=str, separators=(",", ":"))
        if len(text) > MAX_RESULT_CHARS:
            text = text[: MAX_RESULT_CHARS - 40] + '..."} (result cut: too long)'
        return text


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


SYMBOL = {"type": "string", "description": "e.g. 600519.SH, 000001.SZ, AAPL"}
DATE = {"type": "string", "description": "YYYY-MM-DD"}


# ---------------------------------------------------------------- the functions


def search_stocks(ctx: ToolContext, *, query: str) -> dict[str, Any]:
    rows = ctx.session.scalars(market.search_stocks(ctx.session, query=query).limit(10))
    return {
        "items": [
            {
                "symbol": s.symbol,
                "name": s.name,
                "exchange": s.exchange,
                "market": s.market,
                "kind": s.kind,
                "sector": s.sector,
                "last_date": s.last_date,
                "last_close": s.last_close,
            }
            for s in rows
        ]
    }


def get_stock(ctx: ToolContext, *, symbol: str) -> dict[str, Any]:
    stock = market.get_stock(ctx.session, symbol)
    facts = {
        "symbol": stock.symbol,
        "name": stock.name,
        "exchange": stock.exchange,
        "board": stock.board,
        "market": stock.market,
        "kind": stock.kind,
        "sector": stock.sector,
        "industry": stock.industry,
        "currency": stock.currency,
        "listed_on": stock.listed_on,
        "is_st": stock.is_st,
        "first_date": stock.first_date,
        "last_date": stock.last_date,
    }
    return {**facts, "latest": market.latest_price(ctx.session, symbol=stock.symbol)}


def get_price_history(
    ctx: ToolContext, *, symbol: str, days: int = 60, adjust: str = "qfq"
) -> dict[str, Any]:
    stock = market.get_stock(ctx.session, symbol)
    days = max(2, min(int(days), MAX_HISTORY_BARS))
    end = stock.last_date
    start = end - dt.timedelta(days=days * 2 + 15) if end else None
    text = market.history_json(
        ctx.session, symbol=stock.symbol, start=start, end=end, adjust=Adjust(adjust)
    )
    bars = json.loads(text)["bars"][-days:]
    keep = ("date", "open", "high", "low", "close", "volume", "change_pct", "suspended")
    rows = [{k: bar[k] for k in keep} for bar in bars]
    closes = [bar["close"] for bar in bars if not bar["suspended"]]
    summary: dict[str, Any] = {"bars": len(rows)}
    if len(closes) >= 2:
        summary.update(
            first_date=rows[0]["date"],
            last_date=rows[-1]["date"],
            change=round(closes[-1] / closes[0] - 1.0, 4),
            high=max(bar["high"] for bar in bars),
            low=min(bar["low"] for bar in bars),
            up_days=sum(1 for bar in bars if (bar["change_pct"] or 0) > 0),
            down_days=sum(1 for bar in bars if (bar["change_pct"] or 0) < 0),
        )
    return {"symbol": stock.symbol, "adjust": adjust, "summary": summary, "bars": rows}


def compute_indicators(ctx: ToolContext, *, symbol: str, horizon: str = "medium") -> dict[str, Any]:
    view = advice.symbol_view(ctx.session, symbol=symbol, horizon=horizon)
    view.pop("disclaimer", None)
    return view


def list_strategies(ctx: ToolContext) -> dict[str, Any]:
    stmt = strategies.list_strategies(ctx.session, user=ctx.user).limit(50)
    return {
        "items": [
            {
                "strategy_id": s.id,
                "name": s.name,
                "api": s.api,
                "status": s.status,
                "version": s.version,
                "category": s.category,
                "params": s.params,
            }
            for s in ctx.session.scalars(stmt)
        ]
    }


def get_strategy(ctx: ToolContext, *, strategy_id: int) -> dict[str, Any]:
    strategy = strategies.get_strategy(ctx.session, user=ctx.user, strategy_id=strategy_id)
    facts = analysis.strategy_facts(strategy, code_chars=8000)
    found = code_checks(strategy.code, strategy.api, strategy.params)
    facts["code_warnings"] = [
        f.as_dict() for f in [*found["look_ahead"], *found["position_limits"]]
    ]
    return facts


def list_backtests(ctx: ToolContext, *, strategy_id: int | None = None) -> dict[str, Any]:
    stmt = backtests.list_backtests(ctx.session, user=ctx.user, strategy_id=strategy_id).limit(20)
    items = []
    for b in ctx.session.scalars(stmt):
        item: dict[str, Any] = {
            "backtest_id": b.id,
            "name": b.name,
            "strategy_id": b.strategy_id,
            "kind": b.kind,
            "status": b.status,
            "symbols": b.symbols,
            "start_date": b.start_date,
            "end_date": b.end_date,
        }
        if b.result is not None:
            item["total_return"] = b.result.total_return
            item["sharpe_ratio"] = b.result.sharpe_ratio
            item["max_drawdown"] = b.result.max_drawdown
        items.append(item)
    return {"items": items}


def get_backtest(ctx: ToolContext, *, backtest_id: int) -> dict[str, Any]:
    backtest = backtests.get_backtest(ctx.session, user=ctx.user, backtest_id=backtest_id)
    return analysis.backtest_facts(ctx.session, user=ctx.user, backtest=backtest)


def start_backtest(
    ctx: ToolContext,
    *,
    strategy_id: int,
    symbols: list[str],
    start_date: str | None = None,
    end_date: str | None = None,
    initial_capital: float = DEFAULT_CAPITAL,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    first = market.get_stock(ctx.session, symbols[0]) if symbols else None
    try:
        end = dt.date.fromisoformat(end_date) if end_date else (first.last_date if first else None)
        start = dt.date.fromisoformat(start_date) if start_date else None
    except ValueError as exc:
        raise Invalid("Dates must be YYYY-MM-DD.", details={"dates": [str(exc)]}) from None
    if end is None:
        raise Invalid("Give end_date.", details={"end_date": ["Missing data."]})
    start = start or end - dt.timedelta(days=365)
    backtest = backtests.create_backtest(
        ctx.session,
        runtime=ctx.runtime,
        user=ctx.user,
        strategy_id=strategy_id,
        symbols=symbols,
        start_date=start,
        end_date=end,
        initial_capital=float(initial_capital),
        params=params,
    )
    return {
        "backtest_id": backtest.id,
        "name": backtest.name,
        "status": backtest.status,
        "symbols": backtest.symbols,
        "start_date": backtest.start_date,
        "end_date": backtest.end_date,
        "initial_capital": backtest.initial_capital,
        "params": backtest.params,
        "note": "Backtests run in the background: read it with get_backtest once finished.",
    }


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "search_stocks",
            "Find stocks and indices by symbol prefix or part of the name.",
            _schema({"query": {"type": "string", "minLength": 1}}, ("query",)),
            search_stocks,
        ),
        Tool(
            "get_stock",
            "A stock's listing facts and its latest daily bar with change and price limits.",
            _schema({"symbol": SYMBOL}, ("symbol",)),
            get_stock,
        ),
        Tool(
            "get_price_history",
            "The last `days` daily bars of a symbol (at most 120) and a summary of them.",
            _schema(
                {
                    "symbol": SYMBOL,
                    "days": {"type": "integer", "minimum": 2, "maximum": MAX_HISTORY_BARS},
                    "adjust": {"type": "string", "enum": ["qfq", "hfq", "none"]},
                },
                ("symbol",),
            ),
            get_price_history,
        ),
        Tool(
            "compute_indicators",
            "Trend, indicator readings (RSI, MACD, Bollinger, KDJ, ATR) and risk notes of a "
            "symbol as of its latest bar; horizon short (20 bars), medium (60) or long (250).",
            _schema(
                {"symbol": SYMBOL, "horizon": {"type": "string", "enum": list(advice.HORIZONS)}},
                ("symbol",),
            ),
            compute_indicators,
        ),
        Tool(
            "list_strategies",
            "The user's own strategies: id, name, API, status, version, params.",
            _schema({}),
            list_strategies,
        ),
        Tool(
            "get_strategy",
            "One of the user's strategies: code, params, and warnings of static checks "
            "(look-ahead patterns, missing position limits).",
            _schema({"strategy_id": {"type": "integer"}}, ("strategy_id",)),
            get_strategy,
        ),
        Tool(
            "list_backtests",
            "The user's latest backtests (optionally of one strategy) with headline metrics.",
            _schema({"strategy_id": {"type": "integer"}}),
            list_backtests,
        ),
        Tool(
            "get_backtest",
            "One of the user's backtests: config, status, error, and once finished its metrics, "
            "cost summary, refused orders with their reasons explained, and trades.",
            _schema({"backtest_id": {"type": "integer"}}, ("backtest_id",)),
            get_backtest,
        ),
        Tool(
            "start_backtest",
            "Start a backtest of one of the user's strategies on stored daily bars. Dates "
            "default to the year up to the first symbol's latest bar; capital to 1,000,000.",
            _schema(
                {
                    "strategy_id": {"type": "integer"},
                    "symbols": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 1,
                        "maxItems": 20,
                    },
                    "start_date": DATE,
                    "end_date": DATE,
                    "initial_capital": {"type": "number", "exclusiveMinimum": 0},
                    "params": {"type": "object"},
                },
                ("strategy_id", "symbols"),
            ),
            start_backtest,
        ),
    )
}


def specs() -> list[dict[str, Any]]:
    return [tool.spec() for tool in TOOLS.values()]


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "array": (list,),
    "object": (dict,),
}


def _problem(rule: dict[str, Any], given: Any) -> str | None:
    """What is wrong with one argument against its JSON-schema rule, if anything."""
    kind = rule["type"]
    if isinstance(given, bool) or not isinstance(given, _TYPES[kind]):
        return f"Must be of type {kind}."
    value: Any = given
    if "enum" in rule and value not in rule["enum"]:
        return f"One of: {', '.join(rule['enum'])}."
    if "minimum" in rule and value < rule["minimum"]:
        return f"At least {rule['minimum']}."
    if "maximum" in rule and value > rule["maximum"]:
        return f"At most {rule['maximum']}."
    if "exclusiveMinimum" in rule and value <= rule["exclusiveMinimum"]:
        return f"More than {rule['exclusiveMinimum']}."
    if kind == "array" and not all(isinstance(v, str) for v in value):
        return "Must be a list of strings."
    if kind == "array" and not rule.get("minItems", 0) <= len(value) <= rule.get("maxItems", 20):
        return "Give between 1 and 20 items."
    if kind == "string" and not value.strip():
        return "Must not be empty."
    return None


def _check_arguments(tool: Tool, arguments: Any) -> dict[str, Any]:
    """The arguments against the tool's schema (types, required, enums, bounds)."""
    if not isinstance(arguments, dict):
        raise Invalid("The arguments must be a JSON object.")
    schema = tool.parameters
    problems: dict[str, list[str]] = {}
    for name in schema["required"]:
        if name not in arguments:
            problems[name] = ["Missing data."]
    for name, value in arguments.items():
        rule = schema["properties"].get(name)
        if rule is None:
            problems[name] = ["Unknown field."]
        elif value is not None or name in schema["required"]:
            problem = _problem(rule, value)
            if problem:
                problems[name] = [problem]
    if problems:
        raise Invalid("The arguments do not fit the tool.", details=problems)
    return {k: v for k, v in arguments.items() if v is not None}


def run_tool(ctx: ToolContext, name: str, arguments: str) -> Outcome:
    """Run one tool call; any failure is an `ok: false` outcome with the API's error shape."""
    tool = TOOLS.get(name)
    try:
        if tool is None:
            raise Invalid(f"There is no tool {name!r}.", details={"tools": list(TOOLS)})
        try:
            parsed = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            raise Invalid("The arguments are not JSON.") from None
        result = tool.run(ctx, **_check_arguments(tool, parsed))
        return Outcome(True, json.loads(json.dumps(result, default=str)))
    except APIError as exc:
        ctx.session.rollback()
        error = {"code": exc.code, "message": exc.message, "details": exc.details}
        return Outcome(False, {"error": error})
    except Exception:
        log.exception("AI tool %s failed", name)
        ctx.session.rollback()
        error = {"code": "internal_error", "message": "The tool failed.", "details": {}}
        return Outcome(False, {"error": error})


def find_symbols(session: Session, text: str, *, limit: int = 3) -> list[str]:
    """Stored symbols a text mentions: by code (600519, 600519.SH, AAPL) or by name."""
    found: list[str] = []
    tokens = _SYMBOLISH.findall(text)
    for token in list(dict.fromkeys(tokens))[:20]:
        canonical = sym.normalise(token)
        if canonical and canonical not in found and session.get(Stock, canonical) is not None:
            found.append(canonical)
    if len(found) < limit:
        named = session.scalars(
            select(Stock.symbol)
            .where(literal(text).contains(Stock.name), Stock.name != "")
            .order_by(Stock.symbol)
            .limit(limit)
        )
        found += [s for s in named if s not in found]
    return found[:limit]
