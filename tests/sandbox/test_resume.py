"""A resumed (paper-trading) run through the real sandbox: verified from the stored book."""

from __future__ import annotations

import copy

import pytest

import quantdesk.engine as qe
from quantdesk.sandbox.runner import Status
from quantdesk.sandbox.verify import IntegrityError, RunSpec, verify_result
from tests.sandbox import SMA, price_frame, run

BARS = qe.Bars.from_frames({"600519.SH": price_frame(120), "000001.SZ": price_frame(120, 7)})
CONFIG = {"market": "cn_a", "initial_capital": 1_000_000}


def _resume() -> dict:
    first = qe.backtest(SMA, BARS, **CONFIG)  # a whole run, to borrow a realistic book from
    book = first.book
    assert book["positions"] or first.to_dict()["pending_orders"]
    return {
        "trade_from": BARS.dates[60].date().isoformat(),
        "cash": 400_000.0,
        "positions": {"600519.SH": {"shares": 2000, "avg_cost": 95.0}},
        "pending": [{"symbol": "000001.SZ", "shares": 300}],
        "state": {"steps": 7},
    }


def test_resumed_run_comes_back_verified_with_book_and_signals() -> None:
    resume = _resume()
    outcome = run(SMA, bars=BARS, config={**CONFIG, "resume": resume}, language_layers=True)
    assert outcome.status == Status.FINISHED, (outcome.error, outcome.traceback)
    direct = qe.backtest(SMA, BARS, **CONFIG, resume=resume).to_dict()
    assert outcome.result == direct
    assert set(outcome.result["book"]) == {"cash", "positions"}
    fills = outcome.result["fills"]
    assert fills
    assert min(f["date"] for f in fills) >= resume["trade_from"]
    # The queued order filled on the first trading day.
    first_day = [f for f in fills if f["date"] == resume["trade_from"]]
    assert [(f["symbol"], f["side"]) for f in first_day] == [("000001.SZ", "buy")]
    assert outcome.result["state"] == {"steps": 7}  # SMA does not touch ctx.state


def test_a_fill_before_trade_from_is_an_integrity_failure() -> None:
    resume = _resume()
    honest = qe.backtest(SMA, BARS, **CONFIG, resume=resume).to_dict()
    lie = copy.deepcopy(honest)
    lie["fills"][0]["date"] = BARS.dates[59].date().isoformat()
    spec = RunSpec.from_config({**CONFIG, "resume": resume}, BARS)
    with pytest.raises(IntegrityError, match="before the run's first trading day"):
        verify_result(lie, BARS, spec)
    unasked = copy.deepcopy(honest)
    spec_no_pending = RunSpec.from_config({**CONFIG, "resume": {**resume, "pending": []}}, BARS)
    with pytest.raises(IntegrityError):
        verify_result(unasked, BARS, spec_no_pending)
