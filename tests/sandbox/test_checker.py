"""The static check: API detection, PARAMS, and a violation with line and column for each rule."""

from __future__ import annotations

import time

import pytest

from quantdesk.sandbox.checker import check

EVENT = '''
"""Dual moving average."""
import numpy as np
from quantdesk import indicators
PARAMS = {"fast": 10, "slow": 30}

def initialize(ctx):
    ctx.state["entries"] = 0

def handle_bar(ctx, data):
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"]:
            continue
        label = f"{symbol}: {close[-1]:.2f}"
        ctx.log(label, "fast {} slow {}".format(1, 2))
        if close[-ctx.params["fast"]:].mean() > np.mean(close):
            ctx.order_target_percent(symbol, 1 / len(ctx.universe))
'''

VECTORIZED = """
import pandas as pd
import indicators
PARAMS = {"fast": 10, "slow": 30}

def target_weights(data, params):
    close = data.close
    long = close.rolling(params["fast"]).mean() > close.rolling(params["slow"]).mean()
    weights = long.astype(float)
    return weights.div(weights.sum(axis=1).clip(lower=1), axis=0)
"""


def test_event_strategy_is_valid_and_params_are_read() -> None:
    result = check(EVENT)
    assert result.violations == ()
    assert result.valid
    assert result.api == "event"
    assert result.params == {"fast": 10, "slow": 30}


def test_vectorized_strategy_is_valid() -> None:
    result = check(VECTORIZED)
    assert result.valid, result.violations
    assert result.api == "vectorized"


def test_both_or_neither_api_is_a_violation() -> None:
    both = check(EVENT + "\ndef target_weights(data, params):\n    return None\n")
    assert not both.valid
    assert both.api is None
    assert any("both APIs" in v.message for v in both.violations)
    neither = check("PARAMS = {}\n")
    assert not neither.valid
    assert "defines no strategy" in neither.violations[0].message


def test_wrong_signatures_are_named() -> None:
    result = check("def handle_bar(ctx):\n    pass\n")
    assert [v.message for v in result.violations] == ["handle_bar must be handle_bar(ctx, data)"]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (
            "import os",
            "import of 'os' is not allowed; allowed: math, statistics, datetime, numpy, "
            "pandas, indicators",
        ),
        ("import numpy.f2py", "import of 'numpy.f2py' is not allowed"),
        ("from subprocess import run", "import of 'subprocess' is not allowed"),
        ("from numpy import *", "'import *' is not allowed"),
        ("from numpy import load", "'.load' is not allowed"),
        ("from . import x", "relative imports are not allowed"),
        ("x = ().__class__", "names starting with '_'"),
        ("x = __import__('os')", "names starting with '_'"),
        ("x = eval('1')", "'eval' is not allowed"),
        ("x = exec", "'exec' is not allowed"),
        ("x = open('/etc/passwd')", "'open' is not allowed"),
        ("x = getattr(1, 'real' + 'x')", "may only be called with a literal attribute name"),
        ("x = getattr(1, '__class__')", "names starting with '_'"),
        ("x = globals()", "'globals' is not allowed"),
        ("def f(ctx):\n    ctx.cash = 1", "setting '.cash' is not allowed"),
        ("def f(ctx):\n    del ctx.order", "setting '.order' is not allowed"),
        ("def f(ctx):\n    setattr(ctx, 'cash', 1)", "'setattr' is not allowed"),
        ("x = type(1)", "'type' is not allowed"),
        ("import pandas as pd\nx = pd.eval('1+1')", "'.eval' is not allowed"),
        ("import pandas as pd\nx = pd.read_csv('/etc/passwd')", "'.read_csv' is not allowed"),
        ("import pandas as pd\nx = pd.io.common.os", "'.io' is not allowed"),
        ("import numpy as np\nx = np.fromfile('/etc/passwd')", "'.fromfile' is not allowed"),
        ("import statistics\nx = statistics.sys", "'.sys' is not allowed"),
        ("x = (y for y in []).gi_frame", "'.gi_frame' is not allowed"),
        ("x = '{0.real}'.format(1)", "format fields may not read attributes"),
        ("x = 'abc'\ny = x.format(1)", "only allowed on a literal string"),
        ("x = '__class__'", "text containing '__'"),
        ("x = b'raw'", "bytes literals are not allowed"),
        ("\uff45\uff56\uff41\uff4c = 1", "'eval' is not allowed"),  # fullwidth look-alike
        ("def f():\n    global g", "'global' is not allowed"),
        ("for i in range(3):\n    pass", "top-level 'for' statement is not allowed"),
        ("while True:\n    pass", "top-level 'while' statement"),
        ("class A(object):\n    pass", "classes may not have bases"),
        ("async def f():\n    pass", "async functions are not allowed"),
        ("PARAMS = {'a': len}", "PARAMS must be a literal dict"),
        ("def f(", "syntax error"),
    ],
)
def test_each_rule_gives_a_violation_a_user_understands(line: str, fragment: str) -> None:
    result = check(line + "\n\ndef handle_bar(ctx, data):\n    pass\n")
    assert not result.valid
    messages = [v.message for v in result.violations]
    assert any(fragment in message for message in messages), messages
    first = result.violations[0]
    assert first.line >= 1
    assert first.col >= 0


def test_violation_positions_are_exact() -> None:
    code = "import numpy as np\n\ndef handle_bar(ctx, data):\n    x = np.load('f')\n"
    (violation,) = check(code).violations
    assert (violation.line, violation.col) == (4, 8)


def test_size_and_depth_limits() -> None:
    huge = "x = 1\n" * 6000 + "def handle_bar(ctx, data):\n    pass\n"
    assert "lines" in check(huge).violations[0].message
    assert "bytes" in check("# " + "a" * 200_000).violations[0].message
    deep = "x = " + "[" * 200 + "1" + "]" * 200 + "\ndef handle_bar(ctx, data):\n    pass\n"
    assert not check(deep).valid


def test_check_runs_in_milliseconds() -> None:
    code = EVENT * 20  # ~600 lines
    started = time.perf_counter()
    for _ in range(10):
        check(code)
    per_check_ms = (time.perf_counter() - started) * 100
    # A generous bound: the point is "milliseconds, not seconds" (measured ~5 ms here).
    assert per_check_ms < 200


def test_initialize_may_set_the_universe() -> None:
    code = (
        "def initialize(ctx):\n    ctx.universe = ['AAA']\n\ndef handle_bar(ctx, data):\n    pass\n"
    )
    assert check(code).valid
