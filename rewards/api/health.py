from __future__ import annotations

import threading

from flask import current_app
from redis import Redis
from sqlalchemy import text

from ..extensions import Blueprint, db

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
    """503 while the database does not answer, or while the process shuts down (so a
    load balancer drains it first). Redis is named but does not make it 503: claims
    wait in the outbox meanwhile, and every host shares one Redis, so a load balancer
    would otherwise take them all out at once."""
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
    degraded = False
    url = current_app.config.get("REDIS_URL")
    if url:
        try:
            _redis_probe(url).ping()
            checks["redis"] = "ok"
        except Exception as error:
            current_app.logger.warning("readiness: redis: %s", error)
            checks["redis"] = "unavailable"
            degraded = True
    else:
        checks["jobs"] = "in-process"
    status = "unavailable" if not ok else "degraded" if degraded else "ok"
    return {"status": status, "checks": checks}, (200 if ok else 503)


# Seconds /readyz waits for Redis: a hung Redis must not make the probe itself time out.
REDIS_PROBE_TIMEOUT = 0.5
_probes: dict[str, Redis] = {}


def _redis_probe(url: str) -> Redis:
    client = _probes.get(url)
    if client is None:
        client = _probes[url] = Redis.from_url(url, socket_timeout=REDIS_PROBE_TIMEOUT,
                                               socket_connect_timeout=REDIS_PROBE_TIMEOUT)
    return client
