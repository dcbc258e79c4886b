"""The hand-over thread sends what requests queued while it was busy in one go: one
statement marks every row handed over, one Redis transaction queues every job, each
with its own request's metadata; if Redis refuses, none counts as handed over."""

from __future__ import annotations

import uuid

from flask import Flask
from redis import Redis
from rq.job import Job

from rewards import jobs
from rewards.extensions import db
from rewards.models import OutboxMessage

from .test_request_costs import counted


def _rows(app: Flask, count: int) -> list[uuid.UUID]:
    with app.app_context():
        made = [jobs.enqueue("workers.rewards.issue_reward", queue="rewards",
                             reward_id=str(uuid.uuid4())).id for _ in range(count)]
        db.session.commit()
        jobs.discard_pending()
        return made


def test_batches_go_over_in_one_statement_and_one_redis_transaction(
        app: Flask, rq_mode: str) -> None:
    first, second, third = _rows(app, 3)
    connection = Redis.from_url(rq_mode)
    with app.app_context():
        with counted() as sent:
            handed = jobs.push_batches([([first], {"request_id": "one"}),
                                        ([second, third], {"request_id": "two"})], connection)
        assert handed == 3
        assert len(sent) == 1, sent.sent
        # Handed over once only: a second try finds nothing left to take.
        assert jobs.push_batches([([first, second], None)], connection) == 0
        rows = {row.id: row for row in db.session.query(OutboxMessage)
                .filter(OutboxMessage.id.in_([first, second, third]))}
        assert all(row.dispatched_at is not None and row.attempts == 0
                   for row in rows.values())
        db.session.remove()
    metas = {message_id: Job.fetch(str(message_id), connection=connection).meta
             for message_id in (first, second, third)}
    assert metas == {first: {"request_id": "one"}, second: {"request_id": "two"},
                     third: {"request_id": "two"}}
    job = Job.fetch(str(second), connection=connection)
    assert job.func_name == "workers.rewards.issue_reward"
    assert job.kwargs == {"reward_id": rows[second].kwargs["reward_id"]}
    assert job.get_status() == "queued"


def test_a_refusing_redis_leaves_every_job_of_the_batches_due_at_once(
        app: Flask, rq_mode: str) -> None:
    made = _rows(app, 2)
    nowhere = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    with app.app_context():
        assert jobs.push_batches([([made[0]], None), ([made[1]], None)], nowhere) == 0
        rows = db.session.query(OutboxMessage).filter(OutboxMessage.id.in_(made)).all()
        assert len(rows) == 2
        now = jobs.utcnow()
        assert all(row.dispatched_at is None and row.due_at is not None and row.due_at <= now
                   for row in rows)
        db.session.remove()
