"""Publish/subscribe: the in-process broadcaster and Redis behave alike behind one interface."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from quantdesk.pubsub import MemoryPubSub, PubSub, RedisPubSub
from tests.conftest import TEST_REDIS_URL


@pytest.fixture(params=["memory", "redis"])
def hub(request: pytest.FixtureRequest) -> PubSub:
    if request.param == "memory":
        return MemoryPubSub()
    return RedisPubSub(redis.Redis.from_url(TEST_REDIS_URL), prefix="quantdesk-test:pubsub:")


def test_a_subscriber_gets_what_is_published_after_it_subscribed(hub: PubSub) -> None:
    hub.publish("room", "too early")
    first, second = hub.subscribe("room"), hub.subscribe("room")
    other = hub.subscribe("elsewhere")
    try:
        hub.publish("room", "hello")
        assert first.get(timeout=2) == "hello"
        assert second.get(timeout=2) == "hello"
        assert other.get(timeout=0.1) is None
        assert first.get(timeout=0.1) is None  # nothing from before the subscription
    finally:
        for subscription in (first, second, other):
            subscription.close()


def test_get_waits_for_a_message_until_its_timeout(hub: PubSub) -> None:
    subscription = hub.subscribe("later")
    try:
        threading.Timer(0.2, hub.publish, args=("later", "now")).start()
        started = time.monotonic()
        assert subscription.get(timeout=5) == "now"
        assert time.monotonic() - started < 4
        started = time.monotonic()
        assert subscription.get(timeout=0.3) is None
        assert 0.25 <= time.monotonic() - started < 2
    finally:
        subscription.close()


def test_a_closed_subscription_receives_nothing_more(hub: PubSub) -> None:
    subscription = hub.subscribe("bye")
    subscription.close()
    subscription.close()  # twice is fine
    hub.publish("bye", "anyone?")
    if isinstance(hub, MemoryPubSub):
        assert hub.subscriber_count("bye") == 0


def test_a_stalled_memory_subscriber_drops_instead_of_growing() -> None:
    hub = MemoryPubSub(queue_size=2)
    subscription = hub.subscribe("busy")
    for n in range(5):
        hub.publish("busy", str(n))
    assert [subscription.get(timeout=0.1) for _ in range(3)] == ["0", "1", None]
