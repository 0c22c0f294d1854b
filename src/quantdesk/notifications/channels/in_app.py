"""The in-app channel: the notification row is the inbox entry; this pushes it to open streams.

Streams subscribe per user (`stream_channel`); with Redis every web worker's streams get it.
A stream that missed it (not connected) still finds it in the inbox or by Last-Event-ID.
"""

from __future__ import annotations

import json

from quantdesk.notifications.channels.base import Attempt, Result
from quantdesk.notifications.events import Channel, Outcome
from quantdesk.notifications.models import Notification
from quantdesk.notifications.schemas import NotificationOut


def stream_channel(user_id: int) -> str:
    return f"notifications:user:{user_id}"


def stream_payload(notification: Notification) -> str:
    """The stream's JSON of a notification: the same shape as the list endpoint's items."""
    return json.dumps(NotificationOut().dump(notification), ensure_ascii=False)


class InAppChannel:
    channel = Channel.IN_APP

    def send(self, attempt: Attempt) -> Result:
        note = attempt.notification
        attempt.pubsub.publish(stream_channel(note.user_id), stream_payload(note))
        return Result(Outcome.SENT)
