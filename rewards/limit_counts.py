"""Counting requests in fixed windows, for rewards/limits.py: limit strings read into
windows, and the counters, in Redis (shared by every process) or in this process's
memory.

A window starts with the first request a client sends after the last one ended, and
lasts its length; a count over the window's amount is a 429 until it ends."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref
from typing import Any, NamedTuple, Protocol

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

log = logging.getLogger(__name__)

# Window lengths by unit, as limit strings name them ("per day", "per 2 hours").
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "month": 30 * 86400,
         "year": 360 * 86400}
_SEPARATOR = re.compile(r"[,;|]")
_ONE = re.compile(r"\s*([0-9]+)\s*(?:/|\s*per\s*)\s*([0-9]+)?\s*([a-z]+)\s*", re.IGNORECASE)


class Window(NamedTuple):
    amount: int  # requests allowed in it
    seconds: int  # its length
    name: str  # "20/1/minute": part of the counter's key


_read: dict[str, tuple[Window, ...]] = {}


def windows(limit: str) -> tuple[Window, ...]:
    """The windows of a limit string ("20 per minute;200 per day", "5/hour",
    "10 per 2 hours"), shortest first. ValueError for a string that says none."""
    known = _read.get(limit)
    if known is not None:
        return known
    read = []
    for part in _SEPARATOR.split(limit):
        match = _ONE.fullmatch(part)
        unit = match[3].lower().removesuffix("s") if match else ""
        if match is None or unit not in UNITS:
            raise ValueError(f"not a rate limit: {limit!r} (e.g. '20 per minute;200 per day')")
        multiples = int(match[2] or 1)
        read.append(Window(int(match[1]), UNITS[unit] * multiples,
                           f"{int(match[1])}/{multiples}/{unit}"))
    _read[limit] = found = tuple(sorted(read, key=lambda window: window.seconds))
    return found


class Counts(Protocol):
    def hit(self, key: str, seconds: int) -> tuple[int, float] | None:
        """Count one request under `key` in a window of `seconds`: the count so far
        and the window's end (Unix time); None when nothing could count it."""

    def reset(self) -> None:
        """Every count back to zero."""


class MemoryCounts:
    """Counts in this process's memory (each worker its own)."""

    PURGE_EVERY = 60.0  # seconds between sweeps of ended windows

    def __init__(self) -> None:
        self._counts: dict[str, list[Any]] = {}  # key -> [count, window's end]
        self._lock = threading.Lock()
        self._purge_at = time.time() + self.PURGE_EVERY

    def hit(self, key: str, seconds: int) -> tuple[int, float] | None:
        now = time.time()
        with self._lock:
            if now >= self._purge_at:
                self._purge(now)
            counted = self._counts.get(key)
            if counted is None or counted[1] <= now:
                counted = self._counts[key] = [0, now + seconds]
            counted[0] += 1
            return counted[0], counted[1]

    def _purge(self, now: float) -> None:
        self._purge_at = now + self.PURGE_EVERY
        for key in [key for key, (_, ends) in self._counts.items() if ends <= now]:
            del self._counts[key]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


# Counts a request and answers the count with the window's remaining seconds: one
# round trip. The first request of a window starts its expiry.
COUNT_AND_TTL = """
local current = redis.call("incrby", KEYS[1], 1)
if tonumber(current) == 1 then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""


class RedisCounts:
    """Counts in Redis, one round trip a window. When Redis fails to answer (hung, down)
    the counting goes on in `fallback` (None: the request is not counted), and Redis is
    tried again after 1 s, then after 2, 4 ... at most 32 s while it keeps failing."""

    LONGEST_WAIT = 32
    SCRIPT = COUNT_AND_TTL

    def __init__(self, uri: str, options: dict[str, Any], prefix: str,
                 fallback: MemoryCounts | None) -> None:
        # One try: a failure is counted in memory at once, not after more timeouts.
        self.redis = redis.Redis.from_url(uri.replace("redis+unix://", "unix://"),
                                          retry=Retry(NoBackoff(), 0), **options)
        self._sha = self.redis.register_script(self.SCRIPT).sha
        self._own = threading.local()  # each thread's connection
        self.prefix = prefix  # before each key
        self.fallback = fallback
        self._retry_at = 0.0  # while Redis fails: when to try it again
        self._wait = 0  # and how long after that
        _EVERY.add(self)

    def hit(self, key: str, seconds: int) -> tuple[int, float] | None:
        if self._retry_at:
            if time.time() < self._retry_at:
                return self.fallback.hit(key, seconds) if self.fallback else None
        try:
            current, ttl = self._count_and_ttl(self.prefix + key, seconds)
        except Exception as error:  # any failure of the store: count elsewhere, go on
            return self._failed(error, key, seconds)
        if self._retry_at:
            log.info("rate limit counts are in Redis again")
            self._retry_at, self._wait = 0.0, 0
        return int(current), time.time() + max(int(ttl), 0)

    def connection(self) -> Any:
        """This thread's own connection to Redis: a count is one command and its answer
        on it, without the client's pool, retry and event machinery around each."""
        connection = getattr(self._own, "connection", None)
        if connection is None:
            connection = self._own.connection = self.redis.connection_pool.make_connection()
        return connection

    def _count_and_ttl(self, key: str, seconds: int) -> Any:
        connection = self.connection()
        try:
            connection.send_command("EVALSHA", self._sha, 1, key, seconds)
            return connection.read_response()
        except NoScriptError:  # a Redis that has not seen the script (or restarted)
            connection.send_command("SCRIPT", "LOAD", self.SCRIPT)
            connection.read_response()
            connection.send_command("EVALSHA", self._sha, 1, key, seconds)
            return connection.read_response()

    def _failed(self, error: Exception, key: str, seconds: int) -> tuple[int, float] | None:
        if not self._retry_at:
            log.warning("rate limit counts: Redis did not answer (%s); counting in "
                        "%s", error, "memory" if self.fallback else "nothing")
        self._wait = min(self._wait * 2, self.LONGEST_WAIT) if self._wait else 1
        self._retry_at = time.time() + self._wait
        return self.fallback.hit(key, seconds) if self.fallback else None

    def reset(self) -> None:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"
        for key in self.redis.scan_iter(match=pattern, count=1000):
            self.redis.delete(key)
        if self.fallback is not None:
            self.fallback.reset()


_EVERY: weakref.WeakSet[RedisCounts] = weakref.WeakSet()


def _after_fork() -> None:
    # A forked process makes its own connections; its parent's stay the parent's.
    for counts in list(_EVERY):
        counts._own = threading.local()


os.register_at_fork(after_in_child=_after_fork)


def counts_for(uri: str, options: dict[str, Any], prefix: str,
               fallback: bool) -> MemoryCounts | RedisCounts:
    """Counters at `uri` ("memory://" or a Redis address), with the Redis client's
    `options` and `prefix` before each key (only those are reset), falling back to
    memory when Redis fails if `fallback`."""
    if uri == "memory://":
        return MemoryCounts()
    if not uri.startswith(("redis://", "rediss://", "redis+unix://", "unix://")):
        raise ValueError(f"rate limit counts: no store for {uri!r} (memory:// or redis://)")
    return RedisCounts(uri, options, prefix, MemoryCounts() if fallback else None)
