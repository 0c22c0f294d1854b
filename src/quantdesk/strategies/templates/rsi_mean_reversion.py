"""RSI mean reversion: buy oversold (RSI below 30), sell once overbought (RSI above 70)."""

from quantdesk import indicators

PARAMS = {"period": 14, "oversold": 30, "overbought": 70}


def handle_bar(ctx, data):
    weight = 1 / len(ctx.universe)
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["period"] * 5)
        if len(close) <= ctx.params["period"] + 1:
            continue
        value = indicators.rsi(close, ctx.params["period"])[-1]
        held = ctx.positions.get(symbol)
        if value < ctx.params["oversold"] and held is None:
            ctx.order_target_percent(symbol, weight)
        elif value > ctx.params["overbought"] and held is not None:
            ctx.order_target_percent(symbol, 0)
        ctx.record(rsi=value)
