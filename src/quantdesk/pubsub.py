"""Publish/subscribe for live events: Redis across processes, or in this process when no REDIS_URL.

With Redis, an event published by any process (a Celery worker finishing a backtest, another
gunicorn worker) reaches every open stream of every web worker; the embedded default is one
process, so an in-process broadcaster is all it needs. One small interface for both, like the
key store.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

import redis
from redis.client import PubSub as RedisPubSubConnection

from quantdesk.kvstore import redis_client

log = logging.getLogger(__name__)


class PubSubUnavailable(Exception):
    """The broker (Redis) cannot be reached."""


class Subscription(Protocol):
    def get(self, timeout: float) -> str | None:
        """The next message, or None when `timeout` seconds pass without one."""
        ...

    def close(self) -> None: ...


class PubSub(Protocol):
    def publish(self, channel: str, message: str) -> None: ...

    def subscribe(self, channel: str) -> Subscription:
        """Listen on `channel`; messages published after this returns are received."""
        ...


class MemoryPubSub:
    """Fan-out to this process's subscribers through bounded queues (the embedded default)."""

    def __init__(self, queue_size: int = 256) -> None:
        self._queues: dict[str, set[queue.Queue[str]]] = {}
        self._lock = threading.Lock()
        self._queue_size = queue_size

    def publish(self, channel: str, message: str) -> None:
        with self._lock:
            targets = list(self._queues.get(channel, ()))
        for target in targets:
            try:
                target.put_nowait(message)
            except queue.Full:  # a stalled reader loses messages rather than growing memory
                log.warning("pub/sub subscriber on %s is full; message dropped", channel)

    def subscribe(self, channel: str) -> Subscription:
        inbox: queue.Queue[str] = queue.Queue(maxsize=self._queue_size)
        with self._lock:
            self._queues.setdefault(channel, set()).add(inbox)
        return _MemorySubscription(self, channel, inbox)

    def _unsubscribe(self, channel: str, inbox: queue.Queue[str]) -> None:
        with self._lock:
            subscribers = self._queues.get(channel)
            if subscribers is not None:
                subscribers.discard(inbox)
                if not subscribers:
                    del self._queues[channel]

    def subscriber_count(self, channel: str) -> int:
        with self._lock:
            return len(self._queues.get(channel, ()))


class _MemorySubscription:
    def __init__(self, hub: MemoryPubSub, channel: str, inbox: queue.Queue[str]) -> None:
        self._hub, self._channel, self._inbox = hub, channel, inbox

    def get(self, timeout: float) -> str | None:
        try:
            return self._inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def close(self) -> None:
        self._hub._unsubscribe(self._channel, self._inbox)


class RedisPubSub:
    """Redis PUBLISH/SUBSCRIBE; each subscription holds one Redis connection until closed."""

    def __init__(self, client: redis.Redis, prefix: str = "quantdesk:pubsub:") -> None:
        self._client = client
        self._prefix = prefix

    def publish(self, channel: str, message: str) -> None:
        try:
            self._client.publish(self._prefix + channel, message)
        except redis.RedisError as exc:
            raise PubSubUnavailable(f"cannot publish: {exc}") from exc

    def subscribe(self, channel: str) -> Subscription:
        connection = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            connection.subscribe(self._prefix + channel)
            _await_confirmation(connection)
        except redis.RedisError as exc:
            connection.close()
            raise PubSubUnavailable(f"cannot subscribe: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        return _RedisSubscription(connection)


def _await_confirmation(connection: RedisPubSubConnection, timeout: float = 5.0) -> None:
    """Wait for Redis to confirm the SUBSCRIBE, so a publish right after it is not missed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = connection.get_message(timeout=deadline - time.monotonic())
        if message is not None and message["type"] == "subscribe":
            return
    raise redis.TimeoutError("Redis did not confirm the subscription")


class _RedisSubscription:
    def __init__(self, connection: RedisPubSubConnection) -> None:
        self._connection = connection

    def get(self, timeout: float) -> str | None:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            message = self._connection.get_message(timeout=remaining)
            if message is not None and message["type"] == "message":
                data = message["data"]
                return data.decode() if isinstance(data, bytes) else str(data)

    def close(self) -> None:
        self._connection.close()


def build_pubsub(redis_url: str) -> PubSub:
    """Redis pub/sub when REDIS_URL is set, else this process's broadcaster."""
    if not redis_url:
        return MemoryPubSub()
    # The client's short socket timeout does not cut a wait: get_message polls with its own.
    return RedisPubSub(redis_client(redis_url))
