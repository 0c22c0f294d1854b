"""File tests: the uploads a client makes, and sample files of every accepted type."""

from __future__ import annotations

import datetime as dt
import io
import math
from typing import Any
from urllib.parse import quote

from openpyxl import Workbook
from werkzeug.test import TestResponse

from tests.support import Account, Api

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # the magic, then every byte value
JPG = b"\xff\xd8\xff\xe0" + bytes(range(255, -1, -1)) * 4
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
HTML = "<!doctype html><title>报告</title><p>Sharpe 1.2</p>\n".encode()
STRATEGY = b'''"""Buy and hold."""

PARAMS = {"weight": 0.9}


def handle_bar(ctx, data):
    for symbol in ctx.universe:
        if symbol not in ctx.positions and data.can_trade(symbol):
            ctx.order_target_percent(symbol, ctx.params["weight"] / len(ctx.universe))
'''


def upload(
    api: Api,
    account: Account,
    content: bytes,
    filename: str,
    *,
    category: str | None = None,
    dataset: str | None = None,
    part_type: str = "application/octet-stream",
) -> TestResponse:
    """POST /api/files/upload as a browser's form would (multipart/form-data)."""
    data: dict[str, Any] = {"file": (io.BytesIO(content), filename, part_type)}
    if category is not None:
        data["category"] = category
    if dataset is not None:
        data["dataset"] = dataset
    return api.post(
        "/api/files/upload",
        data=data,
        headers=account.headers,
        content_type="multipart/form-data",
    )


def upload_named(
    api: Api, account: Account, content: bytes, filename: str, *, category: str
) -> TestResponse:
    """An upload whose file name reaches the server exactly as given, whatever it holds.

    The test client writes names into a quoted string unescaped, so a backslash or a quote
    would be mangled on the way; RFC 7578/2231 `filename*` percent-encodes every character.
    """
    boundary = "quantdesk-test-boundary-7f3a"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="category"\r\n\r\n'
        f"{category}\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; '
        f"filename*=UTF-8''{quote(filename, safe='')}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return api.post(
        "/api/files/upload",
        data=body,
        headers=account.headers,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def uploaded(
    api: Api, account: Account, content: bytes, filename: str, **kw: Any
) -> dict[str, Any]:
    response = upload(api, account, content, filename, **kw)
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def price_rows(days: int = 260, start: dt.date = dt.date(2023, 1, 2)) -> list[list[Any]]:
    """Weekday bars of a smooth deterministic walk with swings a moving average can trade."""
    rows: list[list[Any]] = []
    day = start
    while len(rows) < days:
        if day.weekday() < 5:
            i = len(rows)
            close = round(100 + 15 * math.sin(i / 18) + i * 0.05, 2)
            open_ = round(close * (1 - 0.004 * math.cos(i)), 2)
            high = round(max(open_, close) * 1.01, 2)
            low = round(min(open_, close) * 0.99, 2)
            rows.append([day, open_, high, low, close, 10_000 + 37 * i])
        day += dt.timedelta(days=1)
    return rows


HEADER = ["date", "open", "high", "low", "close", "volume"]


def csv_of(rows: list[list[Any]], header: list[str] = HEADER) -> bytes:
    lines = [",".join(header)]
    for row in rows:
        cells = [c.isoformat() if isinstance(c, dt.date) else str(c) for c in row]
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def xlsx_of(rows: list[list[Any]], header: list[str] = HEADER) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
