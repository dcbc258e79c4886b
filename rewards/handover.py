"""Handing a request's jobs to Redis after the response, off the request's time.

Each process has one daemon thread fed by a bounded queue: a request only puts its
outbox ids on the queue. The thread talks to Redis with short timeouts, so a hung
Redis costs it a second per batch and never a request. Whatever it cannot hand over
stays due in the outbox, and the relay sends it (rewards/jobs.py)."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from typing import Any

from flask import Flask
from redis import Redis

log = logging.getLogger("rewards.jobs")

# Seconds the hand-over thread waits for Redis to connect or answer.
HANDOVER_TIMEOUT = 1.0
QUEUE_SIZE = 10_000
# Requests' batches handed over together, at most.
BATCHES_AT_ONCE = 200


# The app, its Redis URL, the outbox ids, the RQ meta for them and the jobs whose rows
# were written marked handed over (jobs.Marked).
Batch = tuple[Flask, str, list[uuid.UUID], dict[str, Any] | None, list[Any]]


class Handover:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[Batch] = queue.Queue(QUEUE_SIZE)
        self._clients: dict[str, Redis] = {}

    def submit(self, app: Flask, redis_url: str, ids: list[uuid.UUID],
               meta: dict[str, Any] | None = None, marked: list[Any] | None = None) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait((app, redis_url, list(ids), meta, list(marked or ())))
        except queue.Full:
            log.warning("hand-over queue full: %d job(s) wait in the outbox for the relay",
                        len(ids) + len(marked or ()))

    def wait(self, timeout: float = 10.0) -> bool:
        """Until everything submitted so far was handed over (or given up); for tests
        and for a process about to exit."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            # A forked child has the parent's queue but not its thread: start afresh.
            self._queue = queue.Queue(QUEUE_SIZE)
            self._clients = {}
            thread = threading.Thread(target=self._run, name="job-handover", daemon=True)
            thread.start()
            self._pid = pid

    def _client(self, url: str) -> Redis:
        client = self._clients.get(url)
        if client is None:
            client = Redis.from_url(url, socket_connect_timeout=HANDOVER_TIMEOUT,
                                    socket_timeout=HANDOVER_TIMEOUT)
            self._clients[url] = client
        return client

    def _run(self) -> None:
        from . import jobs
        from .extensions import db

        work = self._queue
        while True:
            # What requests put here while the last hand-over ran goes in one: one
            # statement and one Redis round trip for all of it, however many requests.
            waiting = [work.get()]
            while len(waiting) < BATCHES_AT_ONCE:
                try:
                    waiting.append(work.get_nowait())
                except queue.Empty:
                    break
            groups: dict[tuple[int, str], list[Batch]] = {}
            for batch in waiting:
                groups.setdefault((id(batch[0]), batch[1]), []).append(batch)
            for group in groups.values():
                app, url = group[0][0], group[0][1]
                try:
                    with app.app_context():
                        try:
                            jobs.push_batches([(ids, meta, marked)
                                               for _, _, ids, meta, marked in group],
                                              self._client(url))
                        finally:
                            db.session.remove()
                except Exception:  # the outbox keeps them; the relay sends them
                    log.exception("could not hand %d job(s) over to the queue",
                                  sum(len(ids) + len(marked)
                                      for _, _, ids, _, marked in group))
            for _ in waiting:
                work.task_done()


handover = Handover()
