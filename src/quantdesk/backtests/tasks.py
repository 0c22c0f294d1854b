"""The backtest task: one id in, `execution.run` does the rest (in-process or on a Celery worker).

Thin (STYLE.md pattern 8): every combination of a parameter grid is one such task of its own,
so a grid fans out over as many Celery workers as there are. Each Celery pool process starts
the sandbox's fork server when it starts, not on its first backtest (about a second: numpy,
pandas and the engine are imported there once).
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_process_init

from quantdesk.backtests import execution
from quantdesk.extensions import current_extensions
from quantdesk.sandbox import runner
from quantdesk.tasks import background_task

log = logging.getLogger(__name__)


@background_task
def run_backtest(backtest_id: int) -> None:
    """Run one queued backtest (or grid combination); safe to run twice."""
    execution.run(current_extensions(), backtest_id)


def _warm_up() -> None:
    try:
        runner.warm_up()
    except runner.SandboxUnavailable as exc:  # runs will fail with this reason, said per run
        log.warning("the sandbox cannot start here: %s", exc)


@worker_process_init.connect(weak=False)
def _warm_sandbox(**_: object) -> None:
    # In a thread: Celery gives a pool process 4 s to start (worker_proc_alive_timeout); a
    # backtest arriving meanwhile waits for the server under the runner's own lock.
    threading.Thread(target=_warm_up, name="sandbox-warm-up", daemon=True).start()
