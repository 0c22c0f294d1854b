"""Liveness and readiness: `/api/health` says the process answers, `/ready` that its backends do."""

from __future__ import annotations

import logging
from typing import Any

from flask_smorest import Api
from marshmallow import Schema, fields
from sqlalchemy import Engine, text

from quantdesk.errors import ServiceUnavailable
from quantdesk.extensions import Extensions, current_extensions
from quantdesk.openapi import ApiBlueprint, ErrorOut

log = logging.getLogger(__name__)

blp = ApiBlueprint("health", __name__, url_prefix="/api/health", description="Health checks")


class HealthOut(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class ReadyOut(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"example": {"database": "ok", "redis": "ok", "broker": "ok"}},
    )


@blp.get("")
@blp.response(200, HealthOut)
def health() -> Any:
    """Liveness: the process answers."""
    return {"status": "ok"}


@blp.get("/ready")
@blp.response(200, ReadyOut)
@blp.alt_response(503, schema=ErrorOut, description="A backend is down; see details.checks")
def ready() -> Any:
    """Readiness: the database answers, and the read replica, Redis and the Celery broker when
    configured (503 when one fails)."""
    checks = run_checks(current_extensions())
    if any(value != "ok" and value != "not_configured" for value in checks.values()):
        raise ServiceUnavailable("Not ready: a backend is unavailable.", details={"checks": checks})
    return {"status": "ok", "checks": checks}


def run_checks(ext: Extensions) -> dict[str, str]:
    checks = {
        "database": _check_database(ext.db.engine, "database"),
        # Reads of history, lists and reports go to the replica when there is one.
        "database_replica": _check_database(ext.db.replica_engine, "database replica"),
    }
    if ext.settings.REDIS_URL:
        try:
            ext.keystore.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            log.warning("readiness: redis unavailable: %s", exc)
            checks["redis"] = "unavailable"
    else:
        checks["redis"] = "not_configured"
    checks["broker"] = _check_broker(ext.settings.CELERY_BROKER_URL)
    return checks


def _check_database(engine: Engine | None, name: str) -> str:
    if engine is None:
        return "not_configured"
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready", never a 500
        log.warning("readiness: %s unavailable: %s", name, exc)
        return "unavailable"
    return "ok"


def _check_broker(url: str) -> str:
    """The Celery broker answers a connection (Redis or AMQP), within two seconds."""
    if not url:
        return "not_configured"
    from kombu.connection import Connection

    try:
        options = {"socket_timeout": 2}
        with Connection(url, connect_timeout=2, transport_options=options) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:  # any transport error means "not ready"
        log.warning("readiness: broker unavailable: %s", exc)
        return "unavailable"
    return "ok"


def register_routes(api: Api) -> None:
    api.register_blueprint(blp)
