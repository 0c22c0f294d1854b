"""The built-in templates: one title and a few lines per event and language, in three channel forms.

Seeded into `notification_templates` on first use, where an administrator may edit them; the
rendering falls back to these when a stored template is broken. Every line is Jinja2 over
`data` (the event's data, see events.py), `user` and `title`; filters: pct (0.1234 -> 12.34%),
num (1234.5 -> 1,234.50), signed (5.1 -> +5.10).
"""

# The Chinese templates use full-width punctuation on purpose (it is correct Chinese).
# ruff: noqa: RUF001

from __future__ import annotations

from quantdesk.notifications.events import Channel, Event

_NAME = "{{ data.name or ('#' ~ data.backtest_id) }}"
_SIGNAL_EN = (
    "{% for s in data.signals %}- {{ s.action | upper }} {{ s.symbol }}"
    "{% if s.quantity is number %} x {{ s.quantity }}{% endif %}"
    "{% if s.price is number %} @ {{ s.price | num }}{% endif %}"
    "{% if s.weight is number %} (weight {{ s.weight | pct }}){% endif %}\n{% endfor %}"
)
_SIGNAL_ZH = (
    "{% for s in data.signals %}- {{ {'buy': '买入', 'sell': '卖出'}.get(s.action, s.action) }}"
    " {{ s.symbol }}"
    "{% if s.quantity is number %} {{ s.quantity }} 股{% endif %}"
    "{% if s.price is number %}，价格 {{ s.price | num }}{% endif %}"
    "{% if s.weight is number %}，目标权重 {{ s.weight | pct }}{% endif %}\n{% endfor %}"
)
_CONDITION_EN = (
    "{% if data.condition == 'above' %}Crossed above {{ data.threshold | num }}."
    "{% elif data.condition == 'below' %}Crossed below {{ data.threshold | num }}."
    "{% elif data.condition == 'rise_pct' %}Rose at least {{ data.threshold | num }}% in a day."
    "{% else %}Fell at least {{ data.threshold | num }}% in a day.{% endif %}"
)
_CONDITION_ZH = (
    "{% if data.condition == 'above' %}向上突破 {{ data.threshold | num }}。"
    "{% elif data.condition == 'below' %}向下跌破 {{ data.threshold | num }}。"
    "{% elif data.condition == 'rise_pct' %}单日涨幅达到 {{ data.threshold | num }}%。"
    "{% else %}单日跌幅达到 {{ data.threshold | num }}%。{% endif %}"
)

# (event, language) -> (title, lines)
_TEXTS: dict[tuple[Event, str], tuple[str, list[str]]] = {
    (Event.BACKTEST_FINISHED, "en"): (
        f"Backtest finished: {_NAME}",
        [
            "Strategy: {{ data.strategy_name }}",
            "Total return {{ data.total_return | pct }}, annual {{ data.annual_return | pct }}, "
            "Sharpe {{ data.sharpe_ratio | num }}, max drawdown {{ data.max_drawdown | pct }}.",
            "Final value: {{ data.final_value | num }}",
        ],
    ),
    (Event.BACKTEST_FINISHED, "zh-CN"): (
        f"回测完成：{_NAME}",
        [
            "策略：{{ data.strategy_name }}",
            "总收益 {{ data.total_return | pct }}，年化 {{ data.annual_return | pct }}，"
            "夏普比率 {{ data.sharpe_ratio | num }}，最大回撤 {{ data.max_drawdown | pct }}。",
            "期末资产：{{ data.final_value | num }}",
        ],
    ),
    (Event.BACKTEST_FAILED, "en"): (
        f"Backtest failed: {_NAME}",
        ["Strategy: {{ data.strategy_name }}", "Error: {{ data.error }}"],
    ),
    (Event.BACKTEST_FAILED, "zh-CN"): (
        f"回测失败：{_NAME}",
        ["策略：{{ data.strategy_name }}", "错误：{{ data.error }}"],
    ),
    (Event.STRATEGY_SIGNAL, "en"): (
        "Signal from {{ data.strategy_name }}",
        ["{% if data.date %}Date: {{ data.date }}{% endif %}", _SIGNAL_EN],
    ),
    (Event.STRATEGY_SIGNAL, "zh-CN"): (
        "交易信号：{{ data.strategy_name }}",
        ["{% if data.date %}日期：{{ data.date }}{% endif %}", _SIGNAL_ZH],
    ),
    (Event.STRATEGY_ERROR, "en"): (
        "Strategy error: {{ data.strategy_name }}",
        ["Paper trading stopped with an error: {{ data.error }}"],
    ),
    (Event.STRATEGY_ERROR, "zh-CN"): (
        "策略出错：{{ data.strategy_name }}",
        ["模拟交易因错误停止：{{ data.error }}"],
    ),
    (Event.PRICE_ALERT, "en"): (
        "Price alert: {{ data.symbol }} closed at {{ data.last_close | num }}",
        [
            _CONDITION_EN,
            "Change {{ data.change_pct | signed }}% from the previous close "
            "{{ data.previous_close | num }}{% if data.date %} on {{ data.date }}{% endif %}.",
            "{% if data.note %}Note: {{ data.note }}{% endif %}",
        ],
    ),
    (Event.PRICE_ALERT, "zh-CN"): (
        "价格提醒：{{ data.symbol }} 收于 {{ data.last_close | num }}",
        [
            _CONDITION_ZH,
            "{% if data.date %}{{ data.date }} {% endif %}涨跌幅 {{ data.change_pct | signed }}%"
            "（前收盘 {{ data.previous_close | num }}）。",
            "{% if data.note %}备注：{{ data.note }}{% endif %}",
        ],
    ),
    (Event.SYSTEM, "en"): ("{{ data.title or 'System notice' }}", ["{{ data.message }}"]),
    (Event.SYSTEM, "zh-CN"): ("{{ data.title or '系统通知' }}", ["{{ data.message }}"]),
    (Event.TEST, "en"): (
        "QuantDesk test notification",
        ["{{ data.message or 'If you can read this, the channel works.' }}"],
    ),
    (Event.TEST, "zh-CN"): (
        "QuantDesk 测试通知",
        ["{{ data.message or '看到这条消息，说明该通知渠道工作正常。' }}"],
    ),
}

_FOOTER = {
    "en": "Sent by QuantDesk. Choose what you receive in your notification settings.",
    "zh-CN": "来自 QuantDesk。可在通知设置中选择接收哪些通知。",
}

_HTML = """<!doctype html>
<html lang="{language}">
<body style="font-family: -apple-system, 'Segoe UI', 'PingFang SC', 'Microsoft YaHei', \
sans-serif; color: #1f2328; line-height: 1.6;">
<h2 style="font-size: 18px;">{{{{ title }}}}</h2>
{paragraphs}
<hr style="border: none; border-top: 1px solid #d0d7de;">
<p style="color: #6e7781; font-size: 12px;">{footer}</p>
</body>
</html>
"""


def _html(language: str, lines: list[str]) -> str:
    paragraphs = "\n".join(f'<p style="white-space: pre-line;">{line}</p>' for line in lines)
    return _HTML.format(language=language, paragraphs=paragraphs, footer=_FOOTER[language])


def _markdown(lines: list[str]) -> str:
    # "QuantDesk" in every message also satisfies a DingTalk bot's keyword check.
    return "#### {{ title }}\n\n" + "\n\n".join(lines) + "\n\n> QuantDesk"


def _build() -> dict[tuple[str, str, str], tuple[str, str]]:
    built: dict[tuple[str, str, str], tuple[str, str]] = {}
    for (event, language), (title, lines) in _TEXTS.items():
        built[(event.value, Channel.IN_APP.value, language)] = (title, "\n".join(lines))
        built[(event.value, Channel.EMAIL.value, language)] = (title, _html(language, lines))
        built[(event.value, Channel.WEBHOOK.value, language)] = (title, _markdown(lines))
    return built


# (event, channel, language) -> (subject, body)
DEFAULT_TEMPLATES: dict[tuple[str, str, str], tuple[str, str]] = _build()
