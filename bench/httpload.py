"""A small HTTP load generator for the benchmarks: asyncio streams, no HTTP library.

Requests are prepared as raw bytes before the clock starts (HTTP/1.1 with
`Connection: close`, as gunicorn's sync workers close every connection anyway), so
the client's work per request is one connect, one write and one read to the end:
on a 2-core machine the client shares the CPU with the server, and the less it does
the more of the machine the server gets (the same for the bare Flask baseline).

Two ways to drive a server:
- `closed_loop`: `concurrency` clients, each sending its next request as soon as the
  last one is answered, for `seconds`: the most the server does (requests/s).
- `open_loop`: requests sent at a fixed `rate` whatever the server does; latency is
  counted from when each was due, so a server that falls behind shows it in p99
  (no coordinated omission).

While either runs, the client's garbage collector is off (and what it holds frozen out
of reach): the prepared requests are hundreds of thousands of objects, and a full
collection over them stalls every request in flight for tens of milliseconds, a pause
of the client's that an open loop would count as the server's p99."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


def request_bytes(method: str, path: str, headers: dict[str, str] | None = None,
                  body: bytes = b"", host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    """What one run saw: latencies in seconds of the answers with the expected status,
    and every other outcome counted by its status (or the error's name)."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile_ms(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
        return ordered[index] * 1000

    def summary(self) -> dict[str, float | int]:
        return {"per_s": round(self.rate, 1), "requests": self.count,
                "p50_ms": round(self.percentile_ms(0.50), 2),
                "p99_ms": round(self.percentile_ms(0.99), 2), "errors": self.error_count}


async def _exchange(port: int, payload: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        data = await reader.read()
    finally:
        writer.close()
    return int(data[9:12] or 0), data


async def _one(port: int, payload: bytes, expect: int, due: float, result: Result) -> None:
    try:
        status, data = await _exchange(port, payload)
    except OSError as error:
        key = type(error).__name__
        result.errors[key] = result.errors.get(key, 0) + 1
        return
    if status == expect:
        result.latencies.append(time.perf_counter() - due)
        return
    result.errors[str(status)] = result.errors.get(str(status), 0) + 1
    if len(result.samples) < 3:
        result.samples.append(data[:400].decode("utf-8", "replace"))


# A request to send: (label, raw bytes, the status that counts as success).
Request = tuple[str, bytes, int]


def _result(results: dict[str, Result], label: str) -> Result:
    if label not in results:
        results[label] = Result()
    return results[label]


async def _closed(port: int, requests: Iterator[Request], concurrency: int,
                  seconds: float) -> dict[str, Result]:
    results: dict[str, Result] = {}
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            item = next(requests, None)
            if item is None:
                return
            label, payload, expect = item
            await _one(port, payload, expect, time.perf_counter(), _result(results, label))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    for result in results.values():
        result.seconds = elapsed
    return results


async def _open(port: int, requests: Iterator[Request], rate: float,
                seconds: float) -> dict[str, Result]:
    results: dict[str, Result] = {}
    tasks = []
    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        due = started + n / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        item = next(requests, None)
        if item is None:
            break
        label, payload, expect = item
        tasks.append(asyncio.ensure_future(
            _one(port, payload, expect, due, _result(results, label))))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for result in results.values():
        result.seconds = elapsed
    return results


def _without_collector(run: Callable[..., Any], *args: Any) -> dict[str, Result]:
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return asyncio.run(run(*args))
    finally:
        gc.enable()
        gc.unfreeze()


def closed_loop(port: int, requests: Iterator[Request], concurrency: int,
                seconds: float) -> dict[str, Result]:
    """Each label's result with `concurrency` clients for `seconds` (or until the
    requests run out)."""
    return _without_collector(_closed, port, requests, concurrency, seconds)


def open_loop(port: int, requests: Iterator[Request], rate: float,
              seconds: float) -> dict[str, Result]:
    """Each label's result with requests due at `rate` a second for `seconds`."""
    return _without_collector(_open, port, requests, rate, seconds)


def cycle(requests: list[Request]) -> Iterator[Request]:
    return itertools.cycle(requests)
