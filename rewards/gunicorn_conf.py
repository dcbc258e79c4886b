"""gunicorn settings for the API (docker-entrypoint.sh: `--config python:rewards.gunicorn_conf`).

Everything built while a worker starts (the app, its schemas and routes, imported
modules) lives as long as the worker. Python's collector would walk all of it on every
full collection during requests; freezing it once the app is loaded moves it out of
reach. bench/ingest.py --gc-freeze measures the same step: 7-11% more actions a second
in paired runs.

Shutting down: on SIGTERM a worker first answers /readyz with 503 for
SHUTDOWN_DRAIN_SECONDS (default 5) while still serving, so a load balancer polling it
takes the worker out of rotation before it stops accepting; then it finishes its
requests in flight and exits (within graceful_timeout)."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import threading
from http import HTTPStatus
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.glogging import Logger

from rewards.reasons import reason_for

# The API's pooled connections are not pinged before each request (a round trip on
# every request); rewards/extensions.py make_engine says what a dropped one costs.
os.environ.setdefault("DATABASE_PRE_PING", "0")
# A database that takes a statement and never answers (paused, hung, a partition behind
# a proxy) fails the request with 503 after this many seconds, well inside gunicorn's
# own timeout (30 s), which would kill the worker and drop the client's connection.
os.environ.setdefault("DATABASE_QUERY_TIMEOUT", "10")

limit_request_line = 8190  # gunicorn's most; the app answers JSON 414 past MAX_URL_LENGTH

# What gunicorn itself answers, before the app sees a request it cannot parse (a request
# line past limit_request_line, headers past their limits, a malformed line or chunk):
# the API's one JSON error shape instead of gunicorn's HTML page. gunicorn's message
# quotes the client's own bytes back; the answer names the status only.
def json_error(status_int: int, reason: str) -> bytes:
    """The whole HTTP answer gunicorn writes for a request it refused."""
    try:
        phrase = HTTPStatus(status_int).phrase
    except ValueError:
        phrase = reason
    body = json.dumps({
        "code": status_int,
        "status": phrase,
        "reason": reason_for(status_int),
        "message": f"{phrase}: the request could not be read.",
    }).encode()
    head = (f"HTTP/1.1 {status_int} {phrase}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    gunicorn_util.write_nonblock(sock, json_error(status_int, reason))


# gunicorn's workers call util.write_error by its module attribute; this file is read in
# the master before the workers fork, so every worker answers this way.
gunicorn_util.write_error = _write_json_error


# Paths whose last part is a secret (a voucher code: whoever reads it could take it to
# the partner's till first), as the access log writes them.
_SECRET_IN_PATH = re.compile(r"^(/v1/partner/vouchers/)[^/?]+")


def _logged_path(path: str) -> str:
    return _SECRET_IN_PATH.sub(r"\1-", path or "")


class AccessLogger(Logger):
    """gunicorn's logger, but the access log carries no query string (where residents'
    addresses, codes and filters go) and no voucher code from a path."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any,
              ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        path = _logged_path(environ.get("PATH_INFO", ""))
        atoms["U"], atoms["q"] = path, ""
        atoms["r"] = f"{environ.get('REQUEST_METHOD', '-')} {path} " \
                     f"{environ.get('SERVER_PROTOCOL', '-')}"
        atoms["f"] = "-"  # a referer is another address, query string and all
        return atoms


logger_class = AccessLogger
drain_seconds = float(os.environ.get("SHUTDOWN_DRAIN_SECONDS") or 5)
graceful_timeout = int(drain_seconds) + 30
# At exit, how long a worker waits for its last jobs to reach Redis.
HANDOVER_FLUSH_SECONDS = 5.0


def _start_draining() -> None:
    from rewards.api.health import start_draining

    start_draining()


def post_fork(server: Any, worker: Any) -> None:
    """Called by gunicorn in each worker right after the fork: no connection of the
    master's is ever used by a worker."""
    from rewards.extensions import db

    db.after_fork()


def post_worker_init(worker: Any) -> None:
    """Called by gunicorn in each worker once it has loaded the app."""
    gc.collect()
    gc.freeze()
    worker.log.info("worker %s: %d start-up objects frozen out of garbage collection",
                    worker.pid, gc.get_freeze_count())
    graceful_exit = worker.handle_exit

    def drain_then_exit(signum: int, frame: Any) -> None:
        if drain_seconds <= 0:
            _start_draining()
            graceful_exit(signum, frame)
            return
        if getattr(worker, "_draining", False):
            return
        worker._draining = True
        _start_draining()
        worker.log.info("worker %s: draining for %.0f s before shutting down",
                        worker.pid, drain_seconds)
        timer = threading.Timer(drain_seconds, lambda: setattr(worker, "alive", False))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, drain_then_exit)


def worker_int(worker: Any) -> None:
    """SIGINT or SIGQUIT: a quick shutdown; stop looking ready at once."""
    _start_draining()


def worker_exit(server: Any, worker: Any) -> None:
    """The worker is leaving: hand the last requests' jobs to Redis first (a second at
    most each, HANDOVER_TIMEOUT); what is left waits in the outbox for the relay."""
    _start_draining()
    from rewards.handover import handover

    if not handover.wait(timeout=HANDOVER_FLUSH_SECONDS):
        worker.log.warning("worker %s: exiting with jobs not handed over; the outbox "
                           "relay sends them", worker.pid)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: Prometheus' multiprocess mode (PROMETHEUS_MULTIPROC_DIR) stops
    counting its live gauges; its counters and histograms stay in the totals."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
