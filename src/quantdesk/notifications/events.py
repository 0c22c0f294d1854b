"""The names the notifications domain shares with its callers: events, channels, webhook kinds.

Each event documents the `data` its callers pass to `notify()`; the default templates read
those keys (a missing key renders as empty, never as an error).
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    # data: backtest_id, name, strategy_name, total_return, annual_return, sharpe_ratio,
    # max_drawdown, final_value (returns and drawdown as fractions: 0.12 is 12%)
    BACKTEST_FINISHED = "backtest_finished"
    # data: backtest_id, name, strategy_name, error
    BACKTEST_FAILED = "backtest_failed"
    # data: strategy_id, strategy_name, date, signals: [{symbol, action, quantity, price, weight}]
    STRATEGY_SIGNAL = "strategy_signal"
    # data: strategy_id, strategy_name, error
    STRATEGY_ERROR = "strategy_error"
    # data: alert_id, symbol, condition, threshold, last_close, previous_close, change_pct, date
    PRICE_ALERT = "price_alert"
    # data: title, message
    SYSTEM = "system"
    # data: message
    TEST = "test"


class Channel(StrEnum):
    IN_APP = "in_app"  # a row in the inbox, pushed to open streams
    EMAIL = "email"
    WEBHOOK = "webhook"  # every enabled webhook of the user


class WebhookKind(StrEnum):
    GENERIC = "generic"  # our JSON, optionally signed (X-QuantDesk-Signature)
    DINGTALK = "dingtalk"  # DingTalk group bot, markdown, optional HMAC signature
    WECOM = "wecom"  # WeCom (WeChat Work) group bot, markdown
    FEISHU = "feishu"  # Feishu / Lark group bot, text, optional signature


class Outcome(StrEnum):
    SENT = "sent"
    LOGGED = "logged"  # email with no SMTP_HOST: written to the log and the outbox
    FAILED = "failed"
    REFUSED = "refused"  # the target is not allowed (a private address): never retried
    SKIPPED = "skipped"  # nothing to send to any more (a deleted or disabled webhook)


SUCCESS = frozenset({Outcome.SENT, Outcome.LOGGED})

LANGUAGES = ("zh-CN", "en")
FALLBACK_LANGUAGE = "en"


def language_of(preferred: str | None) -> str:
    return preferred if preferred in LANGUAGES else FALLBACK_LANGUAGE


def default_matrix() -> dict[str, dict[str, bool]]:
    """Every event on every channel: a user turns off what is too much."""
    return {event.value: {channel.value: True for channel in Channel} for event in Event}
