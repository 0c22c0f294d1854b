"""Every attack of the corpus is stopped by the static check, and again by the runtime alone."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import quantdesk.engine as qe
from quantdesk.sandbox.checker import check
from quantdesk.sandbox.guard import SandboxViolation, load_strategy
from quantdesk.sandbox.runner import SandboxOutcome
from tests.sandbox import run
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


def _in_sandbox(attack: Attack, **limits: object) -> SandboxOutcome:
    code = attack.code.replace("'AAA'", "'AAPL'")
    return run(code, language_layers=True, **limits)


@pytest.mark.slow
@pytest.mark.parametrize("attack", LANGUAGE_ATTACKS, ids=lambda a: a.name)
def test_language_attacks_fail_in_the_real_sandbox(attack: Attack) -> None:
    outcome = _in_sandbox(attack)
    assert outcome.status == "failed", outcome
    assert outcome.error
    if attack.target:
        assert not os.path.exists(attack.target)


RESOURCE_ATTACKS = [a for a in ATTACKS if a.layer == "os"]
EXPECTED_STOP = {
    "infinite loop": "stopped: CPU time limit",
    "sleep past timeout": "stopped: CPU time limit",
    "memory bomb": "stopped:",
    "gigantic state": "stopped:",
}


@pytest.mark.slow
@pytest.mark.parametrize("attack", RESOURCE_ATTACKS, ids=lambda a: a.name)
def test_resource_attacks_are_stopped_by_the_process_limits(attack: Attack) -> None:
    outcome = _in_sandbox(
        attack, cpu_seconds=2, wall_seconds=6, max_log_lines=100, max_result_bytes=1_000_000
    )
    if attack.name == "huge log":
        # Either the CPU limit stops it, or it finishes with the log cut to its cap.
        if outcome.status == "finished":
            assert len(outcome.logs) <= 101
        else:
            assert outcome.error is not None
            assert outcome.error.startswith("stopped:")
        return
    assert outcome.status == "failed", outcome
    assert outcome.error
    expected = EXPECTED_STOP.get(attack.name)
    if expected:
        assert outcome.error.startswith(expected), outcome.error
    if attack.name == "deep recursion":
        assert "RecursionError" in outcome.error
        assert outcome.traceback is not None
        assert "strategy.py" in outcome.traceback
        assert "quantdesk" not in outcome.traceback
