"""AI tables: conversations, their messages (tool calls and results included), and model calls.

`ai_responses` has one row per call to a model (DeepSeek, any OpenAI-compatible endpoint, or
the offline analyst): which model, tokens in and out, latency, finish reason, and the error when
the call failed. A failed call leaves its row even when the turn that made it is not stored.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from quantdesk.db import Base, UTCDateTime, utcnow


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Purpose(StrEnum):
    """What a model call served."""

    CHAT = "chat"
    ANALYZE_STRATEGY = "analyze_strategy"
    INVESTMENT_ADVICE = "investment_advice"


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_updated", "user_id", "updated_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    # Optional context the conversation is about: the model is told, and reads it with tools.
    strategy_id: Mapped[int | None] = mapped_column(
        ForeignKey("strategies.id", ondelete="SET NULL")
    )
    backtest_id: Mapped[int | None] = mapped_column(
        ForeignKey("backtest_tasks.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Message.id",
    )


class Message(Base):
    """One message: the user's, the assistant's (text and/or tool calls), or a tool's result.

    An assistant message asking for tools has `tool_calls` ([{id, name, arguments}]); each
    result is a `tool` message with that `tool_call_id`, the tool's name and its JSON result.
    """

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_id_id", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    tool_call_id: Mapped[str | None] = mapped_column(String(100))
    tool_name: Mapped[str | None] = mapped_column(String(64))
    tool_ok: Mapped[bool | None] = mapped_column()  # a tool message: did the tool succeed
    # Estimated tokens of this message as sent to a model (chat.estimate_tokens).
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    # The model call that wrote an assistant message.
    response_id: Mapped[int | None] = mapped_column(
        ForeignKey("ai_responses.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    response: Mapped[AIResponse | None] = relationship(lazy="joined")


class AIResponse(Base):
    """One call to a model: usage, latency and outcome (the error when it failed)."""

    __tablename__ = "ai_responses"
    __table_args__ = (Index("ix_ai_responses_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Usage outlives the conversation it served (deleting a conversation keeps the accounting).
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(24))
    model: Mapped[str] = mapped_column(String(100))
    offline: Mapped[bool] = mapped_column(default=False, server_default=false())
    streamed: Mapped[bool] = mapped_column(default=False, server_default=false())
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(48))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
