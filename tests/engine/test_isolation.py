"""No process-global state (two runs in two threads = sequential runs), no web/db imports."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

import quantdesk.engine as qe
from tests.engine.make_golden import STRATEGY, load_bars


def _run(bars: qe.Bars, fast: int) -> qe.Result:
    return qe.backtest(STRATEGY, bars, initial_capital=1_000_000, params={"fast": fast, "slow": 20})


def test_two_threads_give_the_sequential_results() -> None:
    bars = load_bars()
    sequential = [_run(bars, 5), _run(bars, 10)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(lambda fast: _run(bars, fast), [5, 10] * 2))
    for i, result in enumerate(threaded):
        expected = sequential[i % 2]
        pd.testing.assert_frame_equal(result.fills, expected.fills)
        pd.testing.assert_frame_equal(result.equity, expected.equity)
        pd.testing.assert_frame_equal(result.refusals, expected.refusals)
        pd.testing.assert_frame_equal(result.records, expected.records)
    assert not sequential[0].fills.equals(sequential[1].fills)  # the two runs differ


def test_engine_imports_no_web_or_database_stack() -> None:
    code = (
        "import sys, quantdesk.engine as qe\n"
        "qe.Bars\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'sqlalchemy', 'celery', 'redis', 'flask_smorest', 'psycopg'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert (
        "quantdesk.engine"
        in subprocess.run(
            [sys.executable, "-c", "import sys, quantdesk.engine; print(list(sys.modules))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
