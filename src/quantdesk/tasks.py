"""The task runner: background work behind one interface, in-process in the embedded default.

Task functions take ids, not objects, and open their own database session. The Celery runner
for production plugs in behind the same `submit` (issue 7); the in-process runner uses a small
thread pool, or runs inline when TASKS_EAGER is set (tests), so a test sees the task's effect
as soon as the request returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from typing import Any, Protocol

from flask import Flask

log = logging.getLogger(__name__)


class TaskRunner(Protocol):
    def submit(self, fn: Callable[..., Any], /, *args: Any) -> None: ...

    def shutdown(self) -> None: ...


class InProcessRunner:
    """Runs tasks in a thread pool of this process, or inline when `eager`, in an app context."""

    def __init__(self, app: Flask, *, workers: int, eager: bool) -> None:
        self._app = app
        self.eager = eager
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> None:
        if self.eager:
            self._run(fn, *args)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="quantdesk-task")
        # copy_context keeps the request id on the task's log lines.
        future = self._pool.submit(copy_context().run, self._run, fn, *args)
        future.add_done_callback(_log_failure)

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._app.app_context():
            fn(*args)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("background task failed", exc_info=exc)
