"""The one interface every channel implements: send one notification to one target, say how it went.

A channel never raises for a delivery problem: it returns a `Result` (and the delivery manager
catches anything else), so one broken channel cannot stop the others (freqtrade's rpc_manager).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.notifications.events import Channel, Outcome
from quantdesk.notifications.models import Notification
from quantdesk.pubsub import PubSub
from quantdesk.settings import Settings


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: a channel, and for webhooks which one; `label` is masked."""

    channel: Channel
    label: str
    webhook_id: int | None = None


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    error: str | None = None
    status_code: int | None = None
    # What the channel made (e.g. "outbox_emails:17"); the next attempt gets it back.
    reference: str | None = None
    retryable: bool = False


@dataclass(frozen=True)
class Attempt:
    """Everything one try needs; the session is the attempt's own (tasks open their own)."""

    session: Session
    settings: Settings
    pubsub: PubSub
    notification: Notification
    user: User
    target: Target
    number: int
    reference: str | None = None


class Sender(Protocol):
    def send(self, attempt: Attempt) -> Result: ...


def template_context(event: str, data: dict[str, Any], user: User) -> dict[str, Any]:
    """What every template sees: the event, its data and the user."""
    return {
        "event": event,
        "data": data,
        "user": {
            "username": user.username,
            "full_name": user.full_name,
            "name": user.full_name or user.username,
        },
    }


def short_error(exc: BaseException, limit: int = 500) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]
