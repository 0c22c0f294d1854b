"""The live stream: server-sent events through the Flask test client, two apps sharing Redis, and
a real gunicorn with two workers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.test import TestResponse

from quantdesk.app import create_app
from quantdesk.extensions import extensions_of
from quantdesk.notifications.service import notify
from quantdesk.pubsub import RedisPubSub
from quantdesk.settings import Settings
from tests.conftest import FAST, TEST_REDIS_URL, Backend
from tests.notifications.conftest import (
    BACKTEST,
    FAST_RETRIES,
    Receiver,
    deliveries,
    put_settings,
    raise_event,
)
from tests.support import BIN, Api, assert_error, free_port, post_json, running_server, server_env


@dataclass
class Block:
    """One SSE block: its fields, and its comment lines."""

    fields: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.fields["data"])


def blocks(chunks: Iterable[bytes]) -> Iterator[Block]:
    """Parse a text/event-stream body into blocks as the chunks arrive."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            raw, buffer = buffer.split("\n\n", 1)
            block = Block()
            for line in raw.split("\n"):
                if line.startswith(":"):
                    block.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    block.fields[name] = value.removeprefix(" ")
            yield block


def open_stream(api: Api, query: str = "", headers: dict[str, str] | None = None) -> TestResponse:
    response = api.client.get(f"/api/notifications/stream{query}", headers=headers, buffered=False)
    return response


def test_a_finished_backtest_arrives_on_the_stream(api: Api, app: Flask) -> None:
    account = api.logged_in()
    response = open_stream(api, headers=account.headers)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events = blocks(response.response)
    hello = next(events)
    assert hello.fields == {"retry": "3000"}
    assert hello.comments == ["connected"]
    notification_id = raise_event(app, account.id, "backtest_finished", BACKTEST)
    event = next(events)
    response.close()
    assert event.fields["event"] == "notification"
    assert event.fields["id"] == str(notification_id)
    payload = event.json
    assert payload["id"] == notification_id
    assert payload["event"] == "backtest_finished"
    assert payload["title"] == "回测完成：MA cross 2020"  # noqa: RUF001
    assert payload["data"] == BACKTEST
    listed = api.get("/api/notifications", headers=account.headers).get_json()["items"][0]
    assert payload == listed  # the same shape as the inbox


def test_the_token_may_come_in_the_query_string(api: Api, app: Flask) -> None:
    account = api.logged_in()
    response = open_stream(api, f"?access_token={account.access_token}")
    assert response.status_code == 200
    events = blocks(response.response)
    next(events)
    raise_event(app, account.id, "system", {"message": "via query"})
    assert next(events).json["content"] == "via query"
    response.close()


def test_the_stream_needs_a_valid_token(api: Api) -> None:
    assert_error(open_stream(api), 401)
    assert_error(open_stream(api, "?access_token=not-a-token"), 401)
    account = api.logged_in()
    assert api.post("/api/auth/logout", headers=account.headers).status_code == 200
    assert_error(open_stream(api, f"?access_token={account.access_token}"), 401)  # revoked


def test_only_the_users_own_in_app_notifications_are_streamed(api: Api, app: Flask) -> None:
    alice, bob = api.logged_in(), api.logged_in()
    put_settings(api, bob, {"events": {"strategy_signal": {"in_app": False}}})
    response = open_stream(api, headers=bob.headers)
    events = blocks(response.response)
    next(events)
    raise_event(app, alice.id, "system", {"message": "for alice"})
    raise_event(app, bob.id, "strategy_signal", {"strategy_name": "hidden", "signals": []})
    mine = raise_event(app, bob.id, "system", {"message": "for bob"})
    event = next(events)
    response.close()
    assert event.json["id"] == mine
    assert event.json["content"] == "for bob"


def test_keep_alive_comments_and_a_bounded_life(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(NOTIFY_STREAM_KEEPALIVE_SECONDS=0.05, NOTIFY_STREAM_MAX_SECONDS=0.4))
    account = api.logged_in()
    started = time.monotonic()
    response = open_stream(api, headers=account.headers)
    received = list(blocks(response.response))  # ends by itself
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 5
    keepalives = [block for block in received if block.comments == ["keep-alive"]]
    assert len(keepalives) >= 3
    assert all(not block.fields for block in keepalives)


def test_a_reconnect_replays_what_was_missed(api: Api, app: Flask) -> None:
    account = api.logged_in()
    first, second, third = (
        raise_event(app, account.id, "system", {"message": str(n)}) for n in range(3)
    )
    for query, headers in (
        ("", {**account.headers, "Last-Event-ID": str(first)}),
        (f"?last_event_id={first}", account.headers),
    ):
        response = open_stream(api, query, headers)
        events = blocks(response.response)
        next(events)
        replayed = [next(events).fields["id"], next(events).fields["id"]]
        response.close()
        assert replayed == [str(second), str(third)]
    bad = open_stream(api, headers={**account.headers, "Last-Event-ID": "abc"})
    assert_error(bad, 422)


def test_closing_the_stream_releases_its_subscription(make_app: Callable[..., Flask]) -> None:
    app = make_app(REDIS_URL="")  # the in-process broadcaster can count its subscribers
    api = Api(app)
    account = api.logged_in()
    pubsub = extensions_of(app).pubsub
    channel = f"notifications:user:{account.id}"
    response = open_stream(api, headers=account.headers)
    assert pubsub.subscriber_count(channel) == 1  # type: ignore[attr-defined]
    response.close()  # the client went away before reading anything
    assert pubsub.subscriber_count(channel) == 0  # type: ignore[attr-defined]


def test_redis_down_is_a_503_and_notifications_still_land(
    make_app: Callable[..., Flask], receiver: Receiver
) -> None:
    app = make_app(**FAST_RETRIES)
    api = Api(app)
    account = api.logged_in()
    put_settings(api, account, {"webhooks": [{"kind": "generic", "url": receiver.url("/w")}]})
    # The broker goes away (nothing listens on port 1); no client retries, to keep it quick.
    dead = redis.Redis(port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    extensions_of(app).pubsub = RedisPubSub(dead)
    error = assert_error(open_stream(api, headers=account.headers), 503, "service_unavailable")
    assert "inbox" in error["message"]
    notification_id = raise_event(app, account.id, "system", {"message": "still here"})
    log = {row["channel"]: row for row in deliveries(api, account, notification_id)}
    assert log["in_app"]["outcome"] == "failed"  # the push to streams failed ...
    assert "PubSubUnavailable" in log["in_app"]["error"]
    assert log["webhook"]["outcome"] == "sent"  # ... the other channels did not care
    items = api.get("/api/notifications", headers=account.headers).get_json()["items"]
    assert [item["id"] for item in items] == [notification_id]  # and the inbox has it


def test_two_apps_share_the_stream_through_redis(production_backend: Backend) -> None:
    """Two web workers: a stream on one gets a notification raised on the other (Redis)."""
    from tests.conftest import isolated

    worker_a = create_app(production_backend.settings)
    worker_b = create_app(production_backend.settings)
    try:
        with isolated(worker_a):
            # Both workers see the same test transaction, as they would see one database.
            extensions_of(worker_b).db.session_factory = extensions_of(worker_a).db.session_factory
            api = Api(worker_a)
            account = api.logged_in()
            response = open_stream(api, headers=account.headers)
            events = blocks(response.response)
            next(events)
            ext_b = extensions_of(worker_b)
            with ext_b.db.session_scope() as session:
                raised = notify(
                    session,
                    user_id=account.id,
                    event="backtest_finished",
                    data=BACKTEST,
                    runtime=ext_b,
                )
            assert raised is not None
            event = next(events)
            response.close()
            assert event.json["id"] == raised.id
    finally:
        extensions_of(worker_a).db.dispose()
        extensions_of(worker_b).db.dispose()


@pytest.mark.slow
def test_gunicorn_workers_stream_a_notification_raised_elsewhere(
    tmp_path: Path, repo_root: Path, scratch_database: Callable[[str], str]
) -> None:
    """A real gunicorn with two workers; the event is raised by another process (like a
    Celery worker finishing a backtest); every open stream, on either worker, gets it."""
    database_url = scratch_database("notify_stream")
    values = {
        "QUANTDESK_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        "SECRET_KEY": "s" * 40,
        "JWT_SECRET_KEY": "j" * 40,
        "VAR_DIR": str(tmp_path),
        "NOTIFY_STREAM_KEEPALIVE_SECONDS": "1",
        "NOTIFY_STREAM_MAX_SECONDS": "30",
    }
    port = free_port()
    argv = [
        str(BIN / "gunicorn"),
        "-c",
        str(repo_root / "deploy" / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--graceful-timeout",
        "5",
        "quantdesk.wsgi:app",
    ]
    base = f"http://127.0.0.1:{port}/api"
    with running_server(argv, server_env(**values), port):
        status, _ = post_json(
            f"{base}/auth/register",
            '{"username": "streamer", "email": "s@example.com", "password": "long enough pw"}',
        )
        assert status == 201
        status, body = post_json(
            f"{base}/auth/login", '{"username": "streamer", "password": "long enough pw"}'
        )
        assert status == 200
        login = json.loads(body)
        streams = [
            requests.get(
                f"{base}/notifications/stream",
                params={"access_token": login["access_token"]},
                stream=True,
                timeout=(5, 20),
            )
            for _ in range(4)
        ]
        readers = [blocks(stream.iter_content(chunk_size=None)) for stream in streams]
        for reader in readers:
            assert next(reader).comments == ["connected"]
        # Another process raises the event: here, an app of the test process on the same
        # database and Redis (what a Celery worker does after a backtest).
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, **{**FAST, **values, "QUANTDESK_ENV": "production", "TASKS_EAGER": True}
        )
        elsewhere = create_app(settings)
        try:
            ext = extensions_of(elsewhere)
            with ext.db.session_scope() as session:
                raised = notify(
                    session,
                    user_id=login["user"]["id"],
                    event="backtest_finished",
                    data=BACKTEST,
                    runtime=ext,
                )
            assert raised is not None
        finally:
            extensions_of(elsewhere).db.dispose()
        received: list[Block] = []

        def read(reader: Iterator[Block]) -> None:
            for block in reader:
                if block.fields.get("event") == "notification":
                    received.append(block)
                    return

        threads = [threading.Thread(target=read, args=(reader,)) for reader in readers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        for stream in streams:
            stream.close()
        assert [block.json["id"] for block in received] == [raised.id] * 4
        assert received[0].json["event"] == "backtest_finished"
