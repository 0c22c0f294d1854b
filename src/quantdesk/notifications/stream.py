"""The live stream of a user's notifications as server-sent events (text/event-stream).

One `notification` event per new in-app notification (`id:` is its id, `data:` its JSON), a
comment line when idle (so proxies keep the connection), and an end after a bounded time: the
browser's EventSource reconnects by itself and sends Last-Event-ID, and what it missed in
between is replayed from the inbox. The stream holds no database connection while it waits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

from quantdesk.errors import ServiceUnavailable
from quantdesk.notifications.channels.in_app import stream_channel, stream_payload
from quantdesk.notifications.models import Notification
from quantdesk.pubsub import PubSub, PubSubUnavailable, Subscription

RETRY_MS = 3000


def sse(data: str, *, event: str = "notification", event_id: int | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


class EventStream:
    """An iterable of SSE chunks; subscribed from construction, so nothing published is lost.

    `close()` (called by the WSGI server when the client goes away or the stream ends) releases
    the subscription even if iteration never started.
    """

    def __init__(
        self,
        pubsub: PubSub,
        *,
        user_id: int,
        replay: list[Notification],
        keepalive_seconds: float,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            self._subscription: Subscription = pubsub.subscribe(stream_channel(user_id))
        except PubSubUnavailable as exc:
            raise ServiceUnavailable(
                "The live stream is unavailable right now; the inbox still works. Retry shortly."
            ) from exc
        self._replay = [(note.id, stream_payload(note)) for note in replay]
        self._keepalive = keepalive_seconds
        self._max_seconds = max_seconds
        self._clock = clock
        self._closed = False

    def __iter__(self) -> Iterator[str]:
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n"
            last_id = 0
            for event_id, payload in self._replay:
                yield sse(payload, event_id=event_id)
                last_id = event_id
            deadline = self._clock() + self._max_seconds
            while not self._closed:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return
                message = self._subscription.get(timeout=min(self._keepalive, remaining))
                if message is None:
                    if self._clock() < deadline:
                        yield ": keep-alive\n\n"
                    continue
                event_id = int(json.loads(message).get("id", 0))
                if event_id <= last_id:  # already sent by the replay
                    continue
                last_id = event_id
                yield sse(message, event_id=event_id)
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._subscription.close()
