"""AI assistant rules: conversations, messages answered with tools, strategy analysis, advice.

Plain functions over a Session, no Flask: routes, the CLI and tests call them. Every query is
filtered by the owner (another user's conversation is a 404), every tool acts as the user, and
every request counts against the user's daily AI limit. With no DEEPSEEK_API_KEY the offline
analyst answers (`model_for`), and nothing leaves the machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from quantdesk.ai import advice, analysis, llm, quota, tools
from quantdesk.ai.chat import DEFAULT_TITLE, Event, Turn, TurnResult, record_response
from quantdesk.ai.llm import ChatModel, Completion, OpenAIChatModel, ProviderFailure
from quantdesk.ai.models import AIResponse, Conversation, Message, Purpose
from quantdesk.ai.offline import OfflineAnalyst
from quantdesk.auth.models import User
from quantdesk.backtests import service as backtests
from quantdesk.backtests.grids import grid_table
from quantdesk.backtests.models import Kind
from quantdesk.errors import Invalid, NotFound
from quantdesk.market import service as market
from quantdesk.notifications.delivery import Runtime
from quantdesk.settings import Settings
from quantdesk.strategies import service as strategies

ANALYSIS_PROMPT = """You are a quantitative analyst reviewing a user's trading strategy on \
QuantDesk. You get JSON: the strategy (code, params), an optional backtest (metrics, costs, \
refused orders) and the platform's deterministic checks. Explain the strategy and its results \
to the user; build on the checks, never contradict their numbers. Answer with one JSON object: \
{"narrative": "<a few short paragraphs>", "strengths": ["..."], "risks": ["..."], \
"suggestions": ["concrete changes to the code or the test"]}."""
ADVICE_PROMPT = """You are a market analyst on QuantDesk. You get JSON: per symbol, the \
deterministic view computed from stored daily bars (trend, indicator readings, risk notes) and \
the investment horizon. Explain it plainly; never invent prices or news; this is information, \
not personal advice. Answer with one JSON object: {"overview": "<one paragraph>", \
"symbols": {"<symbol>": "<one paragraph per symbol>"}}."""
MAX_ADVICE_SYMBOLS = 10


def model_for(session: Session, settings: Settings) -> ChatModel:
    """The configured model, or the offline analyst when DEEPSEEK_API_KEY is empty."""
    if llm.api_key(settings):
        return OpenAIChatModel(settings)
    return OfflineAnalyst(lambda text: tools.find_symbols(session, text))


# ---------------------------------------------------------------- conversations


def create_conversation(
    session: Session,
    *,
    user: User,
    title: str | None = None,
    strategy_id: int | None = None,
    backtest_id: int | None = None,
) -> Conversation:
    """A new conversation, optionally about one of the user's strategies or backtests."""
    if strategy_id is not None:
        strategies.get_strategy(session, user=user, strategy_id=strategy_id)
    if backtest_id is not None:
        backtests.get_backtest(session, user=user, backtest_id=backtest_id)
    conversation = Conversation(
        user_id=user.id,
        title=(title or "").strip() or DEFAULT_TITLE,
        strategy_id=strategy_id,
        backtest_id=backtest_id,
    )
    session.add(conversation)
    session.commit()
    return conversation


def list_conversations(
    session: Session, *, user: User, query: str | None = None
) -> Select[Conversation]:
    stmt = select(Conversation).where(Conversation.user_id == user.id)
    if query:
        stmt = stmt.where(func.lower(Conversation.title).contains(query.lower(), autoescape=True))
    return stmt.order_by(Conversation.updated_at.desc(), Conversation.id.desc())


def get_conversation(session: Session, *, user: User, conversation_id: int) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.user_id != user.id:
        raise NotFound("No such conversation.")
    return conversation


def conversation_messages(session: Session, *, conversation: Conversation) -> list[Message]:
    return list(
        session.scalars(
            select(Message).where(Message.conversation_id == conversation.id).order_by(Message.id)
        )
    )


def delete_conversation(session: Session, *, user: User, conversation_id: int) -> None:
    """Delete a conversation with its messages (usage rows in ai_responses stay)."""
    session.delete(get_conversation(session, user=user, conversation_id=conversation_id))
    session.commit()


def send_message(
    session: Session,
    *,
    runtime: Runtime,
    counter: quota.Counter,
    user: User,
    conversation_id: int,
    content: str,
    stream: bool = False,
    model: ChatModel | None = None,
) -> Generator[Event, None, None]:
    """The events of answering `content` (a generator: nothing happens before the first next()).

    The first next() checks the conversation (404) and the daily limit (429) and, streaming,
    returns only once the model has started answering, so up-front provider errors surface
    before any event.
    """
    conversation = get_conversation(session, user=user, conversation_id=conversation_id)
    quota.take_request(counter, settings=runtime.settings, user_id=user.id)
    chosen = model or model_for(session, runtime.settings)
    turn = Turn(
        session,
        settings=runtime.settings,
        model=chosen,
        toolbox=tools.ToolContext(session=session, user=user, runtime=runtime),
        conversation=conversation,
        content=content,
        stream=stream,
    )
    try:
        yield from turn.events()
    except ProviderFailure as failure:
        raise failure.error from None
    finally:
        chosen.close()


def reply(
    session: Session,
    *,
    runtime: Runtime,
    counter: quota.Counter,
    user: User,
    conversation_id: int,
    content: str,
    model: ChatModel | None = None,
) -> TurnResult:
    """Answer `content` in one go: the stored messages of the turn and its model calls."""
    result: TurnResult | None = None
    for event in send_message(
        session,
        runtime=runtime,
        counter=counter,
        user=user,
        conversation_id=conversation_id,
        content=content,
        model=model,
    ):
        if event.name == "done":
            result = event.data["result"]
    assert result is not None  # noqa: S101  (a turn ends with its done event)
    return result


# ---------------------------------------------------------------- narratives


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object a model was asked for; its text as the narrative when it is not one."""
    candidates = [text]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            parsed = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            return parsed
    return {}


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v) for v in value if isinstance(v, str | int | float)]


def _narrate(
    session: Session,
    *,
    model: ChatModel,
    user: User,
    purpose: Purpose,
    prompt: str,
    facts: dict[str, Any],
    offline_text: str,
) -> tuple[dict[str, Any], AIResponse]:
    """The model's JSON narrative of `facts` (or the offline text), with its usage row."""
    started = time.perf_counter()
    if model.offline:
        completion = Completion(offline_text, finish_reason="stop")
        parsed: dict[str, Any] = {}
    else:
        messages = [
            {"role": "system", "content": prompt},
            {"role": "user", "content": json.dumps(facts, ensure_ascii=False, default=str)},
        ]
        try:
            completion = model.complete(messages, json_output=True)
        except ProviderFailure as failure:
            record_response(
                session,
                user_id=user.id,
                purpose=purpose,
                model=model,
                started=started,
                failure=failure,
            )
            session.commit()
            raise failure.error from None
        parsed = _json_object(completion.content)
    row = record_response(
        session,
        user_id=user.id,
        purpose=purpose,
        model=model,
        started=started,
        completion=completion,
    )
    session.commit()
    return parsed | {"_text": completion.content}, row


def usage(row: AIResponse) -> dict[str, Any]:
    return {
        "model": row.model,
        "offline": row.offline,
        "tokens_in": row.tokens_in,
        "tokens_out": row.tokens_out,
        "latency_ms": row.latency_ms,
        "finish_reason": row.finish_reason,
    }


def analyze_strategy(
    session: Session,
    *,
    runtime: Runtime,
    counter: quota.Counter,
    user: User,
    strategy_id: int,
    backtest_id: int | None = None,
    model: ChatModel | None = None,
) -> dict[str, Any]:
    """The deterministic analysis of a strategy (and a backtest of it) plus the narrative."""
    strategy = strategies.get_strategy(session, user=user, strategy_id=strategy_id)
    backtest = None
    if backtest_id is not None:
        backtest = backtests.get_backtest(session, user=user, backtest_id=backtest_id)
        if backtest.strategy_id != strategy.id:
            raise Invalid(
                "The backtest is of another strategy.",
                details={"backtest_id": [f"not a backtest of strategy {strategy_id}"]},
            )
    quota.take_request(counter, settings=runtime.settings, user_id=user.id)
    facts = analysis.strategy_facts(strategy)
    run = analysis.backtest_facts(session, user=user, backtest=backtest) if backtest else None
    grid: dict[str, Any] | None
    if backtest is not None and backtest.kind == Kind.GRID:
        grid = grid_table(session, user=user, grid_id=backtest.id)
    else:
        grid = analysis.latest_grid(session, user=user, strategy_id=strategy.id)
    report = analysis.strategy_report(facts, run, grid)
    chosen = model or model_for(session, runtime.settings)
    try:
        parsed, row = _narrate(
            session,
            model=chosen,
            user=user,
            purpose=Purpose.ANALYZE_STRATEGY,
            prompt=ANALYSIS_PROMPT,
            facts={"strategy": facts, "backtest": run, "checks": report},
            offline_text=analysis.report_text(report),
        )
    finally:
        chosen.close()
    return {
        "strategy_id": strategy.id,
        "backtest_id": backtest_id,
        "offline": chosen.offline,
        "model": chosen.name,
        **report,
        "narrative": {
            "source": "offline" if chosen.offline else "model",
            "text": str(parsed.get("narrative") or parsed["_text"]),
            "strengths": _strings(parsed.get("strengths")),
            "risks": _strings(parsed.get("risks")),
            "suggestions": _strings(parsed.get("suggestions")),
        },
        "usage": usage(row),
        "disclaimer": advice.DISCLAIMER,
    }


def investment_advice(
    session: Session,
    *,
    runtime: Runtime,
    counter: quota.Counter,
    user: User,
    symbols: list[str],
    horizon: str = advice.DEFAULT_HORIZON,
    model: ChatModel | None = None,
) -> dict[str, Any]:
    """Per symbol: trend, indicator readings, risk notes, a disclaimer, and the narrative."""
    wanted: list[str] = []
    unknown: list[str] = []
    for raw in symbols:
        try:
            stock = market.get_stock(session, raw)
        except NotFound:
            unknown.append(raw)
            continue
        if stock.symbol not in wanted:
            wanted.append(stock.symbol)
    if unknown:
        raise Invalid("Unknown symbols.", details={"symbols": [f"unknown: {', '.join(unknown)}"]})
    if len(wanted) > MAX_ADVICE_SYMBOLS:
        raise Invalid("Too many symbols.", details={"symbols": [f"at most {MAX_ADVICE_SYMBOLS}"]})
    quota.take_request(counter, settings=runtime.settings, user_id=user.id)
    views = [advice.symbol_view(session, symbol=s, horizon=horizon) for s in wanted]
    texts = {view["symbol"]: advice.view_text(view) for view in views}
    chosen = model or model_for(session, runtime.settings)
    try:
        parsed, row = _narrate(
            session,
            model=chosen,
            user=user,
            purpose=Purpose.INVESTMENT_ADVICE,
            prompt=ADVICE_PROMPT,
            facts={"horizon": horizon, "symbols": views},
            offline_text="\n\n".join(texts.values()),
        )
    finally:
        chosen.close()
    per_symbol = parsed.get("symbols") if isinstance(parsed.get("symbols"), dict) else {}
    for view in views:
        told = per_symbol.get(view["symbol"]) if per_symbol else None
        view["narrative"] = str(told) if told and not chosen.offline else texts[view["symbol"]]
    if chosen.offline:
        overview = parsed["_text"]
    else:
        overview = str(parsed.get("overview") or ("" if per_symbol else parsed["_text"]))
    return {
        "horizon": horizon,
        "offline": chosen.offline,
        "model": chosen.name,
        "symbols": views,
        "narrative": {"source": "offline" if chosen.offline else "model", "text": overview},
        "usage": usage(row),
        "disclaimer": advice.DISCLAIMER,
    }
