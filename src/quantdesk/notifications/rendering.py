"""Render an event's template for one channel and language, never failing a notification.

Templates are data an administrator can edit, so they run in Jinja2's sandbox (no attribute
access to internals, no unsafe calls). HTML email bodies are autoescaped: a strategy named
`<script>` arrives as text. A stored template that fails to render falls back to the built-in.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import Undefined
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from quantdesk.notifications.defaults import DEFAULT_TEMPLATES
from quantdesk.notifications.events import FALLBACK_LANGUAGE, Channel
from quantdesk.notifications.models import NotificationTemplate

log = logging.getLogger(__name__)

TITLE_MAX = 200
_DASH = "\u2014"


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def pct(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return _DASH if number is None else f"{number * 100:.{digits}f}%"


def num(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return _DASH if number is None else f"{number:,.{digits}f}"


def signed(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return _DASH if number is None else f"{number:+.{digits}f}"


def _environment(*, autoescape: bool) -> SandboxedEnvironment:
    # No trim_blocks: a line ending in {% endif %} keeps its newline (templates are line-based).
    env = SandboxedEnvironment(autoescape=autoescape, undefined=Undefined)
    env.filters.update(pct=pct, num=num, signed=signed)
    return env


# Configuration only (filters and options), shared like a URL map; templates compile per call.
_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)


def seed_default_templates(session: Session) -> int:
    """Insert the built-in templates that are not stored yet (edited ones are kept); how many."""
    rows = session.execute(
        select(
            NotificationTemplate.event, NotificationTemplate.channel, NotificationTemplate.language
        )
    )
    stored = {(event, channel, language) for event, channel, language in rows}
    missing = [key for key in DEFAULT_TEMPLATES if key not in stored]
    if not missing:
        return 0
    try:
        with session.begin_nested():
            for event, channel, language in missing:
                subject, body = DEFAULT_TEMPLATES[(event, channel, language)]
                session.add(
                    NotificationTemplate(
                        event=event, channel=channel, language=language, subject=subject, body=body
                    )
                )
    except IntegrityError:  # another process seeded them at the same moment: theirs stand
        return 0
    return len(missing)


def _source(session: Session, event: str, channel: str, language: str) -> tuple[str, str]:
    for lang in dict.fromkeys((language, FALLBACK_LANGUAGE)):
        row = session.scalars(
            select(NotificationTemplate).where(
                NotificationTemplate.event == event,
                NotificationTemplate.channel == channel,
                NotificationTemplate.language == lang,
            )
        ).first()
        if row is not None:
            return row.subject, row.body
        if (event, channel, lang) in DEFAULT_TEMPLATES:
            seed_default_templates(session)
            return DEFAULT_TEMPLATES[(event, channel, lang)]
    raise KeyError((event, channel, language))


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:TITLE_MAX]


def _render_source(subject: str, body: str, *, channel: str, context: dict[str, Any]) -> Rendered:
    title = _one_line(_TEXT_ENV.from_string(subject).render(context))
    env = _HTML_ENV if channel == Channel.EMAIL else _TEXT_ENV
    text = env.from_string(body).render({**context, "title": title})
    return Rendered(title=title, body=text.strip() if channel == Channel.EMAIL else _tidy(text))


def render(
    session: Session, *, event: str, channel: str, language: str, context: dict[str, Any]
) -> Rendered:
    """The stored template of (event, channel, language), or the built-in one if it breaks."""
    subject, body = _source(session, event, channel, language)
    try:
        return _render_source(subject, body, channel=channel, context=context)
    except Exception:  # a broken stored template must not lose the notification
        log.exception("template %s/%s/%s failed; using the built-in one", event, channel, language)
    key = (event, channel, language)
    fallback = DEFAULT_TEMPLATES.get(key) or DEFAULT_TEMPLATES[(event, channel, FALLBACK_LANGUAGE)]
    return _render_source(*fallback, channel=channel, context=context)
