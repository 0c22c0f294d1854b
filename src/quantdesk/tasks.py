"""The task runner: one task function, two runners (Celery in production, in-process embedded).

A background task is a plain function marked with `@background_task`; it takes ids, not
objects, and opens its own database session (STYLE.md pattern 8). `submit(task, *args)` runs it
in a thread pool of this process, inline when TASKS_EAGER (tests), or, when a Celery broker is
configured, as a Celery task on a worker (`quantdesk worker`) with late acknowledgement: a task
whose worker dies mid-way is delivered again, so every task must be safe to run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from typing import Any, Protocol, TypeVar

import redis.exceptions
from celery import Celery, Task
from flask import Flask
from kombu.exceptions import OperationalError as KombuOperationalError

from quantdesk.metrics import observe_task

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# What `CeleryRunner.submit` raises when the broker (Redis) cannot take a message: kombu's
# after its publish retries, redis-py's when the connection breaks in the middle of a send.
BROKER_ERRORS: tuple[type[Exception], ...] = (
    KombuOperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

# Task *definitions* (name -> function), filled when the domain modules are imported; the same
# in every process, like a URL map. No per-run state lives here.
_TASKS: dict[str, Callable[..., Any]] = {}


def background_task(fn: F) -> F:
    """Register `fn` as a task under its dotted name (what Celery workers look it up by)."""
    name = f"{fn.__module__}.{fn.__qualname__}"
    _TASKS[name] = fn
    fn.task_name = name  # type: ignore[attr-defined]
    return fn


def task_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "task_name", None)
    if name is None or _TASKS.get(name) is not fn:
        raise ValueError(f"{fn!r} is not a @background_task")
    return str(name)


def registered_tasks() -> dict[str, Callable[..., Any]]:
    return dict(_TASKS)


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
        task_name(fn)  # the same contract as Celery: only registered tasks
        if self.eager:
            self._run(fn, *args)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="quantdesk-task")
        # copy_context keeps the request id on the task's log lines.
        future = self._pool.submit(copy_context().run, self._run, fn, *args)
        future.add_done_callback(_log_failure)

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._app.app_context(), observe_task(task_name(fn)):
            fn(*args)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("background task failed", exc_info=exc)


class CeleryRunner:
    """Sends tasks to Celery workers by name; the web process never runs them itself."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> None:
        self.celery.send_task(task_name(fn), args=list(args))

    def shutdown(self) -> None:
        return None


def make_celery(
    app: Flask, *, broker_url: str, visibility_timeout: int, concurrency: int
) -> Celery:
    """A Celery app whose tasks are the registered functions, each run in a Flask app context.

    Late acknowledgement with reject-on-worker-lost and a prefetch of one: a task is removed
    from the queue only when it has finished, so a killed worker's task runs again elsewhere
    (Celery docs, "Should I use retry or acks_late?"). On Redis an unacknowledged task becomes
    visible again after `visibility_timeout` seconds.
    """
    celery = Celery(app.import_name, broker=broker_url, set_as_current=False)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_concurrency=concurrency,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility_timeout},
    )

    class AppContextTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context(), observe_task(self.name):
                return self.run(*args, **kwargs)

    for name, fn in _TASKS.items():
        celery.task(name=name, base=AppContextTask)(fn)
    return celery
