"""Outgoing mail: written to the `outbox_emails` table first, then delivered by a background task.

With no SMTP_HOST (the embedded default) delivery writes the mail to the log instead, so a
developer can still read a password-reset link; the outbox row records what happened either way.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from email.message import EmailMessage

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from quantdesk.db import Base, UTCDateTime, utcnow
from quantdesk.settings import Settings
from quantdesk.tasks import background_task

log = logging.getLogger(__name__)


class OutboxEmail(Base):
    """Every mail the platform sends; delivery updates its status."""

    __tablename__ = "outbox_emails"

    id: Mapped[int] = mapped_column(primary_key=True)
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    # An HTML alternative of `body` (notification mails); the text part is always sent too.
    html: Mapped[str | None] = mapped_column(Text)
    # pending -> sent | logged (no SMTP host) | failed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


def queue_email(
    session: Session, *, to: str, subject: str, body: str, html: str | None = None
) -> OutboxEmail:
    """Add a mail to the outbox in the caller's transaction; deliver it after the commit."""
    email = OutboxEmail(to_address=to, subject=subject, body=body, html=html, status="pending")
    session.add(email)
    session.flush()
    return email


def deliver_email(session: Session, settings: Settings, email_id: int) -> OutboxEmail | None:
    """Send one outbox mail over SMTP, or to the log when no SMTP host is configured."""
    email = session.get(OutboxEmail, email_id)
    if email is None or email.status in {"sent", "logged"}:
        return email
    email.attempts += 1
    if not settings.SMTP_HOST:
        log.info(
            "mail (no SMTP_HOST, not sent) to=%s subject=%s\n%s",
            email.to_address,
            email.subject,
            email.body,
            extra={"mail_to": email.to_address, "mail_subject": email.subject},
        )
        email.status, email.sent_at = "logged", utcnow()
        return email
    message = EmailMessage()
    message["From"] = settings.MAIL_FROM
    message["To"] = email.to_address
    message["Subject"] = email.subject
    message.set_content(email.body)
    if email.html:
        message.add_alternative(email.html, subtype="html")
    try:
        with smtplib.SMTP(
            settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.SMTP_TIMEOUT_SECONDS
        ) as smtp:
            if settings.SMTP_USE_TLS:
                smtp.starttls()
            if settings.SMTP_USERNAME:
                smtp.login(settings.SMTP_USERNAME, settings.SMTP_PASSWORD)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail to %s failed: %s", email.to_address, exc)
        email.status, email.error = "failed", f"{type(exc).__name__}: {exc}"
        return email
    email.status, email.sent_at, email.error = "sent", utcnow(), None
    return email


@background_task
def deliver_outbox_email(email_id: int) -> None:
    """The background task: deliver one outbox mail (safe to run twice: sent mail is skipped)."""
    from quantdesk.extensions import current_extensions

    ext = current_extensions()
    with ext.db.session_scope() as session:
        deliver_email(session, ext.settings, email_id)
