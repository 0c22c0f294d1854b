"""Momentum rotation: each week hold the top N symbols by 20-day return, equally weighted."""

import numpy as np

PARAMS = {"top_n": 3, "lookback": 20}


def target_weights(data, params):
    close = data.close
    momentum = close / close.shift(params["lookback"]) - 1
    ranks = momentum.rank(axis=1, ascending=False, method="first")
    top = (ranks <= params["top_n"]) & momentum.notna()
    weights = top.astype(float).div(top.sum(axis=1).clip(lower=1), axis=0)
    # Rebalance on the last trading day of each week, once the lookback is filled.
    week = close.index.to_series().dt.isocalendar()
    key = (week["year"] * 100 + week["week"]).astype("int64")
    rebalance = (key != key.shift(-1)).to_numpy() & momentum.notna().any(axis=1).to_numpy()
    # Rows off the rebalance days become NaN: "no change".
    return weights.mul(np.where(rebalance, 1.0, np.nan), axis=0)
