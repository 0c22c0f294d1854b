"""AI assistant endpoints (API.md "AI assistant"): thin views over ai.service.

`POST .../messages?stream=true` answers with server-sent events: `message` (yours, stored),
`delta` (text as it is written), `tool_call` and `tool_result`, then `done` with the same body
as the JSON reply; a failure after the stream has started is an `error` event in the API's
error shape (before that, it is an ordinary error response with its status).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Generator, Iterator
from typing import Any

from flask import Response, stream_with_context
from flask_smorest import Api
from sqlalchemy.orm import Session

from quantdesk.ai import quota, service
from quantdesk.ai.chat import Event, TurnResult
from quantdesk.ai.schemas import (
    AnalyzeStrategyIn,
    ChatMessageIn,
    ChatMessageOut,
    ChatReplyOut,
    ChatSendArgs,
    ConversationCreateIn,
    ConversationDetailOut,
    ConversationListArgs,
    ConversationOut,
    InvestmentAdviceIn,
    InvestmentAdviceOut,
    StrategyAnalysisOut,
)
from quantdesk.auth.models import User
from quantdesk.auth.tokens import current_user, login_required
from quantdesk.errors import APIError
from quantdesk.extensions import Extensions, current_extensions
from quantdesk.logs import request_id_var
from quantdesk.openapi import BEARER, ApiBlueprint
from quantdesk.schemas import page_of, paginate
from quantdesk.web import requires_json

log = logging.getLogger(__name__)

blp = ApiBlueprint(
    "ai",
    __name__,
    url_prefix="/api/ai",
    description="The AI assistant: conversations with tools over your data, strategy analysis, "
    "investment information (DeepSeek or any OpenAI-compatible model; offline analyst otherwise)",
)
STREAM_DOC = {
    "200": {
        "description": "JSON (ChatReplyOut), or with ?stream=true text/event-stream: events "
        "`message`, `delta`, `tool_call`, `tool_result`, then `done` (a ChatReplyOut) or `error`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


class _LimiterCounter:
    """The limiter's storage, looked up when a request is counted: Flask-Limiter has none while
    rate limits are off (RATELIMIT_ENABLED=False), and the quota then counts nothing."""

    def __init__(self, ext: Extensions) -> None:
        self._ext = ext

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        storage: quota.Counter = self._ext.limiter.storage
        return storage.incr(key, expiry, amount)


def _counter(ext: Extensions) -> quota.Counter:
    return _LimiterCounter(ext)


@blp.get("/conversations")
@login_required()
@blp.arguments(ConversationListArgs, location="query")
@blp.response(200, page_of(ConversationOut))
@blp.doc(security=BEARER)
def list_conversations(args: dict[str, Any]) -> Any:
    """Own conversations, the most recently active first; `q` searches titles."""
    session = current_extensions().db.session
    stmt = service.list_conversations(session, user=current_user(), query=args.get("q"))
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.post("/conversations")
@login_required()
@requires_json
@blp.arguments(ConversationCreateIn)
@blp.response(201, ConversationOut)
@blp.doc(security=BEARER)
def create_conversation(body: dict[str, Any]) -> Any:
    """Start a conversation, optionally about one of your strategies or backtests."""
    return service.create_conversation(current_extensions().db.session, user=current_user(), **body)


@blp.get("/conversations/<int:conversation_id>")
@login_required()
@blp.response(200, ConversationDetailOut)
@blp.doc(security=BEARER)
def get_conversation(conversation_id: int) -> Any:
    """A conversation with every message: yours, the assistant's, its tool calls and results."""
    session = current_extensions().db.session
    conversation = service.get_conversation(
        session, user=current_user(), conversation_id=conversation_id
    )
    messages = service.conversation_messages(session, conversation=conversation)
    return {
        **{key: getattr(conversation, key) for key in ConversationOut().fields},
        "messages": messages,
    }


@blp.delete("/conversations/<int:conversation_id>")
@login_required()
@blp.response(204)
@blp.doc(security=BEARER)
def delete_conversation(conversation_id: int) -> None:
    """Delete a conversation and its messages."""
    service.delete_conversation(
        current_extensions().db.session, user=current_user(), conversation_id=conversation_id
    )


def reply_body(conversation_id: int, ext: Extensions, result: TurnResult) -> dict[str, Any]:
    """The JSON reply of a turn (and the `done` event's data)."""
    responses = result.responses

    def total(name: str) -> int | None:
        values = [getattr(r, name) for r in responses if getattr(r, name) is not None]
        return sum(values) if values else None

    last = responses[-1]
    return {
        "conversation_id": conversation_id,
        "offline": last.offline,
        "model": last.model,
        "message": result.user_message,
        "reply": result.reply,
        "messages": result.messages,
        "usage": {
            "model": last.model,
            "offline": last.offline,
            "tokens_in": total("tokens_in"),
            "tokens_out": total("tokens_out"),
            "latency_ms": sum(r.latency_ms for r in responses),
            "finish_reason": last.finish_reason,
            "calls": len(responses),
        },
        "context": {
            "history_messages": result.history_messages,
            "trimmed_messages": result.trimmed_messages,
            "history_tokens": result.history_tokens,
            "token_budget": ext.settings.AI_HISTORY_TOKEN_BUDGET,
        },
    }


def sse(event: str, data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {text}\n\n"


def _event_text(event: Event, conversation_id: int, ext: Extensions) -> str:
    if event.name == "done":
        body = ChatReplyOut().dump(reply_body(conversation_id, ext, event.data["result"]))
        return sse("done", body)
    if event.name == "tool_call":
        call = event.data["call"]
        return sse("tool_call", {**call, "message_id": event.data["message"].id})
    if "message" in event.data:
        return sse(event.name, {"message": ChatMessageOut().dump(event.data["message"])})
    return sse(event.name, event.data)


def _stream(
    first: Event,
    events: Generator[Event, None, None],
    conversation_id: int,
    ext: Extensions,
    *,
    session: Session,
    request_id: str,
) -> Iterator[str]:
    """The SSE text of a turn; it owns `session` (the request's own ends when the view returns)."""
    token = request_id_var.set(request_id)
    try:
        for event in itertools.chain([first], events):
            yield _event_text(event, conversation_id, ext)
    except APIError as exc:
        error = {"code": exc.code, "message": exc.message, "details": exc.details}
        yield sse("error", {"error": error})
    except Exception:
        log.exception("AI message stream failed")
        error = {
            "code": "internal_error",
            "message": "Internal server error. Quote the request id when reporting it.",
            "details": {"request_id": request_id_var.get()},
        }
        yield sse("error", {"error": error})
    finally:
        events.close()  # a client that went away stops the turn (and its model stream)
        session.close()
        request_id_var.reset(token)


@blp.post("/conversations/<int:conversation_id>/messages")
@login_required()
@requires_json
@blp.arguments(ChatSendArgs, location="query")
@blp.arguments(ChatMessageIn)
@blp.response(200, ChatReplyOut)
@blp.doc(security=BEARER, responses=STREAM_DOC)
def send_message(args: dict[str, Any], body: dict[str, Any], conversation_id: int) -> Any:
    """Send a message: the reply as JSON, or as server-sent events with `?stream=true`."""
    ext = current_extensions()
    session, user, counter = ext.db.session, current_user(), _counter(ext)
    if not args["stream"]:
        result = service.reply(
            session,
            runtime=ext,
            counter=counter,
            user=user,
            conversation_id=conversation_id,
            content=body["content"],
        )
        return reply_body(conversation_id, ext, result)
    # The stream outlives the request's session (closed when the view returns): it gets its own,
    # and the request's is closed first, as the notification stream does.
    user_id = user.id
    session.close()
    own = ext.db.session_factory()
    events = service.send_message(
        own,
        runtime=ext,
        counter=counter,
        user=own.get(User, user_id) or user,
        conversation_id=conversation_id,
        content=body["content"],
        stream=True,
    )
    try:
        first = next(events)  # 404, 429 and up-front provider errors are ordinary responses
    except BaseException:
        own.close()
        raise
    body_text = _stream(
        first,
        events,
        conversation_id,
        ext,
        session=own,
        request_id=request_id_var.get(),
    )
    return Response(
        stream_with_context(body_text),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@blp.post("/analyze-strategy")
@login_required()
@requires_json
@blp.arguments(AnalyzeStrategyIn)
@blp.response(200, StrategyAnalysisOut)
@blp.doc(security=BEARER)
def analyze_strategy(body: dict[str, Any]) -> Any:
    """Checks of a strategy (and one of its backtests) with a summary, risks and suggestions."""
    ext = current_extensions()
    return service.analyze_strategy(
        ext.db.session,
        runtime=ext,
        counter=_counter(ext),
        user=current_user(),
        strategy_id=body["strategy_id"],
        backtest_id=body.get("backtest_id"),
    )


@blp.post("/investment-advice")
@login_required()
@requires_json
@blp.arguments(InvestmentAdviceIn)
@blp.response(200, InvestmentAdviceOut)
@blp.doc(security=BEARER)
def investment_advice(body: dict[str, Any]) -> Any:
    """Per symbol: recent trend, indicator readings, risk notes and a disclaimer."""
    ext = current_extensions()
    return service.investment_advice(
        ext.db.session,
        runtime=ext,
        counter=_counter(ext),
        user=current_user(),
        symbols=body["symbols"],
        horizon=body["horizon"],
    )


def register_routes(api: Api) -> None:
    api.register_blueprint(blp)
