"""AI assistant request and response schemas, named by direction."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from quantdesk.ai.advice import DEFAULT_HORIZON, HORIZONS
from quantdesk.ai.checks import CHECKS
from quantdesk.schemas import ID_RANGE, PageArgs, UTCDateTime

MAX_MESSAGE = 8000


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be blank.")


class ConversationCreateIn(Schema):
    title = fields.String(validate=validate.Length(min=1, max=200))
    strategy_id = fields.Integer(
        strict=True,
        allow_none=True,
        validate=ID_RANGE,
        metadata={"description": "one of your strategies it is about"},
    )
    backtest_id = fields.Integer(
        strict=True,
        allow_none=True,
        validate=ID_RANGE,
        metadata={"description": "one of your backtests it is about"},
    )


class ConversationListArgs(PageArgs):
    q = fields.String(validate=validate.Length(max=100), metadata={"description": "in the title"})


class ConversationOut(Schema):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    strategy_id = fields.Integer(allow_none=True)
    backtest_id = fields.Integer(allow_none=True)
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)


class AIResponseOut(Schema):
    """The model call that wrote an assistant message."""

    id = fields.Integer(required=True)
    model = fields.String(required=True)
    offline = fields.Boolean(required=True, metadata={"description": "the offline analyst"})
    streamed = fields.Boolean(required=True)
    tokens_in = fields.Integer(allow_none=True)
    tokens_out = fields.Integer(allow_none=True)
    latency_ms = fields.Integer(required=True)
    finish_reason = fields.String(allow_none=True)
    created_at = UTCDateTime(required=True)


class AIToolCallOut(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    arguments = fields.String(required=True, metadata={"description": "JSON text"})


class ChatMessageOut(Schema):
    id = fields.Integer(required=True)
    conversation_id = fields.Integer(required=True)
    role = fields.String(required=True, metadata={"description": "user, assistant or tool"})
    content = fields.String(required=True, metadata={"description": "a tool's: its JSON result"})
    tool_calls = fields.List(fields.Nested(AIToolCallOut), allow_none=True)
    tool_call_id = fields.String(allow_none=True)
    tool_name = fields.String(allow_none=True)
    tool_ok = fields.Boolean(allow_none=True)
    tokens = fields.Integer(required=True, metadata={"description": "estimated tokens"})
    response = fields.Nested(AIResponseOut, allow_none=True)
    created_at = UTCDateTime(required=True)


class ConversationDetailOut(ConversationOut):
    messages = fields.List(fields.Nested(ChatMessageOut), required=True)


class ChatMessageIn(Schema):
    content = fields.String(
        required=True, validate=[validate.Length(min=1, max=MAX_MESSAGE), _not_blank]
    )


class ChatSendArgs(Schema):
    stream = fields.Boolean(
        load_default=False,
        metadata={"description": "true: answer as server-sent events (text/event-stream)"},
    )


class AIUsageOut(Schema):
    model = fields.String(required=True)
    offline = fields.Boolean(required=True)
    tokens_in = fields.Integer(allow_none=True)
    tokens_out = fields.Integer(allow_none=True)
    latency_ms = fields.Integer(required=True)
    finish_reason = fields.String(allow_none=True)
    calls = fields.Integer(metadata={"description": "model calls of the turn"})


class ChatContextOut(Schema):
    history_messages = fields.Integer(required=True, metadata={"description": "earlier ones sent"})
    trimmed_messages = fields.Integer(required=True, metadata={"description": "left out"})
    history_tokens = fields.Integer(required=True, metadata={"description": "estimated"})
    token_budget = fields.Integer(required=True)


class ChatReplyOut(Schema):
    conversation_id = fields.Integer(required=True)
    offline = fields.Boolean(required=True)
    model = fields.String(required=True)
    message = fields.Nested(ChatMessageOut, required=True, metadata={"description": "yours"})
    reply = fields.Nested(ChatMessageOut, required=True, metadata={"description": "the answer"})
    messages = fields.List(
        fields.Nested(ChatMessageOut),
        required=True,
        metadata={"description": "every message of the turn, tool calls and results included"},
    )
    usage = fields.Nested(AIUsageOut, required=True, metadata={"description": "summed"})
    context = fields.Nested(ChatContextOut, required=True)


class AnalyzeStrategyIn(Schema):
    strategy_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    backtest_id = fields.Integer(strict=True, allow_none=True, validate=ID_RANGE)


class AnalysisFindingOut(Schema):
    check = fields.String(required=True, validate=validate.OneOf(CHECKS))
    severity = fields.String(required=True, metadata={"description": "high, medium or low"})
    message = fields.String(required=True)
    suggestion = fields.String(required=True)
    line = fields.Integer(allow_none=True, metadata={"description": "in the code"})
    evidence = fields.String(allow_none=True, metadata={"description": "the code it found"})


class AnalysisCheckOut(Schema):
    status = fields.String(required=True, metadata={"description": "pass, warn or not_run"})
    findings = fields.List(fields.Nested(AnalysisFindingOut), required=True)
    facts = fields.Dict(required=True)


class AnalysisNarrativeOut(Schema):
    source = fields.String(required=True, metadata={"description": "model or offline"})
    text = fields.String(required=True)
    strengths = fields.List(fields.String())
    risks = fields.List(fields.String())
    suggestions = fields.List(fields.String())


class AIRequestUsageOut(AIUsageOut):
    class Meta:
        exclude = ("calls",)


class StrategyAnalysisOut(Schema):
    strategy_id = fields.Integer(required=True)
    backtest_id = fields.Integer(allow_none=True)
    offline = fields.Boolean(required=True)
    model = fields.String(required=True)
    summary = fields.String(required=True)
    strengths = fields.List(fields.String(), required=True)
    risks = fields.List(fields.String(), required=True)
    warnings = fields.List(fields.Nested(AnalysisFindingOut), required=True)
    suggestions = fields.List(fields.String(), required=True)
    checks = fields.Dict(
        keys=fields.String(validate=validate.OneOf(CHECKS)),
        values=fields.Nested(AnalysisCheckOut),
        required=True,
    )
    narrative = fields.Nested(AnalysisNarrativeOut, required=True)
    usage = fields.Nested(AIRequestUsageOut, required=True)
    disclaimer = fields.String(required=True)


def _symbols(values: list[Any]) -> None:
    if len({str(v).strip().upper() for v in values}) != len(values):
        raise ValidationError("A symbol is given twice.")


class InvestmentAdviceIn(Schema):
    symbols = fields.List(
        fields.String(validate=validate.Length(min=1, max=48)),
        required=True,
        validate=[validate.Length(min=1, max=10), _symbols],
    )
    horizon = fields.String(
        load_default=DEFAULT_HORIZON,
        validate=validate.OneOf(list(HORIZONS)),
        metadata={"description": "short (20 bars), medium (60) or long (250)"},
    )


class SymbolAdviceOut(Schema):
    symbol = fields.String(required=True)
    name = fields.String(required=True)
    market = fields.String(required=True)
    exchange = fields.String(required=True)
    kind = fields.String(required=True)
    currency = fields.String(required=True)
    horizon = fields.String(required=True)
    as_of = fields.String(allow_none=True, metadata={"description": "the latest bar's date"})
    enough_data = fields.Boolean(required=True)
    last_close = fields.Float()
    trend = fields.Dict(metadata={"description": "direction, window, returns, moving average"})
    indicators = fields.Dict(metadata={"description": "values and what they suggest"})
    risk = fields.Dict(metadata={"description": "volatility, drawdown, flags and notes"})
    outlook = fields.String(metadata={"description": "technical tilt: positive, negative, neutral"})
    notes = fields.List(fields.String())
    narrative = fields.String(required=True)
    disclaimer = fields.String(required=True)


class AdviceNarrativeOut(Schema):
    source = fields.String(required=True, metadata={"description": "model or offline"})
    text = fields.String(required=True)


class InvestmentAdviceOut(Schema):
    horizon = fields.String(required=True)
    offline = fields.Boolean(required=True)
    model = fields.String(required=True)
    symbols = fields.List(fields.Nested(SymbolAdviceOut), required=True)
    narrative = fields.Nested(AdviceNarrativeOut, required=True)
    usage = fields.Nested(AIRequestUsageOut, required=True)
    disclaimer = fields.String(required=True)
