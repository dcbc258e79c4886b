"""Rate limits when Redis hangs or refuses connections: the limiter counts in Redis, and a
Redis that never answers must not hold a limited request (a claim, a login), nor one that
is down turn the limits off. Each process then counts in its own memory."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from flask import Flask

from rewards import create_app
from rewards.handover import handover
from rewards.limit_counts import MemoryCounts, RedisCounts

from .reward_support import admin_headers, make_offer, make_partner, resident
from .test_job_faults import SilentRedis


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _claims_with_redis(database_url: str, redis_url: str) -> list[int]:
    app: Flask = create_app({
        "SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url, "SMTP_URL": None,
        "TESTING": True, "SECRET_KEY": "test-secret-key-at-least-32-bytes-long",
        "IDENTIFIER_KEY": "test-identifier-key", "LOG_LEVEL": "CRITICAL",
        "STAFF_TOTP_REQUIRED": False, "RATE_LIMIT_CLAIM": "3 per minute"})
    # Each look at Redis gives up quickly: the first request to find it hung waits
    # for that, and the next ones count in memory.
    options = app.config["RATELIMIT_STORAGE_OPTIONS"]
    assert options["socket_timeout"] <= 1 and options["socket_connect_timeout"] <= 1
    assert app.config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True
    client = app.test_client()
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10, stock=10)
    me = resident(client, app, points=100)
    return [client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                        headers=me.headers).status_code for _ in range(4)]


@pytest.mark.parametrize("redis", ["hung", "refusing"])
def test_limited_requests_neither_wait_for_redis_nor_go_unlimited(
    database_url: str, redis: str
) -> None:
    silent = SilentRedis() if redis == "hung" else None
    url = f"redis://127.0.0.1:{silent.port if silent else _closed_port()}/0"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["answers"] = _claims_with_redis(database_url, url)
        except BaseException as error:  # reported below
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        # A generous bound: without the limiter's timeouts a hung Redis holds the first
        # limited request for good.
        worker.join(timeout=120)
        assert not worker.is_alive(), "a request is still waiting for Redis"
        if silent is not None:
            assert silent.received.is_set(), "the limiter never asked Redis"
    finally:
        if silent is not None:
            silent.close()
    assert "error" not in outcome, outcome.get("error")
    # Every claim answered, and the limit still holds (counted in this process).
    assert outcome["answers"] == [202, 202, 202, 429]
    assert handover.wait(timeout=30)


def test_redis_is_tried_again_after_1_2_4_up_to_32_seconds(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    counts = RedisCounts(f"redis://127.0.0.1:{_closed_port()}/0",
                         {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}, "t:",
                         MemoryCounts())
    tried: list[float] = []
    trying = counts._count_and_ttl

    def count_and_ttl(key: str, seconds: int) -> Any:
        tried.append(now[0])
        return trying(key, seconds)

    monkeypatch.setattr(counts, "_count_and_ttl", count_and_ttl)
    answers = []
    for _ in range(200):  # 100 s, a request each half second
        answers.append(counts.hit("k", 3600))
        now[0] += 0.5
    assert [later - earlier for earlier, later in zip(tried[:-1], tried[1:], strict=True)] == [
        1, 2, 4, 8, 16, 32, 32]
    # Counted all along, in memory.
    assert [answer[0] for answer in answers if answer] == list(range(1, 201))
