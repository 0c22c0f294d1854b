"""The email channel: queue the mail in the outbox (quantdesk.mail), then deliver it over SMTP.

A retry re-sends the same outbox row (the attempt's reference), so a flaky server never
yields two mails in the outbox for one notification. The HTML part is the autoescaped template;
the text part is the in-app text.
"""

from __future__ import annotations

from quantdesk.mail import deliver_email, queue_email
from quantdesk.notifications.channels.base import Attempt, Result, template_context
from quantdesk.notifications.events import Channel, Outcome
from quantdesk.notifications.preferences import get_preferences
from quantdesk.notifications.rendering import render

_PREFIX = "outbox_emails:"


def mask_email(address: str) -> str:
    """`a***@example.com`: enough to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


class EmailChannel:
    channel = Channel.EMAIL

    def send(self, attempt: Attempt) -> Result:
        session, note = attempt.session, attempt.notification
        reference = attempt.reference if (attempt.reference or "").startswith(_PREFIX) else None
        if reference is None:
            to = get_preferences(session, user=attempt.user).effective_email
            rendered = render(
                session,
                event=note.event,
                channel=Channel.EMAIL,
                language=note.language,
                context=template_context(note.event, note.data, attempt.user),
            )
            mail = queue_email(
                session,
                to=to,
                subject=rendered.title,
                body=f"{note.title}\n\n{note.content}\n",
                html=rendered.body,
            )
            reference = f"{_PREFIX}{mail.id}"
        sent = deliver_email(session, attempt.settings, int(reference.removeprefix(_PREFIX)))
        if sent is None:
            return Result(Outcome.FAILED, error="the outbox mail is gone", reference=reference)
        if sent.status == "sent":
            return Result(Outcome.SENT, reference=reference)
        if sent.status == "logged":
            return Result(
                Outcome.LOGGED, error="no SMTP_HOST: written to the log", reference=reference
            )
        return Result(Outcome.FAILED, error=sent.error, reference=reference, retryable=True)
