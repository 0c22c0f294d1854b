"""Webhooks are not a way into our network: refuse targets that resolve to non-public addresses.

Checked twice: when a user saves a URL (a clear 422), and at connection time for every request,
on the very address the socket connects to, so a name that resolves elsewhere later (DNS
rebinding) is refused too. Redirects are never followed and environment proxies are ignored.
WEBHOOK_ALLOW_PRIVATE_NETWORKS turns the checks off (the embedded default on a user's laptop).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.connection import create_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RefusedTarget(Exception):
    """The URL's host is not allowed (a non-public address), or the URL is not a web URL."""


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address, looking through IPv6 wrappings of IPv4 ones."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded: IPAddress | None = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def split_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL; RefusedTarget for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"}:
        raise RefusedTarget("only http and https URLs are allowed")
    if not parts.hostname:
        raise RefusedTarget("the URL has no host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL that is not http(s), or (unless allowed) whose host is not public."""
    host, port = split_url(url)
    if allow_private:
        return
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise RefusedTarget(f"the host {host} does not resolve: {exc}") from None
    for address in addresses:
        if not is_public(address):
            raise RefusedTarget(f"{host} resolves to {address}, which is not a public address")


# ---------------------------------------------------------------- connection-time guard


def _guarded_socket(connection: HTTPConnection) -> socket.socket:
    """Resolve, refuse any non-public address, then connect to the checked address itself."""
    host, port = connection._dns_host, connection.port
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        raise RefusedTarget(f"the host {host} does not resolve: {exc}") from None
    refused = [address for address in addresses if not is_public(address)]
    if refused:
        raise RefusedTarget(f"{host} resolves to {refused[0]}, which is not a public address")
    error: OSError | None = None
    for address in addresses:
        try:
            return create_connection(
                (str(address), port),
                connection.timeout,
                source_address=connection.source_address,
                socket_options=connection.socket_options,
            )
        except OSError as exc:
            error = exc
    raise error or OSError(f"no address to connect to for {host}")


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded_socket(self)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded_socket(self)  # TLS then verifies the certificate for the host name


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }


def http_session(*, allow_private: bool) -> requests.Session:
    """A requests session for webhooks: no environment proxies, guarded unless allowed."""
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment would hide the real target
    if not allow_private:
        adapter = _GuardedAdapter(max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session
