"""The delivery manager: one channel target at a time, retried with exponential backoff, logged.

Each attempt runs in its own session and commits its log row, so the log survives a crash and a
task delivered twice (Celery's late acknowledgement) sees that a target already got its message.
Whatever a channel raises is caught here: one broken channel never stops the others
(STYLE.md pattern 15, after freqtrade's rpc_manager).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.db import Database
from quantdesk.notifications.channels import SENDERS
from quantdesk.notifications.channels.base import Attempt, Result, Target, short_error
from quantdesk.notifications.events import SUCCESS, Outcome
from quantdesk.notifications.models import Notification, NotificationDelivery
from quantdesk.pubsub import PubSub
from quantdesk.settings import Settings
from quantdesk.tasks import TaskRunner

log = logging.getLogger(__name__)


class Runtime(Protocol):
    """What delivery needs from the app: `Extensions` is one (current_extensions())."""

    settings: Settings
    db: Database
    tasks: TaskRunner
    pubsub: PubSub


def attempt_once(
    session: Session,
    *,
    settings: Settings,
    pubsub: PubSub,
    notification: Notification,
    user: User,
    target: Target,
    number: int,
    reference: str | None,
) -> Result:
    """Send once through the target's channel and log the attempt in `session`."""
    started = time.perf_counter()
    attempt = Attempt(session, settings, pubsub, notification, user, target, number, reference)
    try:
        result = SENDERS[target.channel].send(attempt)
    except Exception as exc:
        log.exception("notification %s: %s channel failed", notification.id, target.channel)
        session.rollback()
        result = Result(Outcome.FAILED, error=short_error(exc))
    session.add(
        NotificationDelivery(
            notification_id=notification.id,
            channel=target.channel.value,
            webhook_id=target.webhook_id,
            target=target.label[:300],
            attempt=number,
            outcome=result.outcome.value,
            status_code=result.status_code,
            error=result.error,
            reference=result.reference,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
    )
    return result


def _earlier_attempts(
    session: Session, notification_id: int, target: Target
) -> list[NotificationDelivery]:
    webhook = (
        NotificationDelivery.webhook_id.is_(None)
        if target.webhook_id is None
        else NotificationDelivery.webhook_id == target.webhook_id
    )
    stmt = (
        select(NotificationDelivery)
        .where(
            NotificationDelivery.notification_id == notification_id,
            NotificationDelivery.channel == target.channel.value,
            webhook,
        )
        .order_by(NotificationDelivery.attempt)
    )
    return list(session.scalars(stmt))


def deliver(
    runtime: Runtime,
    *,
    notification_id: int,
    target: Target,
    retries: int,
    sleep: Callable[[float], None] = time.sleep,
) -> Result:
    """Send to one target until it succeeds, fails for good, or `retries` retries are spent.

    The n-th retry waits NOTIFY_BACKOFF_SECONDS x 2^(n-1). A target that already succeeded
    (this task ran before) is not sent to again.
    """
    with runtime.db.session_scope() as session:
        earlier = _earlier_attempts(session, notification_id, target)
    done = [row for row in earlier if row.outcome in SUCCESS]
    if done:
        return Result(Outcome(done[-1].outcome), reference=done[-1].reference)
    number = earlier[-1].attempt if earlier else 0
    reference = earlier[-1].reference if earlier else None
    result = Result(Outcome.SKIPPED, error="no attempt was made")
    for retry in range(retries + 1):
        if retry:
            sleep(runtime.settings.NOTIFY_BACKOFF_SECONDS * 2 ** (retry - 1))
        number += 1
        with runtime.db.session_scope() as session:
            notification = session.get(Notification, notification_id)
            user = session.get(User, notification.user_id) if notification else None
            if notification is None or user is None:
                return Result(Outcome.SKIPPED, error="the notification was deleted")
            result = attempt_once(
                session,
                settings=runtime.settings,
                pubsub=runtime.pubsub,
                notification=notification,
                user=user,
                target=target,
                number=number,
                reference=reference,
            )
        reference = result.reference or reference
        if result.outcome is not Outcome.FAILED or not result.retryable:
            break
        log.info(
            "notification %s to %s: attempt %s failed (%s)",
            notification_id,
            target.channel,
            number,
            result.error,
        )
    return result
