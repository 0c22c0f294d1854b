"""MACD trend: buy when the MACD histogram turns positive, sell when it turns negative."""

from quantdesk import indicators

PARAMS = {"fast": 12, "slow": 26, "signal": 9, "lookback": 120}


def handle_bar(ctx, data):
    weight = 1 / len(ctx.universe)
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["lookback"])
        if len(close) < ctx.params["slow"] + ctx.params["signal"] + 2:
            continue
        # macd() returns (macd line, signal line, histogram).
        hist = indicators.macd(close, ctx.params["fast"], ctx.params["slow"], ctx.params["signal"])[
            2
        ]
        if hist[-2] <= 0 < hist[-1]:
            ctx.order_target_percent(symbol, weight)
            ctx.log(f"{symbol}: MACD histogram turned positive ({hist[-1]:.4f})")
        elif hist[-2] >= 0 > hist[-1]:
            ctx.order_target_percent(symbol, 0)
