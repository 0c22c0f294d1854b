# syntax=docker/dockerfile:1
# QuantDesk: one image for every process (web, worker, scheduler, init-db); docker-compose.yml
# picks the command. Dependencies come only from the hash-pinned requirements.lock.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with the locked dependencies and the quantdesk package
FROM ${PYTHON_IMAGE} AS build
# A compiler for the few packages of the lock that ship no wheel (peewee's C extension).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
# The project itself, built with the locked hatchling; its dependencies are already in place.
RUN pip install --no-deps --no-build-isolation . \
    && quantdesk --help > /dev/null

# ---- runtime: the virtualenv, the gunicorn settings, an unprivileged user
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    QUANTDESK_ENV=production \
    VAR_DIR=/var/lib/quantdesk \
    PROMETHEUS_MULTIPROC_DIR=/tmp/quantdesk-metrics
# pg_dump and pg_restore for `quantdesk backup` / `restore` (bookworm's client is 15, the same
# major version as the compose file's postgres service; it must not be older than the server).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 quantdesk \
    && useradd --system --uid 10001 --gid quantdesk --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin quantdesk \
    && mkdir -p /app/deploy /var/lib/quantdesk /tmp/quantdesk-metrics \
    && chown quantdesk:quantdesk /var/lib/quantdesk /tmp/quantdesk-metrics
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY deploy/gunicorn.conf.py deploy/gunicorn.conf.py
USER 10001:10001
EXPOSE 8000
VOLUME ["/var/lib/quantdesk"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "quantdesk.healthcheck", "http://127.0.0.1:8000/api/health/ready"]
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "quantdesk.wsgi:app"]
