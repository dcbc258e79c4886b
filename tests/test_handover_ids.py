"""A claim's job goes to Redis as its id alone, and the worker builds the RQ job from
the outbox row: with real Redis and real worker processes, the voucher is issued (by
the worker in its own process and by the forking one), an id whose row is done is
skipped, an id Redis lost is sent again whole by the relay, and a queue listed with
the workers' job class keeps its ids."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.job import Job
from sqlalchemy import update

from rewards import jobs, relay
from rewards.extensions import db
from rewards.models import OutboxMessage, utcnow
from workers.rqjob import OutboxJob

from .reward_support import ledger_sound
from .test_job_faults import _claims, _issued, _outbox
from .test_worker import handed_over, run_rewards_worker, run_rq_worker


def _queued_ids(app: Flask, connection: Redis) -> list[str]:
    with app.app_context():
        return [job_id.decode() for job_id in
                connection.lrange(jobs.queue_key("rewards"), 0, -1)]


@pytest.mark.parametrize("mode", [[], ["--fork"]], ids=["own-process", "forking"])
def test_a_claims_id_alone_gets_its_voucher_issued(client: FlaskClient, app: Flask,
                                                   rq_mode: str, mode: list[str]) -> None:
    ids = _claims(client, app, 3)
    handed_over()
    connection = Redis.from_url(rq_mode)
    rows = {str(row.id): row for row in _outbox(app)}
    assert sorted(_queued_ids(app, connection)) == sorted(rows)
    assert not any(Job.exists(job_id, connection=connection) for job_id in rows)

    done = run_rewards_worker(app, rq_mode, *mode)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert _issued(app, ids) == {"issued": 3, "captures": 3, "other": 0}
    after = {str(row.id): row for row in _outbox(app)}
    # Each ran once, from its id: the worker's relay at its start found the ids queued
    # and sent nothing again (the rows keep the hand-over's moment).
    assert {(row.attempts, row.due_at, row.last_error) for row in after.values()} == {
        (1, None, None)}
    assert all(after[job_id].dispatched_at == rows[job_id].dispatched_at for job_id in rows)
    assert _queued_ids(app, connection) == []
    with app.app_context():
        queue = jobs.queue_name("rewards")
    built = Job.fetch(next(iter(rows)), connection=connection)
    assert (built.func_name, built.origin, built.get_status()) == (
        "workers.rewards.issue_reward", queue, "finished")
    assert built.kwargs == {"reward_id": rows[built.id].kwargs["reward_id"]}
    assert (built.timeout, built.result_ttl, built.failure_ttl) == (
        app.config["JOB_TIMEOUT_SECONDS"], jobs.RESULT_TTL, jobs.FAILURE_TTL)
    assert built.meta == {"request_id": rows[built.id].request_id}
    ledger_sound(app)


def test_an_id_whose_row_is_done_is_skipped(client: FlaskClient, app: Flask,
                                            rq_mode: str) -> None:
    [reward_id] = _claims(client, app, 1)
    assert run_rq_worker(app, rq_mode).returncode == 0
    [row] = _outbox(app)
    assert (row.attempts, row.due_at) == (1, None)
    job_id = str(row.id)
    connection = Redis.from_url(rq_mode)
    # The id comes again after its job is gone from Redis (a copy pushed twice, a
    # result expired): nothing is built, nothing runs. So for ids not in the outbox.
    connection.delete(Job.key_for(job_id))
    with app.app_context():
        connection.rpush(jobs.queue_key("rewards"), job_id, str(uuid.uuid4()), "not-a-uuid")

    done = run_rq_worker(app, rq_mode)
    assert done.returncode == 0, done.stderr
    assert _queued_ids(app, connection) == []
    assert not Job.exists(job_id, connection=connection)
    [again] = _outbox(app)
    assert (again.attempts, again.due_at, again.done_at) == (1, None, row.done_at)
    assert _issued(app, [reward_id]) == {"issued": 1, "captures": 1, "other": 0}


def test_the_relay_sends_an_id_redis_lost_again_whole(client: FlaskClient, app: Flask,
                                                      rq_mode: str) -> None:
    [reward_id] = _claims(client, app, 1)
    handed_over()
    connection = Redis.from_url(rq_mode)
    [row] = _outbox(app)
    job_id = str(row.id)
    assert _queued_ids(app, connection) == [job_id]

    # Its lease lapsed while the id waits in the list: a backlog, the relay renews it.
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(due_at=utcnow()))
        db.session.commit()
        assert relay.relay() == 0
    [waiting] = _outbox(app)
    assert waiting.due_at is not None and waiting.due_at > utcnow()

    # Redis loses the id: once due, the relay sends the whole job.
    with app.app_context():
        connection.lrem(jobs.queue_key("rewards"), 0, job_id)
        db.session.execute(update(OutboxMessage).values(due_at=utcnow()))
        db.session.commit()
        assert relay.relay() == 1
    assert _queued_ids(app, connection) == [job_id]
    sent = Job.fetch(job_id, connection=connection)
    assert (sent.func_name, sent.get_status()) == ("workers.rewards.issue_reward", "queued")
    assert sent.meta == {"request_id": row.request_id}

    done = run_rq_worker(app, rq_mode)
    assert done.returncode == 0, done.stderr
    assert _issued(app, [reward_id]) == {"issued": 1, "captures": 1, "other": 0}
    [after] = _outbox(app)
    assert (after.attempts, after.due_at) == (1, None)
    ledger_sound(app)


def test_a_queue_listed_with_the_workers_job_class_keeps_its_ids(
        client: FlaskClient, app: Flask, rq_mode: str) -> None:
    """RQ's Queue.get_jobs drops ids it finds no job for; with OutboxJob it finds (and
    builds) a claim's, so listing a queue leaves it as it was."""
    _claims(client, app, 2)
    handed_over()
    connection = Redis.from_url(rq_mode)
    with app.app_context():
        queue = Queue(jobs.queue_name("rewards"), connection=connection, job_class=OutboxJob)
        listed = queue.get_jobs()
    rows = {str(row.id): row for row in _outbox(app)}
    assert sorted(job.id for job in listed) == sorted(rows)
    assert sorted(_queued_ids(app, connection)) == sorted(rows)
    assert {job.get_status() for job in listed} == {"queued"}
    assert all(Job.fetch(job_id, connection=connection).kwargs == dict(row.kwargs)
               for job_id, row in rows.items())
