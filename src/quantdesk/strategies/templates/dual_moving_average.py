"""Dual moving-average crossover: hold a symbol while its fast average is above its slow one."""

PARAMS = {"fast": 10, "slow": 30}


def handle_bar(ctx, data):
    weight = 1 / len(ctx.universe)
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"] or not data.can_trade(symbol):
            continue
        fast = close[-ctx.params["fast"] :].mean()
        held = symbol in ctx.positions
        # Trade on the crossover only, not a daily top-up to the exact weight.
        if fast > close.mean() and not held:
            ctx.order_target_percent(symbol, weight)
        elif fast <= close.mean() and held:
            ctx.order_target_percent(symbol, 0)
