"""The sandbox runner end to end: real fork server, real children, results equal to the engine's."""

from __future__ import annotations

import json
import os
import resource
import signal
import threading
import time

import numpy as np
import pytest

import quantdesk.engine as qe
from quantdesk.sandbox import child, runner
from quantdesk.sandbox.limits import SandboxLimits
from quantdesk.sandbox.runner import ForkServer, SandboxUnavailable, Status
from tests.sandbox import (
    SMA,
    VECTORIZED,
    attack,
    logged,
    open_fds,
    price_frame,
    run,
    small_bars,
)

BARS = small_bars(120, ("AAPL", "MSFT"))
LAYERS = pytest.mark.parametrize("layers", [False, True], ids=["os-layer-only", "all-layers"])


@LAYERS
@pytest.mark.parametrize("code", [SMA, VECTORIZED], ids=["event", "vectorized"])
def test_a_finished_run_equals_running_the_engine_directly(code: str, layers: bool) -> None:
    config = {"market": "us", "initial_capital": 50_000, "slippage_bps": 5, "params": {"fast": 3}}
    outcome = run(code, bars=BARS, config=config, language_layers=layers)
    assert outcome.status == Status.FINISHED, (outcome.error, outcome.diagnostics)
    direct = qe.backtest(
        code, BARS, market="us", initial_capital=50_000, slippage_bps=5, params={"fast": 3}
    ).to_dict()
    assert len(direct["fills"]) > 4  # the strategy trades: the comparison means something
    assert outcome.result == direct
    assert outcome.error is None
    assert outcome.stats["cpu_seconds"] > 0


def test_cn_a_rules_and_costs_come_back_verified() -> None:
    bars = qe.Bars.from_frames({"600519.SH": price_frame(120), "000001.SZ": price_frame(120, 7)})
    config = {"market": "cn_a", "initial_capital": 1_000_000, "fill": "next_close"}
    outcome = run(SMA, bars=bars, config=config)
    direct = qe.backtest(SMA, bars, market="cn_a", initial_capital=1_000_000, fill="next_close")
    assert outcome.status == Status.FINISHED, outcome.error
    assert outcome.result == direct.to_dict()
    buys = [f for f in outcome.result["fills"] if f["side"] == "buy"]
    assert buys
    assert all(f["shares"] % 100 == 0 for f in buys)
    assert sum(f["commission"] for f in outcome.result["fills"]) > 0


@LAYERS
def test_a_user_exception_shows_their_traceback_and_nothing_of_ours(layers: bool) -> None:
    code = "def helper(x):\n    return 1 / x\n\ndef handle_bar(ctx, data):\n    helper(0)\n"
    outcome = run(code, language_layers=layers)
    assert outcome.status == Status.FAILED
    assert outcome.error == "handle_bar failed on 2023-01-02: ZeroDivisionError('division by zero')"
    assert outcome.traceback is not None
    assert outcome.traceback.startswith("Traceback (most recent call last):\n")
    assert '  File "strategy.py", line 5, in handle_bar\n    helper(0)\n' in outcome.traceback
    assert '  File "strategy.py", line 2, in helper\n    return 1 / x\n' in outcome.traceback
    assert outcome.traceback.rstrip().endswith("ZeroDivisionError: division by zero")
    for internal in ("quantdesk", "engine", "site-packages", "/work", "run.py", "child"):
        assert internal not in outcome.traceback
        assert internal not in outcome.error
    assert outcome.limit is None


def test_a_syntax_error_points_at_the_users_line() -> None:
    outcome = run("PARAMS = {}\n\ndef handle_bar(ctx, data)\n    pass\n")
    assert outcome.status == Status.FAILED
    assert outcome.error == "SyntaxError: expected ':' (strategy.py, line 3)"
    assert outcome.traceback is not None
    assert 'File "strategy.py", line 3' in outcome.traceback


def test_an_exception_at_module_level_is_the_users() -> None:
    outcome = run("x = {}['missing']\n\ndef handle_bar(ctx, data):\n    pass\n")
    assert outcome.status == Status.FAILED
    assert outcome.error == "KeyError: 'missing'"
    assert outcome.traceback is not None
    assert 'File "strategy.py", line 1, in <module>' in outcome.traceback


def test_engine_errors_reach_the_user_as_the_engine_words_them() -> None:
    outcome = run("def handle_bar(ctx, data):\n    ctx.order('NOPE', 1)\n")
    assert outcome.status == Status.FAILED
    assert outcome.error is not None
    assert "unknown symbol 'NOPE'" in outcome.error
    assert outcome.traceback is not None
    assert "ctx.order('NOPE', 1)" in outcome.traceback


def test_an_invalid_config_fails_before_any_child_starts() -> None:
    outcome = run(SMA, config={"market": "mars"})
    assert outcome.status == Status.FAILED
    assert outcome.error == "unknown market 'mars': 'cn_a' or 'us'"
    assert run(SMA, config={"colour": "red"}).error == "unknown config keys: colour"
    assert run(SMA, config={"benchmark": "SPY"}).error == (
        "benchmark 'SPY' is not a symbol of the bars"
    )


def test_log_lines_are_capped_and_the_cap_is_reported() -> None:
    code = attack("for i in range(5000):\n    out.append(i)")
    outcome = run(code, max_log_lines=50)
    messages = logged(outcome)
    assert len(messages) == 51
    assert messages[:3] == ["0", "1", "2"]
    assert messages[-1] == "[log truncated: limit reached]"
    assert any("log cut at its limit (50 lines" in n for n in outcome.notices)


def test_log_bytes_are_capped() -> None:
    outcome = run(attack("for i in range(100):\n    out.append('x' * 999)"), max_log_bytes=5_000)
    messages = logged(outcome)
    assert len(messages) == 6  # 5 lines of 1000 bytes, then the marker
    assert sum(len(m) + 1 for m in messages[:-1]) <= 5_000
    assert outcome.notices


def test_record_series_are_capped_and_reported() -> None:
    code = (
        "def handle_bar(ctx, data):\n    ctx.record(**{'s%02d' % i: float(i) for i in range(30)})\n"
    )
    outcome = run(code, max_record_series=20)
    assert outcome.status == Status.FINISHED, outcome.error
    assert len(outcome.result["records"]["series"]) == 20
    assert "records cut to 20 of 30 series" in " ".join(outcome.notices)
    few_points = run(code, max_record_points=300)  # 30 bars: room for 10 series
    assert len(few_points.result["records"]["series"]) == 10


def test_a_result_over_the_size_cap_is_refused() -> None:
    code = "def handle_bar(ctx, data):\n    ctx.state['blob'] = 'x' * 300_000\n"
    outcome = run(code, max_result_bytes=200_000)
    assert outcome.status == Status.FAILED
    assert outcome.error == "stopped: result size limit of 200 KB reached"
    assert outcome.limit == "result_size"
    assert run(code, max_result_bytes=2_000_000).status == Status.FINISHED


def test_a_non_serialisable_state_fails_the_run() -> None:
    outcome = run("def handle_bar(ctx, data):\n    ctx.state['f'] = {1, 2}\n")
    assert outcome.status == Status.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("ctx.state must be JSON-serialisable")


# --- children that lie (the OS layer alone: user code rewrites the child's own process) ------

LIAR = """
import quantdesk.sandbox.child as child
real = child.result_dict

def lie(result):
    data = real(result)
{tamper}
    return data

child.result_dict = lie
"""


LIAR_TRADES = """
def handle_bar(ctx, data):
    if ctx.now.day in (3, 10) and ctx.now.month == 1:
        ctx.order("AAPL", 100)
"""
LIAR_CONFIG = {
    "market": "us",
    "initial_capital": 100_000,
    "costs": {"commission_rate": 0.001, "min_commission": 1.0},
}


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("    data['fills'][0]['price'] *= 0.97", "fill 1 (2023-01-04 buy 100 AAPL at"),
        ("    data['fills'][0]['price'] *= 1.001", "the fill price should be"),
        (
            "    data['equity']['cash'] = [c + 1e4 for c in data['equity']['cash']]",
            "cash on 2023-01-02",
        ),
        ("    data['equity']['equity'][-1] *= 2", "final value is"),
        ("    data['fills'][0]['commission'] = 0.0", "commission is 0, the rules give"),
        ("    del data['fills'][1]", "cash on 2023-01-11 is"),
        ("    data['positions'][0]['shares'] += 100", "the final positions are not"),
        ("    data['fills'][1]['date'] = '2023-01-07'", "is not a bar date"),
    ],
    ids=[
        "outside-range",
        "not-at-open",
        "granted-cash",
        "final-value",
        "costs",
        "hidden-fill",
        "positions",
        "weekend",
    ],
)
def test_a_child_that_lies_about_its_result_fails_the_integrity_check(
    tamper: str, reason: str
) -> None:
    honest = run(LIAR_TRADES, config=LIAR_CONFIG)
    assert honest.status == Status.FINISHED, honest.error  # the same run, told truthfully
    assert len(honest.result["fills"]) == 2
    outcome = run(LIAR.format(tamper=tamper) + LIAR_TRADES, config=LIAR_CONFIG)
    assert outcome.status == Status.FAILED
    assert outcome.limit == "integrity"
    assert outcome.error is not None
    assert outcome.error.startswith("integrity check failed: ")
    assert reason in outcome.error
    assert outcome.result is None


def test_a_child_that_writes_raw_non_json_is_refused() -> None:
    code = attack(
        "import os, struct\nos.write(3, struct.pack('<Q', 9) + b'not json!')\nos._exit(0)"
    )
    outcome = run(code)
    assert outcome.status == Status.FAILED
    assert outcome.error == "integrity check failed: the result is not valid JSON"


@pytest.mark.parametrize(
    "body",
    [b'{"ok": true, "result": {"x": NaN}}', b'{"ok": true, "result": {"x": 1e999}}'],
    ids=["nan", "overflowing-float"],
)
def test_a_child_that_sends_a_non_finite_number_is_refused(body: bytes) -> None:
    code = attack(
        f"import os, struct\nos.write(3, struct.pack('<Q', {len(body)}) + {body!r})\nos._exit(0)"
    )
    outcome = run(code)
    assert outcome.error == "integrity check failed: the result is not valid JSON"


def test_a_child_that_announces_a_giant_result_is_stopped() -> None:
    code = attack(
        "import os, struct\nos.write(3, struct.pack('<Q', 10**9))\n"
        "while True:\n    os.write(3, b'x' * 65536)"
    )
    started = time.monotonic()
    outcome = run(code, max_result_bytes=1_000_000)
    assert outcome.error == "stopped: result size limit of 1 MB reached"
    assert time.monotonic() - started < 5  # killed at once, not at the wall clock


def test_a_child_that_exits_without_a_word_fails() -> None:
    outcome = run(attack("import os\nos._exit(0)"))
    assert outcome.status == Status.FAILED
    assert outcome.error == "stopped: the strategy process exited without a result (exit code 0)"


def test_language_layers_refuse_what_the_os_layer_lets_through() -> None:
    code = attack("import os\nout.append(os.getuid())")
    assert logged(run(code, language_layers=False)) == ["65534"]
    guarded = run(code, language_layers=True)
    assert guarded.status == Status.FAILED
    assert guarded.error is not None
    assert "os" in guarded.error


# --- the parent: thread-safe, unharmed, restarts its server --------------------------------


def test_runs_from_many_threads_at_once_give_the_sequential_results() -> None:
    configs = [{"market": "us", "params": {"fast": f}} for f in (2, 3, 4, 5)]
    expected = [qe.backtest(SMA, BARS, market="us", params=c["params"]).to_dict() for c in configs]
    results: list[object] = [None] * len(configs)

    def work(i: int) -> None:
        results[i] = run(SMA, bars=BARS, config=configs[i]).result

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(configs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected
    assert expected[0] != expected[3]


@pytest.mark.slow
def test_the_parent_is_unharmed_by_hostile_runs() -> None:
    run(SMA)  # the server is up
    fds, rss = open_fds(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    own_cpu = time.process_time()
    hostile = [
        (attack("while True: pass"), {"cpu_seconds": 1}, "stopped: CPU time limit"),
        (attack("import time\ntime.sleep(30)"), {"wall_seconds": 1}, "stopped: wall-clock"),
        (attack("x = bytearray(2**34)"), {"memory_mb": 512}, "stopped: memory limit"),
        (attack("import os\nwhile True: os.fork()"), {}, "initialize failed: BlockingIOError"),
        (attack("import os\nos.write(3, b'\\xff' * 64)\nos._exit(0)"), {}, "stopped: result"),
        (attack("import os\nos._exit(3)"), {}, "stopped: the strategy process exited"),
        (attack("import ctypes\nctypes.string_at(0)"), {}, "killed by SIGSEGV"),
    ]
    for code, limits, error in hostile:
        outcome = run(code, **limits)
        assert outcome.status == Status.FAILED
        assert outcome.error is not None
        assert error in outcome.error
    assert time.process_time() - own_cpu < 1.0  # the busy loop burnt the child's CPU, not ours
    assert open_fds() == fds  # no descriptor leaked
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50_000  # KiB
    assert run(SMA).status == Status.FINISHED  # and it still answers


def test_a_dead_server_is_replaced_on_the_next_run() -> None:
    server = ForkServer()
    try:
        assert run(SMA, server=server).status == Status.FINISHED
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        time.sleep(0.1)
        assert run(SMA, server=server).status == Status.FINISHED
        assert server.pid not in (None, first)
    finally:
        server.close()
    assert server.pid is None


def test_a_server_that_does_not_start_fails_loudly() -> None:
    server = ForkServer(python="/bin/false")
    with pytest.raises(SandboxUnavailable, match="did not start"):
        server.start()
    with pytest.raises(SandboxUnavailable):
        run(SMA, server=server)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="cpu_seconds"):
        SandboxLimits(cpu_seconds=0)
    with pytest.raises(ValueError, match="processes"):
        SandboxLimits(processes=-1)
    with pytest.raises(ValueError, match="unknown sandbox limits"):
        SandboxLimits.from_dict({"gpus": 1})
    assert SandboxLimits.from_dict(SandboxLimits().as_dict()) == SandboxLimits()


def test_the_bars_travel_as_raw_arrays_and_arrive_identical() -> None:
    bars = qe.Bars.from_frames(
        {"600519.SH": price_frame(50), "000001.SZ": price_frame(40, 3)},
        listing_dates={"600519.SH": "2023-01-03"},
    )
    spec = runner.RunSpec.from_config({}, bars)
    header, payload = runner._request(SMA, bars, spec, SandboxLimits(), True)
    decoded = json.loads(header)
    assert decoded["payload_bytes"] == len(payload)
    assert not payload.startswith(b"\x80")  # not a pickle
    arrived = child._bars(decoded, payload)
    assert arrived.symbols == bars.symbols
    assert arrived.dates.equals(bars.dates)
    assert arrived.listing_dates == bars.listing_dates
    for name in ("open", "high", "low", "close", "volume", "amount", "prev_close"):
        np.testing.assert_array_equal(getattr(arrived, name), getattr(bars, name))
    np.testing.assert_array_equal(arrived.suspended, bars.suspended)
    assert not arrived.close.flags.writeable
