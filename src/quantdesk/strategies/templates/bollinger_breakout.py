"""Bollinger breakout: enter above the upper band, exit below the middle band (vectorized)."""

PARAMS = {"period": 20, "width": 2.0}


def target_weights(data, params):
    close = data.close
    middle = close.rolling(params["period"]).mean()
    # Population deviation (ddof=0), as Bollinger and TA-Lib define the bands.
    upper = middle + params["width"] * close.rolling(params["period"]).std(ddof=0)
    weight = 1 / len(close.columns)
    # NaN means "no change": hold a position from its entry until the exit signal.
    weights = (close * 0 + weight).where(close > upper)
    return weights.mask(close < middle, 0.0)
