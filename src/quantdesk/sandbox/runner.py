"""The parent side of the sandbox: hand a run to the pre-warmed fork server, then believe nothing.

``run_backtest`` is the only way the platform executes a strategy. It validates the config,
sends the code, config, limits and the bars (raw numpy buffers, never pickle) to a child forked
from a long-lived server that already imported numpy, pandas and the engine (child.py), waits for
the supervisor's report, parses the size-capped JSON result strictly, re-applies the output caps
and verifies the fills against its own copy of the bars and rules (verify.py). Every limit that
stops a run becomes a sentence for the user ("stopped: CPU time limit of 60 s reached").
Thread-safe: each run has its own socket; only the hand-over of that socket is serialised.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from quantdesk.engine.data import Bars
from quantdesk.engine.errors import ConfigError
from quantdesk.sandbox.child import (
    CONSOLE_CAP,
    EXIT_CPU,
    EXIT_SETUP_FAILED,
    LOG_MARKER,
    REQUEST_MAGIC,
    SERVER_COMMAND,
    format_bytes,
    frame,
    read_frame,
)
from quantdesk.sandbox.limits import SandboxLimits
from quantdesk.sandbox.verify import IntegrityError, RunSpec, verify_result

# The server's whole environment: single-threaded BLAS (a worker may not start threads), and
# nothing else: no secret of the web or worker process ever reaches a child, not even through
# /proc/<pid>/environ, which shows the environment a process was started with.
SERVER_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "LC_ALL": "C.UTF-8",
}
MAX_CODE_BYTES = 1_000_000  # the static check allows 100 KB; this only bounds the request
_REPORT_CAP = 1 << 20  # the supervisor's report: a few numbers and the capped console
_GRACE_SECONDS = 30.0  # beyond the wall clock, for the supervisor to kill, reap and answer
_LIMIT_NAMES = {"memory", "file_size", "result_size"}  # what a worker may claim to have hit


class SandboxUnavailable(RuntimeError):
    """The OS layer cannot be set up here (not root, no namespaces): runs must not go ahead."""


class Status(StrEnum):
    """How a sandboxed run ended."""

    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class SandboxOutcome:
    """The end of one sandboxed run.

    ``result`` (finished runs) is the engine's JSON result, verified, with metrics recomputed by
    the parent. ``error`` and ``traceback`` (failed runs) are for the user: the traceback shows
    frames of ``strategy.py`` only. ``limit`` names the limit that stopped the run (``cpu``,
    ``wall``, ``memory``, ``file_size``, ``result_size``) or ``integrity``. ``notices`` say
    which output caps cut the logs or records. ``diagnostics`` is the worker's stdout/stderr,
    for operators' logs only: never show it to users.
    """

    status: Status
    result: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    limit: str | None = None
    notices: tuple[str, ...] = ()
    stats: dict[str, float] = field(default_factory=dict)
    diagnostics: str = ""

    @property
    def logs(self) -> list[dict[str, Any]]:
        """The run's ``ctx.log`` lines (empty when it failed)."""
        return list(self.result.get("logs", [])) if self.result else []


def _failed(error: str, **extra: Any) -> SandboxOutcome:
    return SandboxOutcome(status=Status.FAILED, error=error, **extra)


class ForkServer:
    """A lazily started, pre-warmed fork server (one per parent process) and its runs."""

    def __init__(
        self,
        *,
        python: str = sys.executable,
        start_timeout: float = 60.0,
        read_only_paths: tuple[str, ...] = (),
    ) -> None:
        """``read_only_paths``: host files or folders children may also read (never secrets)."""
        self._python = python
        self._read_only_paths = tuple(os.path.abspath(p) for p in read_only_paths)
        self._start_timeout = start_timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None
        self._owner = 0

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the server now (it otherwise starts on the first run); raises when it cannot."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        """Stop the server (runs in progress finish; their supervisors outlive it)."""
        with self._lock:
            self._stop()

    def _ensure_started(self) -> socket.socket:
        if self._owner != os.getpid():  # forked since (e.g. gunicorn --preload): not ours
            self._proc, self._ctrl = None, None
        if self._ctrl is not None and self._proc is not None and self._proc.poll() is None:
            return self._ctrl
        self._stop()
        parent_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(  # noqa: S603  (our own interpreter and fixed arguments)
                [
                    self._python,
                    "-I",
                    "-c",
                    SERVER_COMMAND,
                    str(server_end.fileno()),
                    json.dumps(self._read_only_paths),
                ],
                env=SERVER_ENV,
                pass_fds=(server_end.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,  # a Ctrl-C for the parent is not one for the server
            )
        finally:
            server_end.close()
        parent_end.settimeout(self._start_timeout)
        try:
            hello = parent_end.recv(4096)
        except TimeoutError:
            hello = b"error: no answer within the start timeout"
        if hello != b"ready":
            proc.kill()
            proc.wait()
            parent_end.close()
            reason = hello.decode(errors="replace") or "the server exited during start-up"
            raise SandboxUnavailable(f"the sandbox server did not start: {reason}")
        parent_end.settimeout(None)
        self._proc, self._ctrl, self._owner = proc, parent_end, os.getpid()
        return parent_end

    def _stop(self) -> None:
        if self._ctrl is not None:
            self._ctrl.close()  # EOF: the server exits
        if self._proc is not None and self._owner == os.getpid():
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc, self._ctrl = None, None

    def _connect(self) -> socket.socket:
        """A socket whose other end the server has forked a supervisor for."""
        with self._lock:
            for attempt in (1, 2):
                ctrl = self._ensure_started()
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    socket.send_fds(ctrl, [b"r"], [theirs.fileno()])
                    return ours
                except OSError:
                    ours.close()
                    if attempt == 2:
                        raise
                    self._stop()  # the server died: start a new one and try once more
                finally:
                    theirs.close()
        raise AssertionError("unreachable")

    def run(
        self,
        code: str,
        bars_payload: Bars,
        config: dict[str, Any],
        *,
        limits: SandboxLimits,
        language_layers: bool = True,
    ) -> SandboxOutcome:
        """Run ``code`` on ``bars_payload`` in a fresh confined child; see :func:`run_backtest`."""
        started = time.perf_counter()
        if not isinstance(code, str) or len(code.encode("utf-8", "replace")) > MAX_CODE_BYTES:
            return _failed(f"the strategy code must be text of at most {MAX_CODE_BYTES} bytes")
        try:
            spec = RunSpec.from_config(config, bars_payload)
        except ConfigError as exc:
            return _failed(str(exc))
        header, payload = _request(code, bars_payload, spec, limits, language_layers)
        conn = self._connect()
        try:
            conn.settimeout(limits.wall_seconds + _GRACE_SECONDS)
            conn.sendall(REQUEST_MAGIC + frame(header) + payload)
            report = json.loads(read_frame(conn, _REPORT_CAP))
            data = read_frame(conn, limits.max_result_bytes)
        except (OSError, EOFError, ValueError) as exc:
            return _failed(f"internal error: the sandbox did not answer ({type(exc).__name__})")
        finally:
            conn.close()
        outcome = _interpret(report, data, limits, bars_payload, spec)
        stats = {
            "wall_seconds": time.perf_counter() - started,
            "child_wall_seconds": float(report.get("wall_seconds") or 0.0),
            "cpu_seconds": float(report.get("cpu_seconds") or 0.0),
            "max_rss_kb": float(report.get("max_rss_kb") or 0.0),
        }
        return SandboxOutcome(
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            traceback=outcome.traceback,
            limit=outcome.limit,
            notices=outcome.notices,
            stats=stats,
            diagnostics=str(report.get("console", ""))[:CONSOLE_CAP],
        )


def _request(
    code: str, bars: Bars, spec: RunSpec, limits: SandboxLimits, language_layers: bool
) -> tuple[bytes, bytes]:
    """The request header (JSON) and payload: the bars as raw, 8-byte aligned numpy buffers."""
    columns: list[tuple[str, np.ndarray[Any, Any]]] = [
        ("dates", bars.dates.to_numpy().astype("datetime64[ns]").view(np.int64)),
        ("open", bars.open),
        ("high", bars.high),
        ("low", bars.low),
        ("close", bars.close),
        ("volume", bars.volume),
        ("amount", bars.amount),
        ("prev_close", bars.prev_close),
        ("is_st", bars.is_st),
        ("suspended", bars.suspended),
    ]
    specs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    offset = 0
    for name, array in columns:
        raw = np.ascontiguousarray(array).tobytes()
        pad = -len(raw) % 8
        specs.append(
            {"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        )
        chunks += [raw, b"\0" * pad]
        offset += len(raw) + pad
    header = {
        "code": code,
        "config": spec.engine_kwargs(),
        "limits": limits.as_dict(),
        "language_layers": bool(language_layers),
        "arrays": specs,
        "symbols": list(bars.symbols),
        "listing_dates": {s: d.isoformat() for s, d in bars.listing_dates.items()},
        "payload_bytes": offset,
    }
    return json.dumps(header).encode(), b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ValueError(f"{text} is not a finite number")
    return value


def _interpret(
    report: dict[str, Any], data: bytes, limits: SandboxLimits, bars: Bars, spec: RunSpec
) -> SandboxOutcome:
    """The supervisor's facts, then the worker's message, as the user's outcome."""
    code, sig, cpu = report.get("exit_code"), report.get("signal"), report.get("cpu_seconds", 0.0)
    if report.get("timed_out"):
        return _failed(
            f"stopped: wall-clock time limit of {limits.wall_seconds:g} s reached", limit="wall"
        )
    if report.get("oversize"):
        size = format_bytes(limits.max_result_bytes)
        return _failed(f"stopped: result size limit of {size} reached", limit="result_size")
    if (
        code == EXIT_CPU
        or sig == signal.SIGXCPU
        or (sig == signal.SIGKILL and cpu >= limits.cpu_seconds - 0.05)
    ):
        return _failed(f"stopped: CPU time limit of {limits.cpu_seconds:g} s reached", limit="cpu")
    if code == EXIT_SETUP_FAILED:
        raise SandboxUnavailable(f"the sandbox could not confine a run: {report.get('console')}")
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return _failed(f"stopped: the strategy process was killed by {name}")
    if code != 0 or not report.get("complete"):
        return _failed(f"stopped: the strategy process exited without a result (exit code {code})")
    try:
        message = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        return _failed("integrity check failed: the result is not valid JSON", limit="integrity")
    if not isinstance(message, dict) or not isinstance(message.get("ok"), bool):
        return _failed("integrity check failed: the result is malformed", limit="integrity")
    if not message["ok"]:
        limit = message.get("limit")
        tb = message.get("traceback")
        return _failed(
            str(message.get("error") or "the strategy failed")[:2_000],
            traceback=str(tb)[:20_000] if tb else None,
            limit=limit if limit in _LIMIT_NAMES else None,
        )
    notices = message.get("notices")
    notices = [str(n)[:500] for n in notices[:10]] if isinstance(notices, list) else []
    try:
        result = verify_result(message.get("result"), bars, spec)
    except IntegrityError as exc:
        return _failed(f"integrity check failed: {exc}", limit="integrity")
    notices += enforce_caps(result, limits)
    return SandboxOutcome(status=Status.FINISHED, result=result, notices=tuple(notices))


def enforce_caps(result: dict[str, Any], limits: SandboxLimits) -> list[str]:
    """Cut logs and records to the caps whatever the child did; say so when it had to."""
    notices: list[str] = []
    logs: list[dict[str, Any]] = result["logs"]
    body = logs[:-1] if logs and logs[-1]["message"] == LOG_MARKER else logs
    kept: list[dict[str, Any]] = []
    size = 0
    for row in body:
        size += len(row["message"].encode("utf-8", "replace")) + 1
        if len(kept) >= limits.max_log_lines or size > limits.max_log_bytes:
            break
        kept.append(row)
    if len(kept) < len(body):
        result["logs"] = [*kept, {"date": body[len(kept)]["date"], "message": LOG_MARKER}]
        notices.append(
            f"log cut at its limit ({limits.max_log_lines} lines, {limits.max_log_bytes} bytes)"
        )
    series: dict[str, Any] = result["records"]["series"]
    n_dates = max(1, len(result["records"]["dates"]))
    keep = min(limits.max_record_series, limits.max_record_points // n_dates)
    if len(series) > keep:
        result["records"]["series"] = dict(list(series.items())[:keep])
        notices.append(f"records cut to {keep} of {len(series)} series")
    return notices


_DEFAULT = ForkServer()
atexit.register(_DEFAULT.close)


def warm_up() -> None:
    """Start the shared fork server now (a worker calls it at start-up)."""
    _DEFAULT.start()


def run_backtest(
    code: str,
    bars_payload: Bars,
    config: dict[str, Any],
    *,
    limits: SandboxLimits,
    language_layers: bool = True,
) -> SandboxOutcome:
    """Run a user's strategy on ``bars_payload`` in an isolated child process and verify it.

    Parameters
    ----------
    code : str
        The strategy's source (already accepted by ``checker.check``).
    bars_payload : Bars
        The run's bars; the parent keeps this copy to verify the fills against.
    config : dict
        ``market``, ``initial_capital``, ``costs``, ``fill``, ``slippage_bps``, ``params``,
        ``benchmark`` (a symbol or None), ``rules``, ``risk_free_rate``.
    limits : SandboxLimits
        CPU, wall clock, memory, files, processes and output caps.
    language_layers : bool
        Run the code through ``guard.load_strategy`` (restricted builtins, guarded attribute
        access). ``False`` runs it with plain ``exec``: the OS layer alone (tests prove it holds).

    Returns
    -------
    SandboxOutcome
        ``finished`` with the verified result, or ``failed`` with the reason.

    Raises
    ------
    SandboxUnavailable
        The OS cannot confine runs here (not root, namespaces unavailable).
    """
    return _DEFAULT.run(code, bars_payload, config, limits=limits, language_layers=language_layers)
