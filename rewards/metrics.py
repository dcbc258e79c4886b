"""Prometheus metrics at `/metrics`, for the operators' Prometheus only.

The endpoint is off (404) until METRICS_TOKEN is set; then it needs
`Authorization: Bearer <METRICS_TOKEN>`. Request latency is a histogram by route
template (`/v1/me/rewards/<uuid:reward_id>`, never the raw path), method and status
class, observed in every process: under gunicorn set PROMETHEUS_MULTIPROC_DIR to an
empty directory the workers share (docker-entrypoint.sh empties it at start) and a
scrape of any worker adds up all of them. The queue and backlog figures are read from
the database and Redis at scrape time, so every process reports the same values."""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Response, current_app, request
from flask_smorest import abort
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

log = logging.getLogger("rewards.metrics")

# rewards_jobs_failed counts jobs that gave up this recently.
FAILED_WINDOW = timedelta(hours=1)

REQUEST_SECONDS = Histogram(
    "rewards_http_request_duration_seconds",
    "Time to answer a request, by route template, method and status class.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _reserve_before_mapping() -> None:
    """Under PROMETHEUS_MULTIPROC_DIR each process keeps its figures in files it maps
    into memory. prometheus_client makes and grows them with truncate(), which takes no
    disk space: on a full disk the first write into a new page is SIGBUS, and the API
    worker dies on every request (no answer at all, not even /healthz). Here the space
    is taken with posix_fallocate first, so a full disk is an OSError the request clock
    can pass over (the answer goes out; that figure is lost) instead."""
    from prometheus_client import mmap_dict

    known = mmap_dict.MmapedDict
    if getattr(known, "_rewards_reserves", False) or not hasattr(os, "posix_fallocate"):
        return
    make, grow = known.__init__, known._init_value

    def __init__(self: Any, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            with open(filename, "a+b") as file:
                if os.fstat(file.fileno()).st_size == 0:
                    try:
                        os.posix_fallocate(file.fileno(), 0, mmap_dict._INITIAL_MMAP_SIZE)
                    except OSError:
                        os.unlink(filename)  # empty: the collector could not read it
                        raise
        make(self, filename, read_mode)

    def _init_value(self: Any, key: str) -> None:
        encoded = key.encode("utf-8")
        size = 4 + len(encoded) + (8 - (len(encoded) + 4) % 8) + 16
        capacity = self._capacity
        while self._used + size > capacity:
            capacity *= 2
        if capacity != self._capacity:
            os.posix_fallocate(self._f.fileno(), 0, capacity)
        grow(self, key)

    known.__init__ = __init__  # type: ignore[method-assign]
    known._init_value = _init_value  # type: ignore[method-assign]
    known._rewards_reserves = True  # type: ignore[attr-defined]


_reserve_before_mapping()


def _registry() -> CollectorRegistry:
    """This process's metrics, or every worker's under PROMETHEUS_MULTIPROC_DIR."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class BacklogCollector(Collector):
    """Figures read at scrape time: what waits in the outbox and in RQ's queues, what
    failed, and how long the oldest reward has waited for its voucher."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy.exc import SQLAlchemyError

        from .extensions import db

        up = GaugeMetricFamily("rewards_database_up", "1 when the database answered this "
                                                      "scrape's backlog queries.")
        try:
            found = list(self._backlog())
        except SQLAlchemyError as error:
            # The request figures (in this process) still go out: they show the outage.
            logging.getLogger("rewards.metrics").warning(
                "metrics: database: %s", type(error).__name__)
            try:
                db.session.rollback()
            except SQLAlchemyError:
                db.session.remove()
            found = []
        up.add_metric([], 1 if found else 0)
        yield up
        yield from found
        yield from self._queues()

    def _backlog(self) -> Iterator[GaugeMetricFamily]:
        from .extensions import db
        from .models import AwardQueue, OutboxMessage, Reward, utcnow

        now = utcnow()
        # Not done: due_at is set (its index), from being written until done.
        depth, oldest_job = db.session.execute(
            select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.due_at.is_not(None))
        ).one()
        retrying = dict(db.session.execute(
            select(OutboxMessage.queue, func.count()).where(
                OutboxMessage.due_at.is_not(None), OutboxMessage.last_error.is_not(None))
            .group_by(OutboxMessage.queue)).all())
        failed = dict(db.session.execute(
            select(OutboxMessage.queue, func.count()).where(
                OutboxMessage.due_at.is_(None), OutboxMessage.last_error.is_not(None),
                OutboxMessage.done_at > now - FAILED_WINDOW)
            .group_by(OutboxMessage.queue)).all())
        pending, oldest_reward = db.session.execute(
            select(func.count(Reward.id), func.min(Reward.created_at))
            .where(Reward.status == "pending")
        ).one()
        batches, oldest_batch = db.session.execute(
            select(func.count(AwardQueue.id), func.min(AwardQueue.created_at))).one()
        db.session.rollback()
        yield GaugeMetricFamily("rewards_outbox_depth",
                                "Jobs in the outbox not yet done (waiting, queued or running).",
                                value=depth)
        yield GaugeMetricFamily("rewards_outbox_oldest_age_seconds",
                                "Age of the oldest job still waiting in the outbox (0: none).",
                                value=_age(now, oldest_job))
        yield GaugeMetricFamily("rewards_pending_rewards",
                                "Claimed rewards whose voucher is not issued yet.", value=pending)
        yield GaugeMetricFamily("rewards_oldest_pending_reward_age_seconds",
                                "How long the oldest pending reward has waited (0: none).",
                                value=_age(now, oldest_reward))
        yield self._by_queue(
            "rewards_jobs_retrying",
            "Jobs that failed an attempt and are not done: waiting for, or running, a retry.",
            retrying)
        yield self._by_queue(
            "rewards_jobs_failed",
            "Jobs that gave up in the last hour: every attempt failed (for issuing, the "
            "reward failed and its points came back), or attempts kept dying with their "
            "worker.", failed)
        yield GaugeMetricFamily("rewards_award_queue_batches",
                                "Recorded batches waiting to be awarded (AWARDING=deferred).",
                                value=batches)
        yield GaugeMetricFamily("rewards_award_queue_oldest_age_seconds",
                                "How long the oldest batch has waited to be awarded (0: none).",
                                value=_age(now, oldest_batch))

    @staticmethod
    def _by_queue(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
        from .jobs import QUEUES

        family = GaugeMetricFamily(name, documentation, labels=["queue"])
        for queue in sorted(set(QUEUES) | set(counts)):
            family.add_metric([queue], counts.get(queue, 0))
        return family

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        from .extensions import redis
        from .jobs import QUEUES, queue_name

        connection = redis.get()
        if connection is None:  # jobs run in-process: nothing queues
            return
        up = GaugeMetricFamily("rewards_redis_up", "1 when Redis answered this scrape.")
        families = {
            "queued": GaugeMetricFamily("rewards_jobs_queued",
                                        "Jobs waiting in an RQ queue.", labels=["queue"]),
            "started": GaugeMetricFamily("rewards_jobs_started",
                                         "Jobs a worker is running now.", labels=["queue"]),
        }
        try:
            from redis.exceptions import RedisError
            from rq import Queue

            for name in QUEUES:
                queue = Queue(queue_name(name), connection=connection)
                families["queued"].add_metric([name], queue.count)
                families["started"].add_metric([name], queue.started_job_registry.count)
        except RedisError as error:
            log.warning("metrics: Redis did not answer: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families.values()


def _authorised() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        abort(404, message="Metrics are off: set METRICS_TOKEN to turn them on.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def metrics_view() -> Response:
    if not _authorised():
        abort(401, message="Authorization: Bearer <METRICS_TOKEN> is required.")
    backlog = CollectorRegistry()
    backlog.register(BacklogCollector())
    body = generate_latest(_registry()) + generate_latest(backlog)
    return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    app.add_url_rule("/metrics", "metrics", metrics_view)
    app.wsgi_app = RequestClock(app.wsgi_app)  # type: ignore[method-assign]


class RequestClock:
    """WSGI middleware timing each answer from the request's arrival to the app's
    answer (Flask's own work included), observed under the route template Flask
    matched, the method and the status class. Around the app rather than two Flask
    hooks reading and writing `g` and `request` through context-local proxies; the
    histogram's labelled children are looked up once per route, method and class."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app
        self._observed: dict[tuple[str, str, str], Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        started = time.perf_counter()
        answered: list[tuple[str, str]] = []

        def noting(status: str, headers: Any, exc_info: Any = None) -> Any:
            # Flask answers before it lets go of the request (and its matched rule).
            rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
            answered.append((rule.rule if rule is not None else "<unmatched>", status))
            return start_response(status, headers, exc_info)

        answer = self.wsgi_app(environ, noting)
        if answered:
            route, status = answered[-1]
            key = (route, environ.get("REQUEST_METHOD", "").upper(), f"{status[0]}xx")
            try:
                observed = self._observed.get(key)
                if observed is None:
                    observed = self._observed[key] = REQUEST_SECONDS.labels(*key)
                observed.observe(time.perf_counter() - started)
            except OSError as error:
                # No room for the figure (PROMETHEUS_MULTIPROC_DIR on a full disk): the
                # answer matters more than its timing.
                self._not_recorded(error)
        return answer

    def _not_recorded(self, error: OSError) -> None:
        now = time.monotonic()
        if now - getattr(self, "_last_warned", -3600.0) >= 60:
            self._last_warned = now
            log.warning("request timings not recorded: %s", error)
