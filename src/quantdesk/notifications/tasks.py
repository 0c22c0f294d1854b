"""The background task of the notifications domain: deliver one notification to one target.

Thin (STYLE.md pattern 8): ids in, the delivery manager does the rest with its own sessions.
Registered with `@background_task`, so it runs in-process or on a Celery worker alike.
"""

from __future__ import annotations

from quantdesk.extensions import current_extensions
from quantdesk.notifications.channels.base import Target
from quantdesk.notifications.delivery import deliver
from quantdesk.notifications.events import Channel
from quantdesk.tasks import background_task


@background_task
def deliver_notification(
    notification_id: int, channel: str, label: str, webhook_id: int | None = None
) -> None:
    """Send a notification through one email or webhook target, with retries and backoff."""
    ext = current_extensions()
    deliver(
        ext,
        notification_id=notification_id,
        target=Target(Channel(channel), label, webhook_id),
        retries=ext.settings.NOTIFY_RETRIES,
    )
