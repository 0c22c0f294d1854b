"""Webhooks are not a way into our network: private targets refused at save and at delivery."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import pytest
from flask import Flask

from quantdesk.notifications import netguard
from quantdesk.settings import Settings
from tests.conftest import TEST_DATABASE_URL
from tests.notifications.conftest import (
    FAST_RETRIES,
    Receiver,
    deliveries,
    put_settings,
    raise_event,
)
from tests.support import Api, assert_error


@pytest.fixture
def guarded(make_app: Callable[..., Flask]) -> Api:
    return Api(make_app(WEBHOOK_ALLOW_PRIVATE_NETWORKS=False, **FAST_RETRIES))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/hook",
        "http://localhost:8080/hook",  # a name that resolves to loopback
        "http://0.0.0.0/hook",
        "http://[::ffff:192.168.1.1]/hook",  # IPv4 inside IPv6
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    ],
)
def test_private_targets_are_refused_when_saved(guarded: Api, url: str) -> None:
    account = guarded.logged_in()
    response = guarded.put(
        "/api/notifications/settings",
        headers=account.headers,
        json={"webhooks": [{"kind": "generic", "url": url}]},
    )
    error = assert_error(response, 422, "validation_error")
    message = error["details"]["webhooks"]["0"]["url"][0]
    assert "not a public address" in message
    stored = guarded.get("/api/notifications/settings", headers=account.headers).get_json()
    assert stored["webhooks"] == []


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost"])
def test_only_web_urls_are_accepted(guarded: Api, url: str) -> None:
    account = guarded.logged_in()
    response = guarded.put(
        "/api/notifications/settings",
        headers=account.headers,
        json={"webhooks": [{"kind": "generic", "url": url}]},
    )
    assert "url" in assert_error(response, 422)["details"]["webhooks"]["0"]


def test_the_embedded_default_allows_the_local_network(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    put_settings(napi, account, {"webhooks": [{"kind": "generic", "url": receiver.url("/lan")}]})
    raise_event(napi.app, account.id, "system", {"message": "hello"})
    assert len(receiver.to("/lan")) == 1


def test_a_name_that_resolves_privately_later_is_refused_at_delivery(
    guarded: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: public when saved, loopback when sent; the connection is never made."""
    account = guarded.logged_in()
    url = f"http://localhost:{receiver.port}/rebound"
    real_resolve = netguard.resolve
    monkeypatch.setattr(
        netguard, "resolve", lambda host, port: [ipaddress.ip_address("93.184.216.34")]
    )
    put_settings(guarded, account, {"webhooks": [{"kind": "generic", "url": url}]})
    monkeypatch.setattr(netguard, "resolve", real_resolve)
    notification_id = raise_event(guarded.app, account.id, "system", {"message": "x"})
    assert receiver.requests == []
    (row,) = [
        row for row in deliveries(guarded, account, notification_id) if row["channel"] == "webhook"
    ]
    assert row["outcome"] == "refused"
    assert row["attempt"] == 1  # refusals are not retried
    assert "not a public address" in row["error"]


def test_the_connection_itself_is_checked(
    guarded: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if the pre-check passed, the socket refuses an address that is not public."""
    calls: list[str] = []
    real_resolve = netguard.resolve

    def resolve_public_once(host: str, port: int) -> list:
        calls.append(host)
        if len(calls) == 1:  # the delivery's pre-check sees a public address ...
            return [ipaddress.ip_address("93.184.216.34")]
        return real_resolve(host, port)  # ... the connection sees loopback

    monkeypatch.setattr(netguard, "resolve", resolve_public_once)
    session = netguard.http_session(allow_private=False)
    netguard.check_url(f"http://localhost:{receiver.port}/x", allow_private=False)
    with pytest.raises(netguard.RefusedTarget, match="not a public address"):
        session.post(f"http://localhost:{receiver.port}/x", data=b"{}", timeout=5)
    assert receiver.requests == []
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("224.0.0.1", False),  # multicast
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert netguard.is_public(ipaddress.ip_address(address)) is public


def test_resolution_covers_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """One private address among public ones is enough to refuse."""
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 80)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(netguard.RefusedTarget, match=r"10\.0\.0\.7"):
        netguard.check_url("https://hooks.example.com/x", allow_private=False)


def test_private_networks_default_to_off_in_production_only(tmp_path) -> None:
    secrets = {"SECRET_KEY": "s" * 40, "JWT_SECRET_KEY": "j" * 40}
    development = Settings(_env_file=None, VAR_DIR=tmp_path)  # type: ignore[call-arg]
    production = Settings(  # type: ignore[call-arg]
        _env_file=None,
        VAR_DIR=tmp_path,
        QUANTDESK_ENV="production",
        DATABASE_URL=TEST_DATABASE_URL,
        **secrets,
    )
    intranet = Settings(  # type: ignore[call-arg]
        _env_file=None,
        VAR_DIR=tmp_path,
        QUANTDESK_ENV="production",
        DATABASE_URL=TEST_DATABASE_URL,
        WEBHOOK_ALLOW_PRIVATE_NETWORKS=True,
        **secrets,
    )
    assert development.webhook_allow_private_networks is True
    assert production.webhook_allow_private_networks is False
    assert intranet.webhook_allow_private_networks is True  # only when set explicitly
