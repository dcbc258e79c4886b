from __future__ import annotations

import threading

from flask import current_app
from marshmallow import Schema, fields
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


class Health(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok"]})


class Readiness(Schema):
    status = fields.String(required=True, metadata={
        "enum": ["ok", "degraded", "unavailable"],
        "description": "ok; degraded (Redis is down: jobs wait in the outbox, still 200); "
                       "unavailable (503: the database does not answer, or the process "
                       "is shutting down)"})
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"description": "Each dependency and what it answered: "
                                                  "database, redis (or jobs: in-process), "
                                                  "process (while shutting down)."})


@blp.route("/healthz")
@blp.response(200, Health)
def healthz():
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, Readiness)
@blp.alt_response(503, schema=Readiness, description="The database does not answer, or "
                                                     "the process is shutting down")
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
    problem = _database_problem(current_app.config.get("READINESS_DB_TIMEOUT", 2.0))
    if problem is None:
        checks["database"] = "ok"
    else:  # report, never raise: this is what a load balancer polls
        current_app.logger.warning("readiness: database: %s", problem)
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


_probe_running = threading.Lock()


def _database_problem(timeout: float) -> str | None:
    """Whether the database answers `SELECT 1` within `timeout` seconds: None, or what
    went wrong. The probe runs in a thread of its own, so a database that accepts the
    connection and then says nothing (a hung or paused server) makes /readyz answer 503
    in time rather than hold the request until the server's own timeout kills it. One
    probe at a time: a probe asked for meanwhile (another thread's) waits its turn within
    the same `timeout`, so a hung database never gathers more than one waiting thread."""
    if not _probe_running.acquire(timeout=timeout):
        return f"the probe before this one had no answer within {timeout:g} seconds"
    engine = db.engine
    found: list[str | None] = []

    def probe() -> None:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            found.append(None)
        except Exception as error:
            found.append(f"{type(error).__name__}: {error}")
        finally:
            _probe_running.release()

    thread = threading.Thread(target=probe, name="readiness-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        return f"no answer within {timeout:g} seconds"
    return found[0]


# Seconds /readyz waits for Redis: a hung Redis must not make the probe itself time out.
REDIS_PROBE_TIMEOUT = 0.5
_probes: dict[str, Redis] = {}


def _redis_probe(url: str) -> Redis:
    client = _probes.get(url)
    if client is None:
        client = _probes[url] = Redis.from_url(url, socket_timeout=REDIS_PROBE_TIMEOUT,
                                               socket_connect_timeout=REDIS_PROBE_TIMEOUT)
    return client
