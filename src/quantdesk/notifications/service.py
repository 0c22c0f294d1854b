"""Notification rules: `notify()` (the one call other domains make), the inbox, the test send.

`notify` renders the in-app text in the user's language, stores the notification, commits, then
pushes it to open streams and enqueues one background delivery per email or webhook target.
Every inbox query is filtered by the owner, so another user's notification is a 404.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.db import utcnow
from quantdesk.errors import NotFound
from quantdesk.notifications.channels.base import Result, Target, short_error, template_context
from quantdesk.notifications.channels.email import mask_email
from quantdesk.notifications.delivery import Runtime, deliver
from quantdesk.notifications.events import Channel, Event, Outcome
from quantdesk.notifications.models import Notification, NotificationDelivery
from quantdesk.notifications.preferences import get_preferences
from quantdesk.notifications.rendering import render
from quantdesk.notifications.tasks import deliver_notification

log = logging.getLogger(__name__)

REPLAY_LIMIT = 100


@dataclass(frozen=True)
class Staged:
    """A stored notification and the targets it goes to once its transaction commits."""

    notification: Notification
    targets: list[Target]


def current_runtime() -> Runtime:
    """The app of the current request or task (callers may pass their own runtime instead)."""
    from quantdesk.extensions import current_extensions

    return current_extensions()


def json_safe(value: Any) -> Any:
    """Event data as JSON: dates as ISO strings, NaN and infinities as null, numpy as Python."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return json_safe(item())
    return str(value)


def stage(session: Session, *, user_id: int, event: str, data: dict[str, Any]) -> Staged | None:
    """Add the notification to the session (no commit) and decide its targets."""
    event = Event(event).value  # an unknown event is a bug of the caller: ValueError
    user = session.get(User, user_id)
    if user is None:
        log.warning("notification %s for user %s: no such user", event, user_id)
        return None
    data = json_safe(data)
    prefs = get_preferences(session, user=user)
    context = template_context(event, data, user)
    text = render(
        session, event=event, channel=Channel.IN_APP, language=prefs.language, context=context
    )
    notification = Notification(
        user_id=user.id,
        event=event,
        title=text.title,
        content=text.body,
        data=data,
        language=prefs.language,
        in_app=prefs.wants(event, Channel.IN_APP),
        is_read=False,
    )
    session.add(notification)
    session.flush()
    targets = [Target(Channel.IN_APP, "in-app")] if notification.in_app else []
    if user.is_active:  # a deactivated account keeps its inbox but gets nothing sent out
        if prefs.wants(event, Channel.EMAIL):
            targets.append(Target(Channel.EMAIL, mask_email(prefs.effective_email)))
        if prefs.wants(event, Channel.WEBHOOK):
            targets += [
                Target(Channel.WEBHOOK, f"{hook.name} ({hook.url_hint})", hook.id)
                for hook in prefs.webhooks
                if hook.enabled
            ]
    return Staged(notification, targets)


def dispatch(runtime: Runtime, staged: Iterable[Staged]) -> None:
    """After the commit: push in-app ones to streams now, enqueue email and webhooks."""
    for item in staged:
        for target in item.targets:
            try:
                if target.channel is Channel.IN_APP:
                    deliver(runtime, notification_id=item.notification.id, target=target, retries=0)
                else:
                    runtime.tasks.submit(
                        deliver_notification,
                        item.notification.id,
                        target.channel.value,
                        target.label,
                        target.webhook_id,
                    )
            except Exception:  # a failing channel (or broker) never blocks the others
                log.exception(
                    "notification %s: could not dispatch to %s", item.notification.id, target.label
                )


def notify(
    session: Session,
    *,
    user_id: int,
    event: str,
    data: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
) -> Notification | None:
    """Raise `event` for a user: store it, commit, then send it through the user's channels.

    The one call other domains make, e.g. when a backtest finishes:
    `notify(session, user_id=bt.user_id, event="backtest_finished", data={...})`. It commits
    the session (with the caller's pending work). `runtime` defaults to the current app.
    Returns None when the user does not exist.
    """
    staged = stage(session, user_id=user_id, event=event, data=data or {})
    session.commit()
    if staged is not None:
        dispatch(runtime or current_runtime(), [staged])
    return staged.notification if staged is not None else None


def send_test(
    session: Session, *, runtime: Runtime, user: User, message: str | None = None
) -> tuple[Notification, list[tuple[Target, Result]]]:
    """Send a `test` notification through each channel enabled for it, now, once each."""
    staged = stage(
        session, user_id=user.id, event=Event.TEST, data={"message": message} if message else {}
    )
    if staged is None:
        raise NotFound("No such user.")
    session.commit()
    results: list[tuple[Target, Result]] = []
    for target in staged.targets:
        try:
            result = deliver(
                runtime, notification_id=staged.notification.id, target=target, retries=0
            )
        except Exception as exc:
            log.exception("test notification to %s failed", target.label)
            result = Result(Outcome.FAILED, error=short_error(exc))
        results.append((target, result))
    return staged.notification, results


# ---------------------------------------------------------------- the inbox


def _inbox(user: User) -> Select[Notification]:
    return select(Notification).where(Notification.user_id == user.id, Notification.in_app)


def list_notifications(
    session: Session, *, user: User, unread: bool | None = None, event: str | None = None
) -> Select[Notification]:
    """The user's inbox, newest first; `unread=True` only unread ones."""
    stmt = _inbox(user)
    if unread is not None:
        stmt = stmt.where(Notification.is_read.is_(not unread))
    if event:
        stmt = stmt.where(Notification.event == event)
    return stmt.order_by(Notification.id.desc())


def unread_count(session: Session, *, user: User) -> int:
    stmt = select(func.count()).select_from(
        _inbox(user).where(Notification.is_read.is_(False)).subquery()
    )
    return int(session.scalar(stmt) or 0)


def get_notification(session: Session, *, user: User, notification_id: int) -> Notification:
    notification = session.get(Notification, notification_id)
    if notification is None or notification.user_id != user.id or not notification.in_app:
        raise NotFound("No such notification.")
    return notification


def mark_read(
    session: Session, *, user: User, ids: list[int] | None = None, everything: bool = False
) -> tuple[int, int]:
    """Mark `ids` (others' are ignored) or everything read; (how many changed, unread left)."""
    stmt = (
        update(Notification)
        .where(
            Notification.user_id == user.id,
            Notification.in_app,
            Notification.is_read.is_(False),
        )
        .values(is_read=True, read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not everything:
        stmt = stmt.where(Notification.id.in_(ids or []))
    changed = session.execute(stmt).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(changed or 0), unread_count(session, user=user)


def delete_notification(session: Session, *, user: User, notification_id: int) -> None:
    session.delete(get_notification(session, user=user, notification_id=notification_id))
    session.commit()


def list_deliveries(
    session: Session, *, user: User, notification_id: int
) -> list[NotificationDelivery]:
    """The delivery log of one of the user's notifications, oldest attempt first."""
    notification = session.get(Notification, notification_id)
    if notification is None or notification.user_id != user.id:
        raise NotFound("No such notification.")
    stmt = (
        select(NotificationDelivery)
        .where(NotificationDelivery.notification_id == notification_id)
        .order_by(NotificationDelivery.id)
    )
    return list(session.scalars(stmt))


def replay_since(session: Session, *, user: User, last_id: int) -> list[Notification]:
    """Inbox notifications after `last_id` (a reconnecting stream's Last-Event-ID), oldest first."""
    stmt = (
        _inbox(user)
        .where(Notification.id > last_id)
        .order_by(Notification.id.desc())
        .limit(REPLAY_LIMIT)
    )
    return list(reversed(list(session.scalars(stmt))))
