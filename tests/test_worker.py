"""Jobs through Redis and a real RQ worker process, and the outbox when Redis is down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.extensions import db
from rewards.handover import handover
from rewards.models import OutboxMessage, Reward

from .helpers import bearer, build_scheme, link, member_token, signed_post, tap
from .test_flow import _daytime, run_flow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def worker_env(app: Flask, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=redis_url,
        SECRET_KEY=app.config["SECRET_KEY"],
        IDENTIFIER_KEY=app.config["IDENTIFIER_KEY"],
        RQ_QUEUE_PREFIX=app.config["RQ_QUEUE_PREFIX"],
        LOG_LEVEL="WARNING",
        JOB_RETRY_INTERVALS=",".join(str(n) for n in app.config["JOB_RETRY_INTERVALS"]),
        JOB_MAX_ATTEMPTS=str(app.config["JOB_MAX_ATTEMPTS"]),
        JOB_TIMEOUT_SECONDS=str(app.config["JOB_TIMEOUT_SECONDS"]),
        PARTNER_TIMEOUT_SECONDS=str(app.config["PARTNER_TIMEOUT_SECONDS"]),
        # The worker process follows the test's app (on for fake partners on 127.0.0.1).
        WEBHOOK_ALLOW_PRIVATE_NETWORKS=(
            "1" if app.config.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS") else "0"),
    )
    return env


def handed_over() -> None:
    """Wait until the jobs requests wrote are in Redis (handed over after the response)."""
    assert handover.wait(timeout=30)


def run_rq_worker(app: Flask, redis_url: str) -> subprocess.CompletedProcess[str]:
    """A plain `rq worker` process in burst mode, with the job class that builds a
    claim's job from its id: it runs what is queued (retries and the outbox need
    `rewards worker`)."""
    handed_over()
    prefix = app.config["RQ_QUEUE_PREFIX"]
    return subprocess.run(
        [str(BIN / "rq"), "worker", "--burst", "--url", redis_url, "--path", str(ROOT),
         "--job-class", "workers.rqjob.OutboxJob",
         f"{prefix}rewards", f"{prefix}default"],
        env=worker_env(app, redis_url), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def run_rewards_worker(app: Flask, redis_url: str,
                       *extra: str) -> subprocess.CompletedProcess[str]:
    """`rewards worker --burst`: sends what the outbox holds due, runs the queues,
    again while retries fall due at once."""
    handed_over()
    return subprocess.run(
        [str(BIN / "rewards"), "worker", "--burst", *extra],
        env=worker_env(app, redis_url), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_flow_with_a_real_rq_worker(client: FlaskClient, app: Flask, rq_mode: str) -> None:
    def issued_by_worker(reward_id, headers):
        pending = client.get(f"/v1/me/rewards/{reward_id}", headers=headers).json
        assert pending["status"] == "pending"  # nothing issues it until a worker runs
        done = run_rq_worker(app, rq_mode)
        assert done.returncode == 0, done.stderr
        return client.get(f"/v1/me/rewards/{reward_id}", headers=headers).json

    run_flow(client, app, issued_by_worker)


def _member_with_points(client: FlaskClient, app: Flask, mail_points: bool = False):
    """A member with one tap's points; `mail_points`: they asked for points notices by
    mail (off unless chosen), so the batch leaves a mail job behind it."""
    scheme = build_scheme(client, app, cost_points=10)
    me = bearer(member_token(client, app, "kai@example.org"))
    link(client, app, me, "1111222233334444")
    if mail_points:
        assert client.patch("/v1/me/notification-preferences", headers=me,
                            json={"points_earned": {"email": True}}).status_code == 200
    result = signed_post(client, scheme.source,
                         {"items": [tap("t1", "1111222233334444", _daytime(1))]})
    assert result.json["results"][0]["status"] == "accepted"
    return scheme, me


def test_claim_is_kept_in_the_outbox_while_redis_is_down(
    client: FlaskClient, app: Flask, rq_mode: str
) -> None:
    scheme, me = _member_with_points(client, app)
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    claim = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]}, headers=me)
    assert claim.status_code == 202
    handed_over()
    # Named, but the host stays in rotation: claims are still taken.
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "degraded"
    assert ready.json["checks"] == {"database": "ok", "redis": "unavailable"}
    with app.app_context():
        message = db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.job == "workers.rewards.issue_reward")).one()
        assert message.job == "workers.rewards.issue_reward"
        assert message.dispatched_at is None and message.due_at is not None
    assert client.get(f"/v1/me/rewards/{claim.json['id']}", headers=me).json["status"] == "pending"

    # Redis is back: `rewards worker` sends what the outbox holds, then runs it.
    app.config["REDIS_URL"] = rq_mode
    done = run_rewards_worker(app, rq_mode)
    assert done.returncode == 0, done.stderr
    reward = client.get(f"/v1/me/rewards/{claim.json['id']}", headers=me).json
    assert reward["status"] == "issued"
    assert reward["code"]
    with app.app_context():
        message = db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.job == "workers.rewards.issue_reward")).one()
        assert message.dispatched_at is not None
        assert (message.due_at, message.attempts) == (None, 1)
        assert message.done_at is not None
        assert db.session.scalars(select(Reward)).one().code == reward["code"]


def test_a_job_enqueued_twice_issues_one_voucher(
    client: FlaskClient, app: Flask, rq_mode: str
) -> None:
    """The relay and the API can both send one outbox row; the worker issues once."""
    from redis import Redis
    from rq import Queue

    scheme, me = _member_with_points(client, app)
    claim = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]}, headers=me)
    assert claim.status_code == 202
    queue = Queue(f"{app.config['RQ_QUEUE_PREFIX']}rewards", connection=Redis.from_url(rq_mode))
    handed_over()
    queue.enqueue("workers.rewards.issue_reward", kwargs={"reward_id": claim.json["id"]})
    assert queue.count == 2
    done = run_rq_worker(app, rq_mode)
    assert done.returncode == 0, done.stderr
    reward = client.get(f"/v1/me/rewards/{claim.json['id']}", headers=me).json
    assert reward["status"] == "issued"
    with app.app_context():
        from rewards.models import Posting

        captures = db.session.scalars(select(Posting).where(Posting.kind == "capture")).all()
        assert len(captures) == 1
    assert client.get("/v1/me/balance", headers=me).json["available"] == 0
