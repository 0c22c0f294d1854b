"""The offline analyst: the embedded default's model, answering by fixed rules with no network.

It plays a model's part in the same conversation loop: from the user's words it picks tool
calls (a symbol, "strategy 12", "backtest 34", "run a backtest of strategy 12 on 600519.SH"),
and once the tools have answered it writes the reply from their results: the deterministic
views, checks and explanations the tools return. Every answer says it is the offline analyst.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from quantdesk.ai.advice import DISCLAIMER, view_text
from quantdesk.ai.llm import Completion, ToolCall

NAME = "offline-analyst"
BANNER = (
    "[Offline analyst] No AI model is configured on this server (DEEPSEEK_API_KEY is empty), "
    "so this answer is computed from your data by fixed rules."
)
HELP = (
    "Ask me about a symbol (600519.SH, AAPL), one of your strategies ('strategy 12'), one of "
    "your backtests ('backtest 34', including why orders were refused), or say 'run a backtest "
    "of strategy 12 on 600519.SH from 2020-01-01 to 2020-12-31'. 'my strategies' and 'my "
    "backtests' list them."
)
_STRATEGY = re.compile(r"(?:strateg(?:y|ies)|策略)\s*(?:#|no\.?|id)?\s*(\d+)", re.I)
_BACKTEST = re.compile(r"(?:backtests?|回测)\s*(?:#|no\.?|id)?\s*(\d+)", re.I)
_START = re.compile(
    r"\b(?:run|start|launch)\b[^.?!]*\bbacktest|(?:运行|开始|启动|跑)[^。\uff1f\uff01]*回测", re.I
)
_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
_CAPITAL = re.compile(r"(?:capital|资金|本金)\D{0,6}(\d[\d,_]*)", re.I)
MAX_CALLS = 8


def _last_user(messages: list[dict[str, Any]]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] == "user":
            return index
    return -1


class OfflineAnalyst:
    """A `ChatModel` that runs on this machine only; `find_symbols` maps text to symbols."""

    name = NAME
    offline = True

    def __init__(self, find_symbols: Callable[[str], list[str]]) -> None:
        self._find_symbols = find_symbols

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        json_output: bool = False,
    ) -> Completion:
        start = _last_user(messages)
        question = str(messages[start]["content"]) if start >= 0 else ""
        answered = [m for m in messages[start + 1 :] if m["role"] == "tool"]
        if not answered and tools:
            calls = self.plan(question)
            if calls:
                return Completion("", calls, "tool_calls")
        return Completion(self.write(messages[start + 1 :]), [], "stop")

    def stream(
        self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
    ) -> Iterator[str | Completion]:
        completion = self.complete(messages, tools=tools)
        for piece in re.findall(r"[^\n]*\n?", completion.content):
            if piece:
                yield piece
        yield completion

    def close(self) -> None:
        return None

    # ------------------------------------------------------------ reading the question

    def plan(self, question: str) -> list[ToolCall]:
        """The tool calls the question asks for, in order."""
        calls: list[tuple[str, dict[str, Any]]] = []
        strategies = [int(n) for n in dict.fromkeys(_STRATEGY.findall(question))]
        tests = [int(n) for n in dict.fromkeys(_BACKTEST.findall(question))]
        symbols = self._find_symbols(question)
        if _START.search(question) and strategies and symbols:
            arguments: dict[str, Any] = {"strategy_id": strategies[0], "symbols": symbols}
            dates = _DATE.findall(question)
            if len(dates) >= 2:
                arguments.update(start_date=min(dates[:2]), end_date=max(dates[:2]))
            capital = _CAPITAL.search(question)
            if capital:
                arguments["initial_capital"] = float(re.sub(r"[,_]", "", capital.group(1)))
            calls.append(("start_backtest", arguments))
        else:
            lowered = question.lower()
            horizon = "short" if "short" in lowered or "短" in question else "medium"
            horizon = "long" if "long" in lowered or "长期" in question else horizon
            calls += [("get_strategy", {"strategy_id": n}) for n in strategies]
            calls += [("get_backtest", {"backtest_id": n}) for n in tests]
            for symbol in symbols:
                calls.append(("get_stock", {"symbol": symbol}))
                calls.append(("compute_indicators", {"symbol": symbol, "horizon": horizon}))
            if not calls and ("strateg" in lowered or "策略" in question):
                calls.append(("list_strategies", {}))
            if not strategies and not tests and ("backtest" in lowered or "回测" in question):
                calls.append(("list_backtests", {}))
        return [
            ToolCall(f"offline_{n}", name, json.dumps(arguments))
            for n, (name, arguments) in enumerate(calls[:MAX_CALLS], start=1)
        ]

    # ------------------------------------------------------------ writing the answer

    def write(self, since_question: list[dict[str, Any]]) -> str:
        """The reply from the tool results that followed the question (or the help)."""
        calls: dict[str, str] = {}
        for message in since_question:
            for call in message.get("tool_calls") or []:
                calls[call["id"]] = call["function"]["name"]
        parts = [BANNER]
        symbols = False
        for message in since_question:
            if message["role"] != "tool":
                continue
            name = calls.get(message.get("tool_call_id", ""), "")
            try:
                result = json.loads(message["content"])
            except (TypeError, ValueError):
                result = {"error": {"message": "an unreadable tool result"}}
            symbols = symbols or name in {"get_stock", "compute_indicators"}
            parts.append(render(name, result))
        if len(parts) == 1:
            parts.append(HELP)
        if symbols:
            parts.append(DISCLAIMER)
        return "\n\n".join(part for part in parts if part)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value) * 100:+.2f}%"


def _share(value: Any) -> str:
    return "n/a" if value is None else f"{float(value) * 100:.2f}%"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):,.2f}"


def render(name: str, result: dict[str, Any]) -> str:
    """One tool result in plain sentences."""
    failure = result.get("error")
    if isinstance(failure, dict):  # a failed tool (a backtest's own `error` is text or null)
        return f"I could not run {name or 'a tool'}: {failure.get('message')}"
    renderer = _RENDERERS.get(name)
    return renderer(result) if renderer else ""


def _stock(r: dict[str, Any]) -> str:
    latest = r.get("latest") or {}
    return (
        f"{r['symbol']} {r['name']} ({r['exchange']}, {r['market']}): close "
        f"{_num(latest.get('close'))} {r['currency']} on {latest.get('date')} "
        f"({float(latest.get('change_pct') or 0):+.2f}% on the day)."
    )


def _history(r: dict[str, Any]) -> str:
    s = r["summary"]
    if s.get("bars", 0) < 2:
        return f"{r['symbol']}: too few bars stored."
    return (
        f"{r['symbol']}, last {s['bars']} bars ({s['first_date']} to {s['last_date']}): "
        f"{_pct(s['change'])}, high {_num(s['high'])}, low {_num(s['low'])}, "
        f"{s['up_days']} up and {s['down_days']} down days."
    )


def _strategy(r: dict[str, Any]) -> str:
    lines = [
        f"Strategy {r['strategy_id']} {r['name']!r}: {r['api']} API, version {r['version']}, "
        f"status {r['status']}, params {json.dumps(r['params'], ensure_ascii=False)}."
    ]
    warnings = r.get("code_warnings") or []
    if not warnings:
        lines.append("The code checks found no look-ahead pattern and no missing position limit.")
    for w in warnings:
        where = f" (line {w['line']})" if w.get("line") else ""
        lines.append(f"- [{w['severity']}] {w['message']}{where}. {w['suggestion']}")
    lines.append(
        f"POST /api/ai/analyze-strategy with strategy_id {r['strategy_id']} gives the full "
        "analysis, with a backtest_id for its results."
    )
    return "\n".join(lines)


def _backtest(r: dict[str, Any]) -> str:
    head = (
        f"Backtest {r['backtest_id']} {r['name']!r} of strategy {r['strategy_id']} on "
        f"{', '.join(r['symbols'])} from {r['start_date']} to {r['end_date']}"
    )
    if r["status"] != "finished":
        error = f" Error: {r['error']}" if r.get("error") else ""
        return f"{head} is {r['status']} ({float(r['progress']) * 100:.0f}% done).{error}"
    m, c = r["metrics"], r["cost_summary"]
    lines = [
        f"{head} finished: final value {_num(m.get('final_value'))}, total return "
        f"{_pct(m.get('total_return'))}, annual {_pct(m.get('annual_return'))}, max drawdown "
        f"{_share(m.get('max_drawdown'))}, Sharpe {_num(m.get('sharpe_ratio'))}, "
        f"{m.get('trades_count')} fills, win rate {_share(m.get('win_rate'))}.",
        f"Costs: {_num(c['total'])} in fees (commission {_num(c['commission'])}, stamp duty "
        f"{_num(c['stamp_duty'])}, transfer fee {_num(c['transfer_fee'])}) and "
        f"{_num(c['slippage'])} of slippage; {c['min_commission_fills']} fill(s) paid the "
        "minimum commission.",
    ]
    refusals = r["refusals"]
    if refusals["count"]:
        lines.append(f"{refusals['count']} order(s) were refused or trimmed:")
        for reason, count in refusals["by_reason"].items():
            lines.append(f"- {reason} x{count}: {refusals['explanations'][reason]}")
    else:
        lines.append("No order was refused or trimmed.")
    grid = r.get("grid")
    if grid and grid["rows"]:
        best = grid["rows"][0]
        lines.append(
            f"Grid of {len(grid['rows'])}+ combinations ranked by {grid['rank_by']}: the best "
            f"is {json.dumps(best['params'])} with {_num(best['score'])}."
        )
    return "\n".join(lines)


def _started(r: dict[str, Any]) -> str:
    return (
        f"Started backtest {r['backtest_id']} {r['name']!r} on {', '.join(r['symbols'])} from "
        f"{r['start_date']} to {r['end_date']} with {_num(r['initial_capital'])}: status "
        f"{r['status']}. Ask me about backtest {r['backtest_id']} once it has finished."
    )


def _strategies(r: dict[str, Any]) -> str:
    if not r["items"]:
        return "You have no strategies yet."
    rows = [f"- {s['strategy_id']}: {s['name']} ({s['api']}, {s['status']})" for s in r["items"]]
    return "Your strategies:\n" + "\n".join(rows)


def _backtests(r: dict[str, Any]) -> str:
    if not r["items"]:
        return "You have no backtests yet."
    rows = [
        f"- {b['backtest_id']}: {b['name']} ({b['status']}"
        + (f", total return {_pct(b['total_return'])}" if b.get("total_return") is not None else "")
        + ")"
        for b in r["items"]
    ]
    return "Your latest backtests:\n" + "\n".join(rows)


def _search(r: dict[str, Any]) -> str:
    return "Found: " + ", ".join(f"{s['symbol']} {s['name']}" for s in r["items"]) + "."


_RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "get_stock": _stock,
    "get_price_history": _history,
    "compute_indicators": view_text,
    "get_strategy": _strategy,
    "get_backtest": _backtest,
    "start_backtest": _started,
    "list_strategies": _strategies,
    "list_backtests": _backtests,
    "search_stocks": _search,
}
