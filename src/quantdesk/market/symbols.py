"""One spelling per instrument: `600519.SH`, `000001.SZ`, `430047.BJ`, `AAPL` (API.md).

Clients and providers spell codes in many ways (`sh600519`, `600519`, `600519.ss`); every
symbol is normalised here once, so the database, the cache keys and the engine see one form.
User data sets (`user:<name>`, issue 9) are a namespace of their own and pass through as-is.
"""

from __future__ import annotations

import re
from enum import StrEnum

A_SHARE = re.compile(r"^(\d{6})\.(SH|SZ|BJ)$")
US_TICKER = re.compile(r"^[A-Z][A-Z0-9-]{0,9}$")
USER_SET = re.compile(r"^user:[a-z0-9][a-z0-9_-]{0,39}$")
_PREFIXED = re.compile(r"^(SH|SZ|BJ)(\d{6})$")
_YAHOO_SUFFIX = {"SS": "SH", "SZ": "SZ", "BJ": "BJ"}

MAX_SYMBOL_LENGTH = 48


class Market(StrEnum):
    """Which rulebook and calendar a symbol trades under (the engine's market profiles)."""

    CN_A = "cn_a"
    US = "us"
    USER = "user"


def exchange_of_code(code: str) -> str:
    """The exchange of a bare six-digit A-share code: 6/9 Shanghai, 4/8/92 Beijing, else Shenzhen.

    Bare codes are read as stocks; an index such as the SSE Composite (000001.SH) needs its
    suffix, since 000001 alone is Ping An Bank (000001.SZ).
    """
    if code.startswith(("6", "900")):
        return "SH"
    if code.startswith(("4", "8", "92")):
        return "BJ"
    return "SZ"


def normalise(raw: str) -> str | None:
    """The canonical symbol for a client's or provider's spelling, or None if it is no symbol."""
    text = raw.strip()
    if USER_SET.match(text):
        return text
    text = text.upper()
    if len(text) > MAX_SYMBOL_LENGTH:
        return None
    if A_SHARE.match(text):
        return text
    code, dot, suffix = text.partition(".")
    if dot and code.isdigit() and len(code) == 6 and suffix in _YAHOO_SUFFIX:
        return f"{code}.{_YAHOO_SUFFIX[suffix]}"
    prefixed = _PREFIXED.match(text)
    if prefixed:
        return f"{prefixed.group(2)}.{prefixed.group(1)}"
    if text.isdigit() and len(text) == 6:
        return f"{text}.{exchange_of_code(text)}"
    if US_TICKER.match(text):
        return text
    return None


def market_of(symbol: str) -> Market:
    if symbol.startswith("user:"):
        return Market.USER
    return Market.CN_A if A_SHARE.match(symbol) else Market.US


def split(symbol: str) -> tuple[str, str]:
    """`600519.SH` -> ("600519", "SH"); a US ticker -> (ticker, "")."""
    code, _, suffix = symbol.partition(".")
    return code, suffix


def prefixed(symbol: str) -> str:
    """`600519.SH` -> `sh600519`, the spelling of Tencent and of akshare's index functions."""
    code, suffix = split(symbol)
    return f"{suffix.lower()}{code}"


def is_cn_index(symbol: str) -> bool:
    """SSE indices are 000xxx.SH (SSE stocks start with 6 or 9), SZSE 399xxx, BSE 899xxx."""
    code, suffix = split(symbol)
    return (
        (suffix == "SH" and code.startswith("000"))
        or (suffix == "SZ" and code.startswith("399"))
        or (suffix == "BJ" and code.startswith("899"))
    )
