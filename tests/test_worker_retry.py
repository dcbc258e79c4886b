"""Issuing with retries: in-process (no Redis) a failed job is run again up to
JOB_MAX_ATTEMPTS times before the reward fails; through Redis with real `rewards
worker` processes, retries driven by the outbox, including a worker killed with
SIGKILL in the middle of the partner's webhook call on the job's last attempt,
whose job a second worker finishes once its lease lapses."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from rewards import jobs, vouchers
from rewards.extensions import db
from rewards.models import OutboxMessage, Reward, utcnow
from workers import runner

from .reward_support import (
    Resident,
    admin_headers,
    available,
    ledger_sound,
    make_offer,
    make_partner,
    partner_system,
    postings,
    resident,
)
from .test_worker import BIN, ROOT, handed_over, run_rewards_worker, worker_env

# Their fake partner systems listen on 127.0.0.1 over http.
pytestmark = pytest.mark.usefixtures("allow_private_webhooks")


def _reward(app: Flask, reward_id: str) -> Reward:
    with app.app_context():
        reward = db.session.get(Reward, uuid.UUID(reward_id))
        assert reward is not None
        db.session.expunge(reward)
        return reward


def _message(app: Flask) -> OutboxMessage:
    """The one job message there is."""
    with app.app_context():
        message = db.session.scalars(select(OutboxMessage)).one()
        db.session.expunge(message)
        return message


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
    assert _message(app).attempts == 3
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
    assert _message(app).attempts == app.config["JOB_MAX_ATTEMPTS"]
    assert available(client, me.headers) == 10
    assert (postings(app, "capture"), postings(app, "release")) == (1, 1)
    ledger_sound(app)


@pytest.fixture
def quick_retries(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    # Retries fall due at once instead of after 5, 30 and 120 seconds.
    monkeypatch.setitem(app.config, "JOB_RETRY_INTERVALS", [0])


def _webhook_partner(client: FlaskClient, app: Flask) -> tuple[dict[str, str], dict[str, Any]]:
    """Staff's headers and the partner whose webhook offer the tests claim."""
    admin = admin_headers(client, app)
    return admin, make_partner(client, admin, "Active Leeds")


def _claim_from(client: FlaskClient, app: Flask, admin: dict[str, str],
                partner: dict[str, Any], url: str) -> tuple[Resident, str]:
    """A resident with 100 points claims the partner's 30-point webhook offer, fulfilled
    at `url`: the resident and the reward's id."""
    client.patch(f"/v1/admin/partners/{partner['id']}", json={"fulfilment_url": url},
                 headers=admin)
    offer = make_offer(client, admin, partner["id"], title="Free swim", cost_points=30,
                       stock=2, fulfilment="webhook")
    me = resident(client, app, points=100)
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me.headers)
    assert claimed.status_code == 202, claimed.json
    return me, claimed.json["id"]


def test_rq_retries_a_500_then_issues(client: FlaskClient, app: Flask, rq_mode: str,
                                      quick_retries: None) -> None:
    admin, partner = _webhook_partner(client, app)
    with partner_system(partner["webhook_secret"], script=[500]) as system:
        me, reward_id = _claim_from(client, app, admin, partner, system.url)
        assert _reward(app, reward_id).status == "pending"
        done = run_rewards_worker(app, rq_mode)
        assert done.returncode == 0, done.stderr
    assert len(system.calls) == 2
    assert {call.headers["Idempotency-Key"] for call in system.calls} == {reward_id}
    reward = _reward(app, reward_id)
    assert (reward.status, reward.partner_code) == ("issued", "SWIM-0001")
    assert (postings(app, "capture"), postings(app, "release")) == (1, 0)
    assert available(client, me.headers) == 70
    # Done: the failed attempt's error is not kept (a kept one means it gave up).
    message = _message(app)
    assert (message.attempts, message.due_at, message.last_error) == (2, None, None)
    ledger_sound(app)


def test_rq_gives_up_after_the_last_retry(client: FlaskClient, app: Flask, rq_mode: str,
                                          quick_retries: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "JOB_MAX_ATTEMPTS", 3)
    admin, partner = _webhook_partner(client, app)
    with partner_system(partner["webhook_secret"], script=[502, 500, 503]) as system:
        me, reward_id = _claim_from(client, app, admin, partner, system.url)
        done = run_rewards_worker(app, rq_mode)
        assert done.returncode == 0, done.stderr
    assert len(system.calls) == 3
    reward = _reward(app, reward_id)
    assert reward.status == "failed" and "HTTP 503" in reward.failure_reason
    assert available(client, me.headers) == 100
    assert (postings(app, "capture"), postings(app, "release")) == (0, 1)
    message = _message(app)
    assert (message.attempts, message.due_at) == (3, None)
    assert "503" in message.last_error
    ledger_sound(app)


def test_a_worker_killed_on_the_last_attempt_is_finished_by_another(
    client: FlaskClient, app: Flask, rq_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One attempt only: the killed attempt is the last, and the job still runs again.
    # A 3-second time limit makes the killed attempt's lease lapse after 8 seconds.
    monkeypatch.setitem(app.config, "JOB_MAX_ATTEMPTS", 1)
    monkeypatch.setitem(app.config, "JOB_TIMEOUT_SECONDS", 3)
    admin, partner = _webhook_partner(client, app)
    env = worker_env(app, rq_mode)
    with partner_system(partner["webhook_secret"], script=["hang"]) as system:
        me, reward_id = _claim_from(client, app, admin, partner, system.url)
        handed_over()

        # A worker takes the job and blocks in the partner's call; then it dies hard.
        first = subprocess.Popen([str(BIN / "rewards"), "worker"], env=env, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            assert system.received.wait(timeout=60), "the worker never called the partner"
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        killed_at = time.monotonic()
        assert _reward(app, reward_id).status == "pending"
        assert postings(app, "capture") == 0
        message = _message(app)
        # The bound (docs/jobs.md): the killed attempt's lease, taken when it began,
        # lapses within its time limit and the lease's grace (3 + 5 s here); any
        # surviving worker's relay, every RELAY_EVERY seconds, then sends it again.
        # RQ's own clean-up of abandoned jobs would take ten minutes.
        assert message.attempts == 1 and message.due_at is not None
        assert message.due_at <= utcnow() + timedelta(seconds=3) + jobs.LEASE_GRACE
        assert runner.RELAY_EVERY <= 5

        # A second worker sends it again once the lease has lapsed, and finishes it.
        second = subprocess.Popen([str(BIN / "rewards"), "worker"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        try:
            # A give-up guard only (a machine under load may be slow): the bound is
            # the lease checked above.
            while _reward(app, reward_id).status == "pending" \
                    and time.monotonic() - killed_at < 180:
                time.sleep(0.2)
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            _, errors = second.communicate(timeout=30)
    assert second.returncode == 0, errors

    assert len(system.calls) == 2
    assert [call.headers["Idempotency-Key"] for call in system.calls] == [reward_id] * 2
    assert len(system.passes) == 1
    reward = _reward(app, reward_id)
    assert (reward.status, reward.partner_code) == ("issued", "SWIM-0001")
    assert (postings(app, "hold"), postings(app, "capture"), postings(app, "release")) == (1, 1, 0)
    assert available(client, me.headers) == 70
    message = _message(app)
    assert (message.attempts, message.due_at) == (2, None)
    ledger_sound(app)


@pytest.mark.parametrize("mode", [[], ["--fork"]], ids=["own-process", "forking"])
def test_sigterm_lets_the_job_in_hand_finish_first(
    client: FlaskClient, app: Flask, rq_mode: str, mode: list[str]
) -> None:
    """What `docker compose stop` or a deploy does to a worker mid-job: it finishes the
    job it holds (one partner call, one voucher), then exits cleanly."""
    admin, partner = _webhook_partner(client, app)
    with partner_system(partner["webhook_secret"], script=["slow"],
                        slow_seconds=120) as system:
        _, reward_id = _claim_from(client, app, admin, partner, system.url)
        handed_over()
        worker = subprocess.Popen([str(BIN / "rewards"), "worker", *mode],
                                  env=worker_env(app, rq_mode), cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        try:
            assert system.received.wait(timeout=60), "the worker never called the partner"
            os.kill(worker.pid, signal.SIGTERM)  # the worker's own process, as Docker does
            time.sleep(1)
            assert worker.poll() is None, "the worker left its job unfinished"
            assert _reward(app, reward_id).status == "pending"
            system.release.set()  # the partner answers now
            _, errors = worker.communicate(timeout=120)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)
    assert worker.returncode == 0, errors[-3000:]
    assert len(system.calls) == 1
    reward = _reward(app, reward_id)
    assert (reward.status, reward.partner_code) == ("issued", "SWIM-0001")
    message = _message(app)
    assert (message.attempts, message.due_at, message.last_error) == (1, None, None)
    ledger_sound(app)
