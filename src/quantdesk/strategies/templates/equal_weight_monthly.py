"""Equal weight, rebalanced monthly: every symbol gets 1/N of equity on each month's last day."""

import numpy as np

PARAMS = {}


def target_weights(data, params):
    close = data.close
    has_price = close.notna()
    weights = has_price.astype(float).div(has_price.sum(axis=1).clip(lower=1), axis=0)
    month = close.index.to_series().dt.to_period("M")
    last_of_month = (month != month.shift(-1)).to_numpy()
    # Rows off the rebalance days become NaN: "no change".
    return weights.mul(np.where(last_of_month, 1.0, np.nan), axis=0)
