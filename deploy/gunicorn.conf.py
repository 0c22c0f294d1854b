"""gunicorn settings for production: `gunicorn -c deploy/gunicorn.conf.py quantdesk.wsgi:app`.

Any of these can be overridden on the command line (e.g. `--bind 127.0.0.1:8000 --workers 2`)
or with GUNICORN_CMD_ARGS. The app itself is configured by QuantDesk's settings (README).
"""

import multiprocessing

# Import the package (numpy, pandas, SQLAlchemy, Flask: about 4 s) once, in the master: a worker
# forked from it, at start or when recycled, only builds the app (about 0.5 s). Importing does
# no work (quantdesk.wsgi builds the app, in each worker), so no connection, thread or file
# is shared across the fork.
import quantdesk.app  # noqa: F401

bind = "0.0.0.0:8000"
# Threads serve the I/O-bound API well; CPU-heavy work (backtests) runs in Celery workers.
worker_class = "gthread"
workers = min(2 * multiprocessing.cpu_count() + 1, 9)
threads = 4
timeout = 60
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow without bound; the wide jitter keeps
# workers from restarting together (all of them at once would stall the server).
max_requests = 10000
max_requests_jitter = 5000
# QuantDesk writes its own JSON access line per request (with the request id).
accesslog = None
errorlog = "-"
loglevel = "info"
# Behind nginx: trust X-Forwarded-* only from the proxy (set TRUSTED_PROXIES=1 for the app too).
forwarded_allow_ips = "127.0.0.1"


# Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR set in the environment): every worker
# writes its samples to that folder and /metrics adds them up; start from an empty folder, and
# let a dead worker's live gauges go.
def on_starting(server: object) -> None:
    from quantdesk.metrics import clear_multiprocess_dir

    clear_multiprocess_dir()


def child_exit(server: object, worker: object) -> None:
    from quantdesk.metrics import mark_process_dead

    mark_process_dead(worker.pid)  # type: ignore[attr-defined]
