"""Rate limits counted in a real Redis: one round trip a limited request, and the
RateLimit-* headers still say the count and the window as Redis holds them."""

from __future__ import annotations

import secrets
import time
from typing import Any

from flask import Flask

from rewards import create_app
from rewards.handover import handover
from rewards.limit_counts import COUNT_AND_TTL, RedisCounts

from .reward_support import admin_headers, make_offer, make_partner, resident


def _app(database_url: str, redis_url: str) -> Flask:
    return create_app({
        "SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url, "SMTP_URL": None,
        "TESTING": True, "SECRET_KEY": "test-secret-key-at-least-32-bytes-long",
        "IDENTIFIER_KEY": "test-identifier-key", "LOG_LEVEL": "CRITICAL",
        "STAFF_TOTP_REQUIRED": False, "RATE_LIMIT_CLAIM": "3 per minute",
        # Counters of their own: a run beside another on the same Redis counts apart.
        "RQ_QUEUE_PREFIX": f"limits{secrets.token_hex(4)}_"})


def test_a_limited_request_is_counted_in_one_round_trip_with_true_headers(
    database_url: str, redis_url: str
) -> None:
    app = _app(database_url, redis_url)
    storage = app.extensions["rate_limits"]
    assert isinstance(storage, RedisCounts)
    client = app.test_client()
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10, stock=10)
    me = resident(client, app, points=100)

    sent: list[Any] = []
    own = storage.connection()  # the one this thread's requests count on
    original = own.send_command

    def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return original(*args, **options)

    own.send_command = counting
    answers, trips = [], []
    try:
        for _ in range(4):
            sent.clear()
            answers.append(client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                                       headers=me.headers))
            trips.append(list(sent))
    finally:
        del own.send_command
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    # One script a request: the count and the window's end come back together (the
    # first may load the script into a Redis that has not seen it).
    assert trips[1:] == [["EVALSHA"]] * 3
    assert trips[0] in (["EVALSHA"], ["EVALSHA", "SCRIPT", "EVALSHA"])
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["RateLimit-Limit"] for a in answers} == {"3"}
    now = time.time()
    for answer in answers:  # seconds to the window's end
        assert 0 <= int(answer.headers["RateLimit-Reset"]) <= 61
    assert now > 1_000_000
    assert 0 < int(answers[3].headers["Retry-After"]) <= 60
    assert "Retry-After" not in answers[0].headers
    # What the headers said is what Redis holds.
    connection = storage.redis
    (key,) = connection.keys(f"*/member:{me.id}/me.Rewards/*")
    assert int(connection.get(key)) == 4
    assert 0 < connection.ttl(key) <= 60
    assert handover.wait(timeout=30)
    for leftover in connection.keys(f"*{app.config['RQ_QUEUE_PREFIX']}*"):
        connection.delete(leftover)


def test_a_redis_without_the_script_is_given_it_once(redis_url: str) -> None:
    class Fresh(RedisCounts):
        SCRIPT = COUNT_AND_TTL + f"-- {secrets.token_hex(8)}"  # one Redis has not seen

    prefix = f"limits{secrets.token_hex(4)}:"
    counts = Fresh(redis_url, {}, prefix, None)
    sent: list[Any] = []
    own = counts.connection()
    own.connect()  # its own greeting (HELLO, SELECT ...) is not what is counted here
    original = own.send_command

    def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return original(*args, **options)

    own.send_command = counting
    try:
        first, second = counts.hit("a", 60), counts.hit("a", 60)
    finally:
        counts.reset()
    assert sent == ["EVALSHA", "SCRIPT", "EVALSHA", "EVALSHA"]
    assert first is not None and second is not None
    assert (first[0], second[0]) == (1, 2)
    assert time.time() + 58 <= second[1] <= time.time() + 60
    assert counts.redis.keys(f"{prefix}*") == []  # reset took this prefix's keys
