"""The restricted runtime on its own (static check bypassed): what gets through, what does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import quantdesk.engine as qe
from quantdesk.sandbox.guard import SandboxViolation, load_strategy
from tests.sandbox.test_checker import EVENT, VECTORIZED


def _bars() -> qe.Bars:
    rng = np.random.default_rng(7)
    frames = {}
    for symbol in ("AAA", "BBB"):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 120)))
        open_ = close * (1 + rng.normal(0, 0.003, 120))
        frames[symbol] = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) * 1.01,
                "low": np.minimum(open_, close) * 0.99,
                "close": close,
                "volume": 1e6,
            },
            index=pd.bdate_range("2023-01-02", periods=120),
        )
    return qe.Bars.from_frames(frames)


@pytest.mark.parametrize("code", [EVENT, VECTORIZED])
def test_guarded_strategy_trades_exactly_like_the_plain_one(code: str) -> None:
    # Plain exec has no `indicators` alias (the sandbox provides it); the strategies don't use it.
    code = code.replace("from quantdesk import indicators\n", "").replace("import indicators\n", "")
    bars = _bars()
    plain = qe.backtest(code, bars, market="us", initial_capital=100_000)
    guarded = qe.backtest(load_strategy(code).namespace, bars, market="us", initial_capital=100_000)
    assert len(plain.fills) > 0
    pd.testing.assert_frame_equal(plain.fills, guarded.fills)
    assert plain.metrics["final_value"] == guarded.metrics["final_value"]


def _run_event(body: str) -> qe.Result:
    code = "import numpy as np\nimport pandas as pd\nimport statistics\n\n"
    code += "def handle_bar(ctx, data):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    return qe.backtest(load_strategy(code).namespace, _bars(), market="us")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # Modules reached through allowed ones are refused by *type*, whatever the name.
        ("x = np.ma.core", "module 'numpy.ma' is not available"),
        ("x = np.random.mtrand", "module 'numpy.random.mtrand' is not available"),
        ("x = pd.arrays", "module 'pandas.arrays' is not available"),
        ("x = getattr(statistics, 'sys')", "attribute 'sys' is not allowed"),
        ("x = getattr(np, 'lo' + 'ad')", "attribute 'load' is not allowed"),
        ("x = getattr(pd, 'read_' + 'csv')", "attribute 'read_csv' is not allowed"),
        ("x = getattr(np, 'f2py')", "attribute 'f2py' is not allowed"),
        ("x = getattr(pd.DataFrame({'a': [1]}), 'qu' + 'ery')", "attribute 'query' is not allowed"),
        ("x = getattr(1, '_' + '_class__')", "names starting with '_'"),
        ("g = (i for i in [1])\nx = getattr(g, 'gi_' + 'frame')", "attribute 'gi_frame'"),
        ("x = '{0.gi_frame}'.format((i for i in [1]))", "format fields may not read"),
        ("x = getattr(str, 'form' + 'at')('{0.real}', 1)", "str.format may only be called"),
        ("ctx.cash = 1e12", "setting attribute 'cash' is not allowed"),
        ("np.mean = None", "modules are read-only"),
    ],
)
def test_runtime_guard_refuses(body: str, message: str) -> None:
    # The engine reports a strategy's exception as a StrategyError carrying the cause.
    with pytest.raises(qe.StrategyError, match=message) as caught:
        _run_event(body)
    assert isinstance(caught.value.__cause__, SandboxViolation)


@pytest.mark.parametrize(
    "code",
    [
        "import os",
        "import numpy.f2py",
        "from numpy import load",
        "import socket",
        "import builtins",
    ],
)
def test_forbidden_imports_fail_at_load(code: str) -> None:
    # Refused when the import runs, or already when compiling ("builtins" is reserved).
    with pytest.raises((SandboxViolation, SyntaxError)):
        load_strategy(code)


@pytest.mark.parametrize(
    "code",
    ["x = ().__class__", "x = __builtins__", "def f():\n    return f.__globals__"],
)
def test_underscore_names_do_not_even_compile(code: str) -> None:
    with pytest.raises(SyntaxError):
        load_strategy(code)


def test_dangerous_builtins_are_absent() -> None:
    for name in ("open", "eval", "exec", "compile", "globals", "vars", "type", "setattr"):
        with pytest.raises(NameError):
            load_strategy(f"x = {name}")


def test_print_goes_to_a_capped_sink() -> None:
    loaded = load_strategy(
        "for_i = 0\ndef f():\n    for i in range(5):\n        print('line', i)\nf()\n",
        max_print_lines=3,
    )
    assert loaded.printed.lines == ["line 0", "line 1", "line 2"]
    assert loaded.printed.dropped == 2


def test_ordinary_python_still_works() -> None:
    code = """
import math
import datetime
rows = [1, 2, 3]
total = 0
for x in rows:
    total += x
a, b = divmod(7, 2)
squares = {n: n * n for n in range(4)}
arr = [0, 0]
arr[1] = math.sqrt(16)
when = datetime.date(2024, 1, 2).isoformat()
text = "{} and {}".format(a, b)
"""
    namespace = load_strategy(code).namespace
    assert namespace.total == 6
    assert (namespace.a, namespace.b) == (3, 1)
    assert namespace.squares[3] == 9
    assert namespace.arr == [0, 4.0]
    assert namespace.when == "2024-01-02"
    assert namespace.text == "3 and 1"


def test_initialize_may_narrow_the_universe_through_its_setter() -> None:
    code = """
def initialize(ctx):
    ctx.universe = ["AAA"]

def handle_bar(ctx, data):
    ctx.state["seen"] = ctx.universe
"""
    result = qe.backtest(load_strategy(code).namespace, _bars(), market="us")
    assert result.state["seen"] == ["AAA"]


def test_history_view_cannot_reach_the_future_through_base() -> None:
    with pytest.raises(qe.StrategyError, match="attribute 'base' is not allowed"):
        _run_event("x = data.history('AAA', 'close', 3).base")


def test_library_c_code_may_import_its_own_modules() -> None:
    # ndarray.mean imports numpy._core._methods from C, through the strategy frame's builtins.
    code = "import numpy as np\ndef f():\n    return np.array([1.0, 3.0]).mean()\nx = f()\n"
    assert load_strategy(code).namespace.x == 2.0
    with pytest.raises(SandboxViolation, match=r"numpy\._core"):
        load_strategy("import numpy._core._methods")


def test_augmented_assignment_of_items_works() -> None:
    code = (
        "state = {'steps': 1, 'hits': [0, 0]}\nk = 'steps'\nstate[k] += 2\nstate['hits'][1] += 5\n"
    )
    namespace = load_strategy(code).namespace
    assert namespace.state == {"steps": 3, "hits": [0, 5]}
