"""The request each webhook kind expects, and how each says whether it accepted it.

Pure functions (no I/O), from the platforms' group-bot documentation:
- DingTalk: `{"msgtype": "markdown", "markdown": {"title", "text"}}`; with a secret, the URL gets
  `timestamp` (ms) and `sign` = Base64(HMAC-SHA256(key=secret, msg="{timestamp}\\n{secret}")).
  Answers `{"errcode": 0, "errmsg": "ok"}`.
- WeCom: `{"msgtype": "markdown", "markdown": {"content"}}` (at most 4096 bytes); the key is in
  the URL. Answers `{"errcode": 0, ...}`.
- Feishu / Lark: `{"msg_type": "text", "content": {"text"}}`; with a secret, the body gets
  `timestamp` (s) and `sign` = Base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg="")).
  Answers `{"code": 0, ...}` (older bots: `{"StatusCode": 0}`).
- generic: our JSON; with a secret, `X-QuantDesk-Signature: sha256=<hex HMAC-SHA256(secret,
  "{timestamp}." + body)>` and `X-QuantDesk-Timestamp`, so a receiver can refuse replays.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from quantdesk.notifications.events import WebhookKind

USER_AGENT = "QuantDesk-Webhook/1"
_MARKDOWN_LIMIT = {WebhookKind.WECOM: 4096, WebhookKind.DINGTALK: 18000}
_TEXT_LIMIT = 18000


@dataclass(frozen=True)
class Message:
    event: str
    notification_id: int
    title: str
    text: str  # plain text (the in-app body)
    markdown: str  # the webhook template's Markdown
    data: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class OutgoingRequest:
    url: str
    body: bytes
    headers: dict[str, str]


def truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore") + "..."


def _hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    return _hmac_b64(secret.encode(), f"{timestamp_ms}\n{secret}".encode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    return _hmac_b64(f"{timestamp_s}\n{secret}".encode(), b"")


def generic_signature(secret: str, timestamp_s: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in extra]
    return urlunsplit(parts._replace(query=urlencode([*query, *extra.items()])))


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def build_request(
    kind: WebhookKind, url: str, secret: str | None, message: Message, *, now: float
) -> OutgoingRequest:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
    }
    if kind is WebhookKind.DINGTALK:
        text = truncate_utf8(message.markdown, _MARKDOWN_LIMIT[kind])
        body = _json({"msgtype": "markdown", "markdown": {"title": message.title, "text": text}})
        if secret:
            timestamp = int(now * 1000)
            url = _with_query(
                url, {"timestamp": str(timestamp), "sign": dingtalk_sign(secret, timestamp)}
            )
        return OutgoingRequest(url, body, headers)
    if kind is WebhookKind.WECOM:
        content = truncate_utf8(message.markdown, _MARKDOWN_LIMIT[kind])
        return OutgoingRequest(
            url, _json({"msgtype": "markdown", "markdown": {"content": content}}), headers
        )
    if kind is WebhookKind.FEISHU:
        text = truncate_utf8(f"{message.title}\n{message.text}", _TEXT_LIMIT)
        payload: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if secret:
            timestamp = int(now)
            payload |= {"timestamp": str(timestamp), "sign": feishu_sign(secret, timestamp)}
        return OutgoingRequest(url, _json(payload), headers)
    body = _json(
        {
            "event": message.event,
            "notification_id": message.notification_id,
            "title": message.title,
            "text": message.text,
            "markdown": message.markdown,
            "data": message.data,
            "created_at": message.created_at,
        }
    )
    headers["X-QuantDesk-Event"] = message.event
    if secret:
        timestamp = int(now)
        headers["X-QuantDesk-Timestamp"] = str(timestamp)
        headers["X-QuantDesk-Signature"] = generic_signature(secret, timestamp, body)
    return OutgoingRequest(url, body, headers)


def refusal(kind: WebhookKind, answer: Any) -> str | None:
    """The platform's own error in a 2xx answer, or None when it accepted the message."""
    if kind is WebhookKind.GENERIC or not isinstance(answer, dict):
        return None
    if kind in (WebhookKind.DINGTALK, WebhookKind.WECOM):
        code, text = answer.get("errcode"), answer.get("errmsg")
    else:
        code = answer.get("code", answer.get("StatusCode"))
        text = answer.get("msg", answer.get("StatusMessage"))
    if code in (0, None):
        return None
    return f"the bot answered code {code}: {text}"
