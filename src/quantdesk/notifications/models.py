"""Notifications, templates, each user's settings and webhooks, the delivery log, price alerts.

Webhook URLs and secrets are stored only encrypted (quantdesk.crypto): a group bot's URL is
itself a credential (DingTalk's access_token, WeCom's key, Feishu's hook id).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column

from quantdesk.db import Base, UTCDateTime, utcnow


class Notification(Base):
    """One event for one user; the record every channel's delivery refers to.

    `in_app` says whether the user's inbox (and stream) shows it: a user may turn the in-app
    channel off for an event and still get its email, whose log rows need this row.
    """

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_inbox", "user_id", "in_app", "is_read", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    language: Mapped[str] = mapped_column(String(10))
    in_app: Mapped[bool] = mapped_column(default=True, server_default=true())
    is_read: Mapped[bool] = mapped_column(default=False, server_default=false())
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NotificationTemplate(Base):
    """A Jinja2 template of one event on one channel in one language (defaults seeded on use).

    in_app: plain-text subject and body. email: plain subject, HTML body (autoescaped).
    webhook: a title and a Markdown body (DingTalk, WeCom; Feishu gets the in-app text).
    """

    __tablename__ = "notification_templates"
    __table_args__ = (UniqueConstraint("event", "channel", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class UserNotificationSettings(Base):
    """A user's choices; a user without a row has the defaults (everything on, account email)."""

    __tablename__ = "user_notification_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    # Where email goes; None means the account's email.
    email: Mapped[str | None] = mapped_column(String(254))
    # {event: {channel: bool}}; events or channels missing here take the default (on).
    events: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class NotificationWebhook(Base):
    """A webhook target of a user: generic JSON, or a DingTalk, WeCom or Feishu group bot."""

    __tablename__ = "notification_webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    url_encrypted: Mapped[str] = mapped_column(Text)
    # The masked URL the API shows (scheme, host, last characters), so listing needs no key.
    url_hint: Mapped[str] = mapped_column(String(300))
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def has_secret(self) -> bool:
        return self.secret_encrypted is not None


class NotificationDelivery(Base):
    """The delivery log: one row per attempt of one channel target for one notification."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_notification", "notification_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    webhook_id: Mapped[int | None] = mapped_column(
        ForeignKey("notification_webhooks.id", ondelete="SET NULL")
    )
    target: Mapped[str] = mapped_column(String(300))  # what a person recognises, masked
    attempt: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    # What the channel made, e.g. "outbox_emails:17", so a retry re-sends the same mail.
    reference: Mapped[str | None] = mapped_column(String(100))
    duration_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PriceAlert(Base):
    """A user's threshold on a symbol, checked against each new daily close by the data sync.

    above / below: the close crosses the price (yesterday on one side, today on the other).
    rise_pct / fall_pct: the day's change is at least `threshold` percent up / down.
    """

    __tablename__ = "price_alerts"
    __table_args__ = (Index("ix_price_alerts_symbol_active", "symbol", "is_active"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    symbol: Mapped[str] = mapped_column(String(48))
    condition: Mapped[str] = mapped_column(String(16))
    threshold: Mapped[float] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_triggered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_triggered_on: Mapped[dt.date | None]  # the bar date, so a re-sync does not repeat it
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
