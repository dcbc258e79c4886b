from __future__ import annotations

import threading

from flask import current_app
from sqlalchemy import text

from ..extensions import Blueprint, db, redis

blp = Blueprint("health", __name__, description="Liveness and readiness")

# Set when this process starts shutting down (rewards/gunicorn_conf.py): /readyz answers
# 503 so a load balancer stops sending traffic while requests in flight finish.
_draining = threading.Event()


def start_draining() -> None:
    _draining.set()


def draining() -> bool:
    return _draining.is_set()


@blp.route("/healthz")
@blp.response(200)
def healthz():
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200)
@blp.alt_response(503, description="A dependency is down")
def readyz():
    """The database answers, and Redis does when jobs go through it; 503 while the
    process shuts down, so a load balancer drains it first."""
    checks: dict[str, str] = {}
    ok = True
    if _draining.is_set():
        checks["process"] = "shutting down"
        ok = False
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # report, never raise: this is what a load balancer polls
        current_app.logger.warning("readiness: database: %s", error)
        checks["database"] = "unavailable"
        ok = False
    if current_app.config.get("REDIS_URL"):
        try:
            redis.get().ping()
            checks["redis"] = "ok"
        except Exception as error:
            current_app.logger.warning("readiness: redis: %s", error)
            checks["redis"] = "unavailable"
            ok = False
    else:
        checks["jobs"] = "in-process"
    return {"status": "ok" if ok else "unavailable", "checks": checks}, (200 if ok else 503)
