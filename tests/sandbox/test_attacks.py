"""Every attack of the corpus is stopped by the static check, and again by the runtime alone."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import quantdesk.engine as qe
from quantdesk.sandbox.checker import check
from quantdesk.sandbox.guard import SandboxViolation, load_strategy
from tests.sandbox.attacks import ATTACKS, PWN_FILE, Attack

LANGUAGE_ATTACKS = [a for a in ATTACKS if a.layer == "static"]


def test_the_corpus_has_at_least_40_distinct_attacks() -> None:
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)
    assert len({a.code for a in ATTACKS}) == len(ATTACKS)
    assert len(ATTACKS) >= 40


@pytest.fixture(scope="module")
def bars() -> qe.Bars:
    index = pd.bdate_range("2024-01-02", periods=5)
    close = np.linspace(10, 11, 5)
    frame = pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1e6}, index=index
    )
    return qe.Bars.from_frames({"AAA": frame})


@pytest.fixture(autouse=True)
def _no_pwn_file() -> None:
    if os.path.exists(PWN_FILE):
        os.remove(PWN_FILE)


@pytest.mark.parametrize("attack", LANGUAGE_ATTACKS, ids=lambda a: a.name)
def test_static_check_refuses(attack: Attack) -> None:
    result = check(attack.code)
    assert not result.valid, attack.code
    assert all(v.line >= 1 for v in result.violations)


def _blocked(exc: BaseException) -> bool:
    """The exception is the sandbox saying no (not the attack failing for another reason)."""
    while exc is not None:
        if isinstance(exc, SandboxViolation | SyntaxError | NameError):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


@pytest.mark.parametrize("attack", LANGUAGE_ATTACKS, ids=lambda a: a.name)
def test_runtime_guard_alone_refuses(attack: Attack, bars: qe.Bars) -> None:
    # The static check is skipped: the restricted runtime must stop the attack by itself.
    with pytest.raises(Exception) as caught:  # noqa: PT011 (the kind is checked below)
        qe.backtest(load_strategy(attack.code).namespace, bars, market="us")
    assert _blocked(caught.value), repr(caught.value)
    if attack.target:
        assert not os.path.exists(attack.target)
