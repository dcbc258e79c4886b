"""Issuing with retries: in-process (no Redis) a failed job is run again up to
JOB_MAX_ATTEMPTS times before the reward fails; on RQ with a real `rq worker`
process, including a worker killed with SIGKILL in the middle of the partner's
webhook call, whose abandoned job RQ cleans up and a new worker finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from rewards import vouchers
from rewards.extensions import db
from rewards.models import OutboxMessage, Reward

from .reward_support import (
    admin_headers,
    available,
    ledger_sound,
    make_offer,
    make_partner,
    partner_system,
    postings,
    resident,
)
from .test_worker import BIN, ROOT, run_rq_worker, worker_env

# Their fake partner systems listen on 127.0.0.1 over http.
pytestmark = pytest.mark.usefixtures("allow_private_webhooks")


def _reward(app: Flask, reward_id: str) -> Reward:
    with app.app_context():
        reward = db.session.get(Reward, uuid.UUID(reward_id))
        assert reward is not None
        db.session.expunge(reward)
        return reward


def _attempts(app: Flask) -> int:
    with app.app_context():
        return db.session.scalars(select(OutboxMessage)).one().attempts


def test_in_process_failures_are_retried(client: FlaskClient, app: Flask,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10, stock=3)
    me = resident(client, app, points=20)
    real_issue = vouchers.issue
    failures = iter([RuntimeError("database hiccup"), RuntimeError("again")])

    def flaky(session: Any, reward_id: uuid.UUID, **kwargs: Any) -> Reward | None:
        error = next(failures, None)
        if error is not None:
            raise error
        return real_issue(session, reward_id, **kwargs)

    monkeypatch.setattr(vouchers, "issue", flaky)
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me.headers)
    assert claimed.status_code == 202
    assert _reward(app, claimed.json["id"]).status == "issued"
    assert _attempts(app) == 3
    assert available(client, me.headers) == 10

    # Failing every time: after JOB_MAX_ATTEMPTS the reward fails and the points return.
    def broken(session: Any, reward_id: uuid.UUID, **kwargs: Any) -> Reward | None:
        raise RuntimeError("voucher printer on fire")

    monkeypatch.setattr(vouchers, "issue", broken)
    with app.app_context():
        db.session.execute(delete(OutboxMessage))
        db.session.commit()
    second = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me.headers)
    assert second.status_code == 202
    reward = _reward(app, second.json["id"])
    assert reward.status == "failed" and "printer on fire" in reward.failure_reason
    assert _attempts(app) == app.config["JOB_MAX_ATTEMPTS"]
    assert available(client, me.headers) == 10
    assert (postings(app, "capture"), postings(app, "release")) == (1, 1)
    ledger_sound(app)


@pytest.fixture
def quick_retries(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    # RQ retries at once instead of after 5, 30 and 120 seconds.
    monkeypatch.setitem(app.config, "JOB_RETRY_INTERVALS", [0])


def _webhook_offer(client: FlaskClient, app: Flask, partner: dict[str, Any],
                   admin: dict[str, str], url: str) -> dict[str, Any]:
    client.patch(f"/v1/admin/partners/{partner['id']}", json={"fulfilment_url": url},
                 headers=admin)
    return make_offer(client, admin, partner["id"], title="Free swim", cost_points=30, stock=2,
                      fulfilment="webhook")


def test_rq_retries_a_500_then_issues(client: FlaskClient, app: Flask, rq_mode: str,
                                      quick_retries: None) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds")
    with partner_system(partner["webhook_secret"], script=[500]) as system:
        offer = _webhook_offer(client, app, partner, admin, system.url)
        me = resident(client, app, points=100)
        claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                              headers=me.headers)
        assert claimed.status_code == 202
        assert _reward(app, claimed.json["id"]).status == "pending"
        done = run_rq_worker(app, rq_mode)
        assert done.returncode == 0, done.stderr
    assert len(system.calls) == 2
    assert {call.headers["Idempotency-Key"] for call in system.calls} == {claimed.json["id"]}
    reward = _reward(app, claimed.json["id"])
    assert (reward.status, reward.partner_code) == ("issued", "SWIM-0001")
    assert (postings(app, "capture"), postings(app, "release")) == (1, 0)
    assert available(client, me.headers) == 70
    ledger_sound(app)


def test_rq_gives_up_after_the_last_retry(client: FlaskClient, app: Flask, rq_mode: str,
                                          quick_retries: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "JOB_MAX_ATTEMPTS", 3)
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds")
    with partner_system(partner["webhook_secret"], script=[502, 500, 503]) as system:
        offer = _webhook_offer(client, app, partner, admin, system.url)
        me = resident(client, app, points=100)
        claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                              headers=me.headers)
        done = run_rq_worker(app, rq_mode)
        assert done.returncode == 0, done.stderr
    assert len(system.calls) == 3
    reward = _reward(app, claimed.json["id"])
    assert reward.status == "failed" and "HTTP 503" in reward.failure_reason
    assert available(client, me.headers) == 100
    assert (postings(app, "capture"), postings(app, "release")) == (0, 1)
    ledger_sound(app)


def test_a_worker_killed_mid_call_is_finished_by_another(
    client: FlaskClient, app: Flask, rq_mode: str, quick_retries: None
) -> None:
    from redis import Redis
    from rq.registry import StartedJobRegistry

    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds")
    queue = f"{app.config['RQ_QUEUE_PREFIX']}rewards"
    with partner_system(partner["webhook_secret"], script=["hang"]) as system:
        offer = _webhook_offer(client, app, partner, admin, system.url)
        me = resident(client, app, points=100)
        claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                              headers=me.headers)
        reward_id = claimed.json["id"]

        # A worker takes the job and blocks in the partner's call; then it dies hard
        # (its own process and the work horse it forked).
        worker = subprocess.Popen(
            [str(BIN / "rq"), "worker", "--burst", "--url", rq_mode, "--path", str(ROOT), queue],
            env=worker_env(app, rq_mode), cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert system.received.wait(timeout=60), "the worker never called the partner"
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        assert _reward(app, reward_id).status == "pending"
        assert postings(app, "capture") == 0

        # The job is left in the started registry. Once its heartbeat has lapsed, RQ's
        # cleanup treats it as abandoned and, with retries left, queues it again.
        connection = Redis.from_url(rq_mode)
        registry = StartedJobRegistry(queue, connection=connection)
        assert registry.get_job_ids(cleanup=False)
        registry.cleanup(timestamp=time.time() + 3600)
        assert registry.get_job_ids(cleanup=False) == []

        done = run_rq_worker(app, rq_mode)
        assert done.returncode == 0, done.stderr

    assert len(system.calls) == 2
    assert [call.headers["Idempotency-Key"] for call in system.calls] == [reward_id] * 2
    assert len(system.passes) == 1
    reward = _reward(app, reward_id)
    assert (reward.status, reward.partner_code) == ("issued", "SWIM-0001")
    assert (postings(app, "hold"), postings(app, "capture"), postings(app, "release")) == (1, 1, 0)
    assert available(client, me.headers) == 70
    ledger_sound(app)
