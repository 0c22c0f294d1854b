"""The webhook channel: one POST to a user's generic endpoint or DingTalk / WeCom / Feishu bot.

The target is checked again here (its name may resolve elsewhere since it was saved) and at
connection time; redirects are refused, not followed; the token-bearing URL never reaches the
delivery log (errors are scrubbed of it).
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import requests

from quantdesk import crypto
from quantdesk.notifications import netguard
from quantdesk.notifications.channels.base import Attempt, Result, short_error, template_context
from quantdesk.notifications.channels.formats import (
    Message,
    OutgoingRequest,
    build_request,
    refusal,
)
from quantdesk.notifications.events import Channel, Outcome, WebhookKind
from quantdesk.notifications.models import NotificationWebhook
from quantdesk.notifications.rendering import render
from quantdesk.settings import Settings

_ANSWER_LIMIT = 64 * 1024


def _scrub(text: str, url: str) -> str:
    """Remove the URL's path and query (where bots keep their token) from an error message."""
    parts = urlsplit(url)
    secret_part = parts.path + (f"?{parts.query}" if parts.query else "")
    for fragment in (url, secret_part, parts.query):
        if fragment and len(fragment) > 1:
            text = text.replace(fragment, "/\u2026")
    return text


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


def post(settings: Settings, kind: WebhookKind, request: OutgoingRequest) -> Result:
    allow_private = settings.webhook_allow_private_networks
    try:
        netguard.check_url(request.url, allow_private=allow_private)
        with netguard.http_session(allow_private=allow_private) as http:
            response = http.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                allow_redirects=False,
                stream=True,
            )
            with response:
                raw = response.raw.read(_ANSWER_LIMIT, decode_content=True)
    except netguard.RefusedTarget as exc:
        return Result(Outcome.REFUSED, error=_scrub(str(exc), request.url))
    except (requests.RequestException, OSError) as exc:
        return Result(Outcome.FAILED, error=_scrub(short_error(exc), request.url), retryable=True)
    status = response.status_code
    if 300 <= status < 400:
        return Result(
            Outcome.FAILED, status_code=status, error=f"HTTP {status}: redirects are not followed"
        )
    if status >= 400:
        return Result(
            Outcome.FAILED,
            status_code=status,
            error=f"HTTP {status} {response.reason or ''}".strip(),
            retryable=_retryable(status),
        )
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    problem = refusal(kind, answer)
    if problem is not None:
        return Result(Outcome.FAILED, status_code=status, error=problem[:500], retryable=True)
    return Result(Outcome.SENT, status_code=status)


class WebhookChannel:
    channel = Channel.WEBHOOK

    def send(self, attempt: Attempt) -> Result:
        session, user, note = attempt.session, attempt.user, attempt.notification
        hook = (
            session.get(NotificationWebhook, attempt.target.webhook_id)
            if attempt.target.webhook_id is not None
            else None
        )
        if hook is None or hook.user_id != user.id:
            return Result(Outcome.SKIPPED, error="the webhook was deleted")
        if not hook.enabled:
            return Result(Outcome.SKIPPED, error="the webhook is turned off")
        try:
            url = crypto.decrypt(attempt.settings, hook.url_encrypted)
            secret = (
                crypto.decrypt(attempt.settings, hook.secret_encrypted)
                if hook.secret_encrypted
                else None
            )
        except crypto.DecryptionFailed as exc:
            return Result(Outcome.FAILED, error=str(exc))
        context = template_context(note.event, note.data, user)
        rendered = render(
            session,
            event=note.event,
            channel=Channel.WEBHOOK,
            language=note.language,
            context=context,
        )
        message = Message(
            event=note.event,
            notification_id=note.id,
            title=rendered.title,
            text=note.content,
            markdown=rendered.body,
            data=note.data,
            created_at=note.created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        kind = WebhookKind(hook.kind)
        return post(
            attempt.settings, kind, build_request(kind, url, secret, message, now=time.time())
        )
