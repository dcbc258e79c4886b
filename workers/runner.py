"""Running workers and the cron scheduler for real: `rewards worker`, `rewards cron`.

A worker relays the outbox every few seconds while it waits for jobs, so retries
and jobs lost with Redis or abandoned by a killed worker are sent again by any
surviving worker (and by `rewards cron` each minute). By default jobs run in the
worker's own process (no fork per job: many times the throughput, and the session
is removed after each job by workers.job); `--fork` runs each job in a forked work
horse instead. Both the worker and the scheduler outlive Redis outages: they wait
and reconnect with back-off, logging each attempt. See docs/jobs.md."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from flask import Flask
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.timeouts import UnixSignalDeathPenalty

from rewards import jobs, relay
from rewards.extensions import db

from .rqjob import OutboxJob

log = logging.getLogger("workers.runner")

# Seconds between a worker's looks at the outbox for due jobs.
RELAY_EVERY = 5.0
# Worker TTL: the worker waits for jobs in slices of WORKER_TTL - 15 seconds, and
# relays between them.
WORKER_TTL = 20
# RQ's own maintenance (its registries), every minute rather than ten.
MAINTENANCE_INTERVAL = 60
# Back-off between reconnection attempts while Redis is away, in seconds.
BACKOFF_FIRST, BACKOFF_MOST = 1.0, 30.0


def relay_quietly(everything: bool = False) -> int:
    """Relay due outbox rows (with `everything`, all not done that RQ does not hold);
    a database or Redis failure is logged, never raised (the next pass tries again),
    and no session is left open."""
    try:
        return relay.relay(everything=everything)
    except StopRequested:
        raise
    except Exception:
        log.exception("could not relay the outbox")
        return 0
    finally:
        try:
            db.session.remove()
        except Exception:
            log.exception("could not end the relay's session")


class _HardTimeLimit(UnixSignalDeathPenalty):
    """RQ's timer, raising jobs.AttemptOverran (not an Exception) when an attempt runs
    past its time limit: RQ's own JobTimeoutException is an Exception, which a job's
    `except Exception` around a call that may fail (sending one notice of many) caught,
    so the attempt ran on past its lease while the relay sent the job again."""

    def handle_death_penalty(self, signum: int, frame: Any) -> None:
        raise jobs.AttemptOverran(
            f"the attempt ran longer than its limit ({self._timeout} seconds)")


class _RelayingWorker:
    """Relays due outbox rows between jobs and while waiting for them, and builds the
    RQ job of a claim's id handed over alone (workers/rqjob.py)."""

    job_class = OutboxJob
    death_penalty_class = _HardTimeLimit
    _last_relay = 0.0
    # RQ's own back-off while Redis is away, capped like ours.
    max_connection_wait_time = BACKOFF_MOST

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        if pipeline is None and not getattr(self, "_is_horse", False):
            now = time.monotonic()
            if now - self._last_relay >= RELAY_EVERY:
                self._last_relay = now
                relay_quietly()


class OutboxWorker(_RelayingWorker, SimpleWorker):
    """Runs jobs in its own process."""


class ForkingOutboxWorker(_RelayingWorker, Worker):
    """Runs each job in a forked work horse."""


def _stop_requested(worker: Worker | None) -> bool:
    return worker is not None and (
        worker._stop_requested or getattr(worker, "_shutdown_requested_date", None) is not None)


def _connect(url: str) -> Redis:
    connection = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    connection.ping()
    return connection


class _Stop(Exception):
    pass


def _sleep(seconds: float) -> None:
    """Sleep, unless asked to stop meanwhile (SIGTERM, SIGINT)."""
    def stop(signum: int, frame: Any) -> None:
        raise _Stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        time.sleep(seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_worker(app: Flask, burst: bool = False, fork: bool = False) -> None:
    """Work the scheme's queues until asked to stop (or, with `burst`, until the
    queues are empty and nothing in the outbox is due), reconnecting to Redis."""
    url = app.config["REDIS_URL"]
    queues = [jobs.queue_name(name) for name in jobs.QUEUES]
    worker_class = ForkingOutboxWorker if fork else OutboxWorker
    delay = BACKOFF_FIRST
    attempt = 0
    while True:
        worker: Worker | None = None
        try:
            connection = _connect(url)
            if attempt:
                log.warning("Redis is back after %d attempt(s)", attempt)
            attempt, delay = 0, BACKOFF_FIRST
            sent = relay_quietly(everything=True)
            if sent:
                log.info("sent %d outbox job(s) left from before", sent)
            worker = worker_class(queues, connection=connection, worker_ttl=WORKER_TTL,
                                  maintenance_interval=MAINTENANCE_INTERVAL,
                                  job_monitoring_interval=5)
            worker.work(burst=burst, logging_level=app.config.get("LOG_LEVEL", "INFO"))
            if _stop_requested(worker):
                return
            if burst:
                if relay_quietly():
                    continue
                return
            # RQ's loop quits on some Redis errors (after logging them): start again.
            connection.ping()
            log.warning("the worker stopped unexpectedly; starting it again in %.0f s", delay)
        except (StopRequested, _Stop, KeyboardInterrupt):
            return
        except (RedisConnectionError, RedisTimeoutError, OSError, RedisError) as error:
            if _stop_requested(worker):
                return
            attempt += 1
            log.warning("Redis unavailable (%s); reconnecting in %.0f s (attempt %d)",
                        error, delay, attempt)
        try:
            _sleep(delay)
        except (_Stop, KeyboardInterrupt):
            return
        delay = min(delay * 2, BACKOFF_MOST)


def run_cron(app: Flask, config: str = "workers.cron") -> None:
    """`rq cron` with the schedules in workers/cron.py, reconnecting to Redis."""
    from rq.cron import CronScheduler

    url = app.config["REDIS_URL"]
    delay = BACKOFF_FIRST
    attempt = 0
    while True:
        try:
            connection = _connect(url)
            if attempt:
                log.warning("Redis is back after %d attempt(s)", attempt)
            attempt, delay = 0, BACKOFF_FIRST
            scheduler = CronScheduler(connection=connection,
                                      logging_level=app.config.get("LOG_LEVEL", "INFO"))
            scheduler.load_config_from_file(config)
            scheduler.start()  # returns when asked to stop
            return
        except KeyboardInterrupt:
            return
        except (RedisError, OSError) as error:
            attempt += 1
            log.warning("Redis unavailable (%s); reconnecting the scheduler in %.0f s "
                        "(attempt %d)", error, delay, attempt)
        try:
            _sleep(delay)
        except (_Stop, KeyboardInterrupt):
            return
        delay = min(delay * 2, BACKOFF_MOST)
