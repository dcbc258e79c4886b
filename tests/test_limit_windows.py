"""Rate limits with more than one window ("20 per minute;200 per day"): a request
counts in each, shortest first, up to the first it goes over, and the answer's headers
say that window (or the shortest). Limit strings are read at start: a bad one stops
the app from starting rather than failing requests."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards import create_app, limit_counts
from rewards.config import ConfigurationError
from rewards.limit_counts import MemoryCounts, Window, windows


def test_limit_strings_read_as_windows_shortest_first() -> None:
    assert windows("20 per minute;200 per day") == (
        Window(20, 60, "20/1/minute"), Window(200, 86400, "200/1/day"))
    assert windows("300 per hour, 30 per minute") == (
        Window(30, 60, "30/1/minute"), Window(300, 3600, "300/1/hour"))
    assert windows("5/second") == (Window(5, 1, "5/1/second"),)
    assert windows("10 per 2 Hours") == (Window(10, 7200, "10/2/hour"),)
    for bad in ("", "lots", "20 per fortnight", "per minute", "20 per minute;", "-1/day"):
        with pytest.raises(ValueError):
            windows(bad)


def test_a_bad_limit_setting_stops_the_app_from_starting(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match="RATE_LIMIT_CLAIM"):
        create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": None,
                    "SMTP_URL": None, "TESTING": True,
                    "SECRET_KEY": "test-secret-key-at-least-32-bytes-long",
                    "IDENTIFIER_KEY": "test-identifier-key", "LOG_LEVEL": "WARNING",
                    "RATE_LIMIT_CLAIM": "60 a minute"})


def test_a_request_counts_in_each_window_up_to_the_first_it_goes_over(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "RATE_LIMIT_LOGIN", "3 per day;2 per second")

    emails = (f"x{n}@council.example" for n in range(10))  # no account's own lockout

    def login() -> tuple[int, str, str]:
        answer = client.post("/v1/auth/login", json={"email": next(emails),
                                                     "password": "guess"})
        return (answer.status_code, answer.headers["RateLimit-Limit"],
                answer.headers["RateLimit-Remaining"])

    # The counters' clock stands still unless moved (a slow login must not end the
    # second's window).
    clock = [time.time()]
    monkeypatch.setattr(limit_counts, "time", SimpleNamespace(time=lambda: clock[0]))
    # The second's window is shown while neither is over; the third request goes over
    # it and is not counted in the day's.
    assert [login() for _ in range(3)] == [(401, "2", "1"), (401, "2", "0"),
                                           (429, "2", "0")]
    clock[0] += 1.5
    assert login() == (401, "2", "1")  # a new second; the day's count is 3 of 3
    over = client.post("/v1/auth/login", json={"email": next(emails), "password": "guess"})
    assert over.status_code == 429  # over the day's: its headers
    assert (over.headers["RateLimit-Limit"], over.headers["RateLimit-Remaining"]) == ("3", "0")
    assert 86000 < int(over.headers["Retry-After"]) <= 86400
    assert 86000 < int(over.headers["RateLimit-Reset"]) <= 86400


def test_memory_counts_start_again_when_a_window_ends(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    counts = MemoryCounts()
    assert counts.hit("a", 60) == (1, 1060.0)
    now[0] = 1059.0
    assert counts.hit("a", 60) == (2, 1060.0)
    assert counts.hit("b", 60) == (1, 1119.0)
    now[0] = 1060.0  # a's window is over, b's is not
    assert counts.hit("a", 60) == (1, 1120.0)
    now[0] = 2000.0  # a sweep drops ended windows; the counts stay right
    assert counts.hit("c", 60) == (1, 2060.0)
    assert set(counts._counts) == {"c"}
