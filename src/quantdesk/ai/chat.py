"""One turn of a conversation: history to a token budget, model calls, tool calls, and storage.

A turn sends the system prompt, as much recent history as AI_HISTORY_TOKEN_BUDGET allows and
the new message; runs the tools the model asks for (as the user) for up to AI_MAX_TOOL_ROUNDS
rounds; and stores every message as it happens. The user's message is committed only once the
model's first answer has started, so a provider that fails up front (timeout, rate limit, bad
key) leaves no half turn behind, only its `ai_responses` row; after that, what happened stays
(a started backtest is real), and a later failure ends the turn with the error.

Events (`Event`) are what a streaming client receives as server-sent events; the JSON reply
is the same turn with the events consumed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.ai import tools
from quantdesk.ai.llm import ChatModel, Completion, ProviderFailure
from quantdesk.ai.models import AIResponse, Conversation, Message, Purpose, Role
from quantdesk.db import utcnow
from quantdesk.settings import Settings

DEFAULT_TITLE = "New conversation"
HISTORY_LOOKBACK = 400  # newest messages read before trimming to the budget
TITLE_CHARS = 60
SYSTEM_PROMPT = """You are QuantDesk's assistant, inside a platform where users write Python \
trading strategies, backtest them on A-share and US daily bars with realistic market rules \
(T+1, price limits, lot sizes, dated commissions and stamp duty), and paper-trade them.
Ground every fact in the tools: look up stocks, their history and indicators, and the user's \
own strategies and backtests (with refused orders and costs, to explain why a trade did not \
happen). Start a backtest only when the user asks for one. Never invent numbers.
Be concise. Answer in the user's language. You give information and education, not personal \
investment advice: say so when asked what to buy or sell.
Today is {today} (UTC).{context}"""


def estimate_tokens(text: str) -> int:
    """Tokens of `text`, estimated offline: about 0.3 per ASCII and 0.6 per other character.

    DeepSeek's own rule of thumb (api-docs.deepseek.com, "Token & Token Usage"); no tokenizer
    and no network, so trimming works the same for any endpoint.
    """
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return math.ceil(0.3 * ascii_chars + 0.6 * (len(text) - ascii_chars))


def message_tokens(message: dict[str, Any]) -> int:
    """A message's tokens with its role and tool calls, plus a few for the framing."""
    text = str(message.get("content") or "")
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"])
    return estimate_tokens(text) + 4


def as_openai(message: Message) -> dict[str, Any]:
    """A stored message in the chat-completions format."""
    if message.role == Role.TOOL:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in message.tool_calls
        ]
    return out


def history_window(messages: list[Message], budget: int) -> tuple[list[Message], int]:
    """The newest messages within `budget` tokens, and how many older ones were left out.

    An assistant message with tool calls and the tool results that answer it are kept or left
    out together (a tool result without its call is refused by chat-completions APIs).
    """
    groups: list[list[Message]] = []
    for message in messages:
        if message.role == Role.TOOL and groups:
            groups[-1].append(message)
        else:
            groups.append([message])
    kept: list[list[Message]] = []
    used = 0
    for group in reversed(groups):
        cost = sum(m.tokens for m in group)
        if used + cost > budget:
            break
        kept.append(group)
        used += cost
    window = [m for group in reversed(kept) for m in group]
    while window and window[0].role == Role.TOOL:  # only ever a partial group
        window.pop(0)
    return window, len(messages) - len(window)


def record_response(
    session: Session,
    *,
    user_id: int,
    purpose: Purpose,
    model: ChatModel,
    started: float,
    conversation_id: int | None = None,
    completion: Completion | None = None,
    failure: ProviderFailure | None = None,
    streamed: bool = False,
) -> AIResponse:
    row = AIResponse(
        user_id=user_id,
        conversation_id=conversation_id,
        purpose=purpose,
        model=model.name,
        offline=model.offline,
        streamed=streamed,
        latency_ms=round((time.perf_counter() - started) * 1000),
        tokens_in=completion.tokens_in if completion else None,
        tokens_out=completion.tokens_out if completion else None,
        finish_reason=completion.finish_reason if completion else None,
        error_code=failure.error.code if failure else None,
        error=failure.internal if failure else None,
    )
    session.add(row)
    return row


@dataclass
class Event:
    """One step of a turn, as a streaming client sees it."""

    name: str  # message | delta | tool_call | tool_result | done
    data: dict[str, Any]


@dataclass
class TurnResult:
    user_message: Message | None = None
    reply: Message | None = None
    messages: list[Message] = field(default_factory=list)
    responses: list[AIResponse] = field(default_factory=list)
    history_messages: int = 0
    trimmed_messages: int = 0
    history_tokens: int = 0


class Turn:
    """The answer to one user message in one conversation."""

    def __init__(
        self,
        session: Session,
        *,
        settings: Settings,
        model: ChatModel,
        toolbox: tools.ToolContext,
        conversation: Conversation,
        content: str,
        stream: bool,
    ) -> None:
        self.session = session
        self.settings = settings
        self.model = model
        self.toolbox = toolbox
        self.conversation = conversation
        self.content = content
        self.stream = stream
        self.result = TurnResult()

    def _system(self) -> dict[str, Any]:
        context = ""
        c = self.conversation
        if c.strategy_id is not None:
            context += f"\nThis conversation is about the user's strategy {c.strategy_id}."
        if c.backtest_id is not None:
            context += f"\nThis conversation is about the user's backtest {c.backtest_id}."
        today = dt.datetime.now(dt.UTC).date().isoformat()
        return {"role": "system", "content": SYSTEM_PROMPT.format(today=today, context=context)}

    def _history(self) -> list[dict[str, Any]]:
        newest = list(
            self.session.scalars(
                select(Message)
                .where(Message.conversation_id == self.conversation.id)
                .order_by(Message.id.desc())
                .limit(HISTORY_LOOKBACK)
            )
        )
        newest.reverse()
        window, trimmed = history_window(newest, self.settings.AI_HISTORY_TOKEN_BUDGET)
        self.result.history_messages = len(window)
        self.result.trimmed_messages = trimmed
        self.result.history_tokens = sum(m.tokens for m in window)
        return [as_openai(m) for m in window]

    def _store(self, **values: Any) -> Message:
        message = Message(conversation_id=self.conversation.id, **values)
        message.tokens = message_tokens(as_openai(message))
        self.session.add(message)
        self.conversation.updated_at = utcnow()
        self.result.messages.append(message)
        return message

    def _accept(self) -> Iterator[Event]:
        """Store the user's message, once: the model has started answering."""
        if self.result.user_message is not None:
            return
        first = self.result.history_messages + self.result.trimmed_messages == 0
        if first and self.conversation.title == DEFAULT_TITLE:
            first_line = self.content.strip().splitlines()[0] if self.content.strip() else ""
            self.conversation.title = first_line[:TITLE_CHARS] or DEFAULT_TITLE
        self.result.user_message = self._store(role=Role.USER, content=self.content)
        self.session.commit()
        yield Event("message", {"message": self.result.user_message})

    def _call(
        self, outgoing: list[dict[str, Any]], offer_tools: bool
    ) -> Generator[Event, None, Completion]:
        started = time.perf_counter()
        specs = tools.specs() if offer_tools else None
        try:
            if self.stream:
                completion: Completion | None = None
                for piece in self.model.stream(outgoing, tools=specs):
                    yield from self._accept()
                    if isinstance(piece, Completion):
                        completion = piece
                    else:
                        yield Event("delta", {"content": piece})
                assert completion is not None  # noqa: S101  (a stream ends with its Completion)
            else:
                completion = self.model.complete(outgoing, tools=specs)
        except ProviderFailure as failure:
            self.session.rollback()
            record_response(
                self.session,
                user_id=self.toolbox.user.id,
                purpose=Purpose.CHAT,
                model=self.model,
                started=started,
                conversation_id=self.conversation.id,
                failure=failure,
                streamed=self.stream,
            )
            self.session.commit()
            raise
        yield from self._accept()
        self.result.responses.append(
            record_response(
                self.session,
                user_id=self.toolbox.user.id,
                purpose=Purpose.CHAT,
                model=self.model,
                started=started,
                conversation_id=self.conversation.id,
                completion=completion,
                streamed=self.stream,
            )
        )
        return completion

    def events(self) -> Iterator[Event]:
        """Run the turn; the last event is `done` (a provider failure raises its API error)."""
        outgoing = [self._system(), *self._history(), {"role": "user", "content": self.content}]
        rounds = self.settings.AI_MAX_TOOL_ROUNDS
        for number in range(rounds + 1):
            completion = yield from self._call(outgoing, offer_tools=number < rounds)
            self.session.flush()
            response = self.result.responses[-1]
            # The last round offers no tools: a model that still asks for some is not obeyed.
            asked = completion.tool_calls if number < rounds else []
            calls = [call.as_dict() for call in asked]
            message = self._store(
                role=Role.ASSISTANT,
                content=completion.content,
                tool_calls=calls or None,
                response=response,
            )
            self.session.commit()
            if not calls:
                self.result.reply = message
                yield Event("done", {"result": self.result})
                return
            outgoing.append(as_openai(message))
            for call in asked:
                yield Event("tool_call", {"call": call.as_dict(), "message": message})
                outcome = tools.run_tool(self.toolbox, call.name, call.arguments)
                result = self._store(
                    role=Role.TOOL,
                    content=outcome.text,
                    tool_call_id=call.id,
                    tool_name=call.name,
                    tool_ok=outcome.ok,
                )
                self.session.commit()
                outgoing.append(as_openai(result))
                yield Event("tool_result", {"message": result})
        raise AssertionError("unreachable: the last round offers no tools")  # pragma: no cover
