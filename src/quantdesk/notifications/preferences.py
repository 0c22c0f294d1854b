"""Each user's notification settings: events per channel, the email address, webhooks (encrypted).

A webhook URL is a credential (a bot's token sits in it), so it is stored encrypted and shown
masked; its host is checked against WEBHOOK_ALLOW_PRIVATE_NETWORKS when saved (and again when
a message is sent, see netguard.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk import crypto
from quantdesk.auth.models import User
from quantdesk.errors import Invalid
from quantdesk.notifications import netguard
from quantdesk.notifications.events import Channel, Event, WebhookKind, default_matrix, language_of
from quantdesk.notifications.models import NotificationWebhook, UserNotificationSettings
from quantdesk.settings import Settings

_KIND_NAMES = {
    WebhookKind.GENERIC: "Webhook",
    WebhookKind.DINGTALK: "DingTalk",
    WebhookKind.WECOM: "WeCom",
    WebhookKind.FEISHU: "Feishu",
}


@dataclass(frozen=True)
class Preferences:
    email: str | None
    effective_email: str
    language: str
    events: dict[str, dict[str, bool]]
    webhooks: list[NotificationWebhook]

    def wants(self, event: str, channel: Channel) -> bool:
        return self.events.get(event, {}).get(channel.value, True)


def _settings_row(session: Session, user_id: int) -> UserNotificationSettings | None:
    return session.scalars(
        select(UserNotificationSettings).where(UserNotificationSettings.user_id == user_id)
    ).first()


def webhooks_of(session: Session, user_id: int) -> list[NotificationWebhook]:
    stmt = (
        select(NotificationWebhook)
        .where(NotificationWebhook.user_id == user_id)
        .order_by(NotificationWebhook.id)
    )
    return list(session.scalars(stmt))


def _matrix(stored: dict[str, Any] | None) -> dict[str, dict[str, bool]]:
    """The defaults with the user's choices on top (unknown names in storage are ignored)."""
    matrix = default_matrix()
    for event, channels in (stored or {}).items():
        if event in matrix and isinstance(channels, dict):
            for channel, on in channels.items():
                if channel in matrix[event] and isinstance(on, bool):
                    matrix[event][channel] = on
    return matrix


def get_preferences(session: Session, *, user: User) -> Preferences:
    row = _settings_row(session, user.id)
    email = row.email if row is not None else None
    return Preferences(
        email=email,
        effective_email=email or user.email,
        language=language_of(user.language),
        events=_matrix(row.events if row is not None else None),
        webhooks=webhooks_of(session, user.id),
    )


def mask_url(url: str) -> str:
    """`https://oapi.dingtalk.com/…3f9a`: where it goes, never the token in it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    tail = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    shown = tail[-4:] if len(tail) >= 16 else ""
    return f"{parts.scheme}://{host}/\u2026{shown}" if tail else f"{parts.scheme}://{host}/"


def _checked_url(settings: Settings, url: str) -> str:
    url = url.strip()
    netguard.check_url(url, allow_private=settings.webhook_allow_private_networks)
    return url


def _plan_webhooks(
    session: Session, *, settings: Settings, user: User, items: list[dict[str, Any]]
) -> tuple[list[tuple[NotificationWebhook | None, dict[str, Any]]], list[NotificationWebhook]]:
    """Check every item before changing anything; (item plans, stored ones to delete)."""
    stored = {hook.id: hook for hook in webhooks_of(session, user.id)}
    errors: dict[str, dict[str, list[str]]] = {}
    plans: list[tuple[NotificationWebhook | None, dict[str, Any]]] = []
    seen: set[int] = set()
    for index, item in enumerate(items):
        hook = None
        if "id" in item:
            hook = stored.get(item["id"])
            if hook is None or item["id"] in seen:
                errors[str(index)] = {"id": ["No such webhook of yours (or listed twice)."]}
                continue
            seen.add(item["id"])
        if "url" in item:
            try:
                item = {**item, "url": _checked_url(settings, item["url"])}
            except netguard.RefusedTarget as exc:
                errors[str(index)] = {"url": [str(exc)]}
                continue
        plans.append((hook, item))
    if errors:
        raise Invalid("Some webhooks cannot be saved.", details={"webhooks": errors})
    return plans, [hook for hook_id, hook in stored.items() if hook_id not in seen]


def _apply_webhook(
    settings: Settings, user: User, hook: NotificationWebhook | None, item: dict[str, Any]
) -> NotificationWebhook:
    if hook is None:
        kind = WebhookKind(item["kind"])
        hook = NotificationWebhook(user_id=user.id, kind=kind.value, name=_KIND_NAMES[kind])
    if "kind" in item:
        hook.kind = item["kind"]
    if "name" in item:
        hook.name = item["name"]
    if "enabled" in item:
        hook.enabled = item["enabled"]
    if "url" in item:
        hook.url_encrypted = crypto.encrypt(settings, item["url"])
        hook.url_hint = mask_url(item["url"])
    if "secret" in item:
        secret = (item["secret"] or "").strip()
        hook.secret_encrypted = crypto.encrypt(settings, secret) if secret else None
    return hook


def update_preferences(
    session: Session, *, settings: Settings, user: User, changes: dict[str, Any]
) -> Preferences:
    """Apply `email`, `events` (merged) and `webhooks` (the whole list) from `changes`."""
    plans, removed = (
        _plan_webhooks(session, settings=settings, user=user, items=changes["webhooks"])
        if "webhooks" in changes
        else ([], [])
    )
    row = _settings_row(session, user.id)
    if row is None:
        row = UserNotificationSettings(user_id=user.id, events={})
        session.add(row)
    if "email" in changes:
        row.email = changes["email"].lower() if changes["email"] else None
    if "events" in changes:
        merged = _matrix(row.events)
        for event, channels in changes["events"].items():
            merged[Event(event).value].update(channels)
        row.events = merged
    for hook, item in plans:
        session.add(_apply_webhook(settings, user, hook, item))
    for hook in removed:
        session.delete(hook)
    session.commit()
    return get_preferences(session, user=user)
