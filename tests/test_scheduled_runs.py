"""Scheduled runs that move points go through the outbox (workers/schedule.py): one row
per run and time however many schedulers write it, a run Redis lost or whose worker
died sent again, and two real `rewards cron` processes with a real worker running each
run once."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import select, update

import workers.schedule
from rewards import relay
from rewards.extensions import db
from rewards.models import OutboxMessage, Reward, utcnow
from workers.schedule import RUNS, latest_time, outbox_id, write_runs

from .reward_support import (
    admin_headers,
    available,
    ledger_sound,
    make_offer,
    make_partner,
    postings,
    resident,
    reward_status,
)
from .test_job_faults import PrivateRedis, _wait_for, private_redis  # noqa: F401
from .test_worker import BIN, ROOT, run_rewards_worker, worker_env

SCHEDULED_JOBS = {run.job for run in RUNS}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _scheduled_rows(app: Flask) -> list[OutboxMessage]:
    with app.app_context():
        rows = list(db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.job.in_(SCHEDULED_JOBS))))
        db.session.expunge_all()
        return rows


def test_each_run_is_written_once_per_time(app: Flask) -> None:
    with app.app_context():
        first = write_runs(_at("2026-03-10T02:31:20"))
        assert len(first) == len(RUNS)
        # A second scheduler, the same minute or a few later: nothing new.
        assert write_runs(_at("2026-03-10T02:31:50")) == []
        assert write_runs(_at("2026-03-10T02:36:00")) == []
        # Past 03:07 and 02:40: the hourly release and stuck-reward sweep are due again.
        again = write_runs(_at("2026-03-10T03:08:00"))
    rows = {row.id: row for row in _scheduled_rows(app)}
    assert {rows[i].job for i in again} == {"workers.ledger.release_pending",
                                            "workers.rewards.fail_stuck_rewards"}
    assert len(rows) == len(RUNS) + 2
    expiry = next(run for run in RUNS if run.job == "workers.ledger.expire_points")
    assert outbox_id(expiry, _at("2026-03-10T02:30:00")) in first
    assert rows[outbox_id(expiry, _at("2026-03-10T02:30:00"))].due_at is not None


def test_the_latest_time_counts_its_own_minute_and_misses_are_caught_up_once(
        app: Flask) -> None:
    expiry = next(run for run in RUNS if run.job == "workers.ledger.expire_points")
    assert latest_time(expiry, _at("2026-03-10T02:30:00")) == _at("2026-03-10T02:30:00")
    assert latest_time(expiry, _at("2026-03-10T02:29:59")) == _at("2026-03-09T02:30:00")
    with app.app_context():
        write_runs(_at("2026-03-10T02:00:00"))
        # No scheduler ran from 02:00 to 09:45 (Redis away, a deploy): one expiry run
        # for 02:30 when one comes back, not one per missed minute.
        late = write_runs(_at("2026-03-10T09:45:00"))
    jobs = sorted(row.job for row in _scheduled_rows(app) if row.id in late)
    assert jobs.count("workers.ledger.expire_points") == 1
    assert outbox_id(expiry, _at("2026-03-10T02:30:00")) in late


def _voucher_past_expiry(client: FlaskClient, app: Flask) -> tuple[Any, str]:
    """A resident with 70 points and an issued voucher (30 points, given back when it
    expires unused) that expired a minute ago."""
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], title="Swim", cost_points=30, stock=5,
                       points_back_on_expiry=True, voucher_valid_days=7)
    me = resident(client, app, points=100)
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                          headers=me.headers)
    assert claimed.status_code == 202, claimed.json
    reward_id = claimed.json["id"]
    assert reward_status(app, reward_id) == "issued"
    with app.app_context():
        db.session.execute(update(Reward).where(Reward.id == uuid.UUID(reward_id))
                           .values(expires_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    assert available(client, me.headers) == 70
    return me, reward_id


def _expiry_row_id(now: datetime) -> uuid.UUID:
    run = next(run for run in RUNS if run.job == "workers.rewards.expire_vouchers")
    return outbox_id(run, latest_time(run, now))


def test_a_run_redis_lost_or_whose_worker_died_is_sent_again_and_done_once(
        client: FlaskClient, app: Flask, private_redis: PrivateRedis,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    me, reward_id = _voucher_past_expiry(client, app)
    private_redis.start()
    monkeypatch.setitem(app.config, "REDIS_URL", private_redis.url)
    connection = Redis.from_url(private_redis.url)
    with app.app_context():
        assert workers.schedule.write_due() == len(RUNS)
        assert workers.schedule.write_due() == 0  # a second scheduler
    row_id = _expiry_row_id(utcnow())
    assert connection.exists(f"rq:job:{row_id}")

    # Redis restarts empty before a worker took it; then an attempt begins and its
    # worker is killed (counted, leased, never finished). Each time the lease lapses
    # the relay sends the run again.
    private_redis.kill()
    private_redis.start()
    with app.app_context():
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == row_id)
                           .values(due_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert relay.relay() >= 1
    assert connection.exists(f"rq:job:{row_id}")
    connection.flushall()
    with app.app_context():
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == row_id)
                           .values(attempts=1, due_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()

    done = run_rewards_worker(app, private_redis.url)
    assert done.returncode == 0, done.stderr
    assert reward_status(app, reward_id) == "expired"
    assert available(client, me.headers) == 100
    assert postings(app, "refund") == 1
    [row] = [row for row in _scheduled_rows(app) if row.id == row_id]
    assert (row.attempts, row.due_at, row.last_error) == (2, None, None)
    assert all(row.due_at is None for row in _scheduled_rows(app))
    # Done once: writing and relaying again sends nothing.
    with app.app_context():
        assert workers.schedule.write_due() == 0
        assert relay.relay(everything=True) == 0
    ledger_sound(app)


def test_two_schedulers_and_a_worker_run_each_scheduled_run_once(
        client: FlaskClient, app: Flask, private_redis: PrivateRedis,  # noqa: F811
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `rewards cron` at once (one started by mistake, or a rolling deploy): each
    writes the runs due, the worker runs each once, the voucher's points come back once."""
    me, reward_id = _voucher_past_expiry(client, app)
    private_redis.start()
    monkeypatch.setitem(app.config, "REDIS_URL", private_redis.url)
    env = worker_env(app, private_redis.url)
    logs = [tmp_path / f"{name}.log" for name in ("cron1", "cron2", "worker")]
    processes = []
    for log_path, command in zip(logs, (["cron"], ["cron"], ["worker"]), strict=True):
        with open(log_path, "w") as log_file:
            processes.append(subprocess.Popen(
                [str(BIN / "rewards"), *command], env=env, cwd=ROOT, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True))
    connection = Redis.from_url(private_redis.url)
    try:
        _wait_for(lambda: connection.zcard("rq:cron_schedulers") == 2, 30,
                  "both schedulers to start")
        _wait_for(lambda: len(rows := _scheduled_rows(app)) == len(RUNS)
                  and all(row.due_at is None for row in rows), 30,
                  "every scheduled run to be done")
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
    output = "\n".join(path.read_text() for path in logs)
    rows = _scheduled_rows(app)
    assert len(rows) == len(RUNS) and {row.job for row in rows} == SCHEDULED_JOBS
    assert all(row.attempts == 1 and row.last_error is None for row in rows), output
    assert reward_status(app, reward_id) == "expired"
    assert postings(app, "refund") == 1
    assert available(client, me.headers) == 100
    ledger_sound(app)
