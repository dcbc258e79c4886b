"""Offers a partner's own system fulfils: the issuing job calls the partner's endpoint
(a real HTTP server on 127.0.0.1 here) with a signed request and an Idempotency-Key,
retries what may pass, gives up with the points back, and issues one voucher however
often it runs. Jobs run in-process here; tests/test_worker_retry.py runs them on RQ."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

import rewards.jobs
import workers.rewards
from rewards.extensions import db
from rewards.models import Offer, OutboxMessage, Partner, Reward

from .reward_support import (
    PartnerSystem,
    admin_headers,
    available,
    ledger_sound,
    make_offer,
    make_partner,
    partner_system,
    postings,
    resident,
)

# Their fake partner systems listen on 127.0.0.1 over http.
pytestmark = pytest.mark.usefixtures("allow_private_webhooks")


def _webhook_offer(client: FlaskClient, app: Flask, system: PartnerSystem,
                   partner: dict[str, Any], admin: dict[str, str],
                   stock: int | None = 5) -> dict[str, Any]:
    changed = client.patch(f"/v1/admin/partners/{partner['id']}",
                           json={"fulfilment_url": system.url}, headers=admin)
    assert changed.status_code == 200, changed.json
    return make_offer(client, admin, partner["id"], title="Free swim", cost_points=30,
                      stock=stock, value_pence=450, fulfilment="webhook")


@pytest.fixture
def leisure(client: FlaskClient, app: Flask) -> tuple[dict[str, str], dict[str, Any]]:
    admin = admin_headers(client, app)
    return admin, make_partner(client, admin, "Active Leeds")


def _claim(client: FlaskClient, headers: dict[str, str], offer_id: str) -> dict[str, Any]:
    response = client.post("/v1/me/rewards", json={"offer_id": offer_id}, headers=headers)
    assert response.status_code == 202, response.json
    return response.json


def _reward(app: Flask, reward_id: str) -> Reward:
    with app.app_context():
        reward = db.session.get(Reward, uuid.UUID(reward_id))
        assert reward is not None
        db.session.expunge(reward)
        return reward


def _claimed(app: Flask, offer_id: str) -> int:
    with app.app_context():
        offer = db.session.get(Offer, uuid.UUID(offer_id))
        assert offer is not None
        return offer.claimed


def _mails(app: Flask, subject: str) -> list[Any]:
    return [m for m in app.extensions.get("sent_mail", []) if m["Subject"].startswith(subject)]


def test_the_partner_issues_the_pass(client: FlaskClient, app: Flask, leisure) -> None:
    admin, partner = leisure
    with partner_system(partner["webhook_secret"]) as system:
        offer = _webhook_offer(client, app, system, partner, admin)
        me = resident(client, app, points=100)
        claimed = _claim(client, me.headers, offer["id"])
        shown = client.get(f"/v1/me/rewards/{claimed['id']}", headers=me.headers).json

    assert (shown["status"], shown["code"], shown["fulfilment"]) == ("issued", "SWIM-0001",
                                                                     "webhook")
    assert shown["partner_reference"] == f"booking {claimed['id'][:8]}"
    assert shown["qr_svg_url"]
    assert client.get(shown["qr_svg_url"], headers=me.headers).mimetype == "image/svg+xml"
    assert len(system.calls) == 1
    call = system.calls[0]
    assert call.headers["Idempotency-Key"] == claimed["id"]
    assert call.headers["Content-Type"] == "application/json"
    assert system.signature_ok(call)
    body = call.json
    assert body["reward_id"] == claimed["id"]
    assert body["offer"] == {"id": offer["id"], "title": "Free swim"}
    assert len(body["member_ref"]) == 32 and me.id not in call.body.decode()
    assert me.email not in call.body.decode()
    assert body["valid_until"].endswith("Z")
    reward = _reward(app, claimed["id"])
    assert reward.code is None and reward.partner_code == "SWIM-0001"
    assert (postings(app, "hold"), postings(app, "capture"), postings(app, "release")) == (1, 1, 0)
    assert available(client, me.headers) == 70
    mails = _mails(app, "Your voucher is ready")
    assert len(mails) == 1 and "SWIM-0001" in mails[0].get_content()
    # Our tills do not know partner passes: the partner's system redeems them.
    assert client.get("/v1/partner/vouchers/SWIM-0001",
                      headers={"X-Api-Key": partner["api_key"]}).status_code == 404

    # Run again (a retry after a crash): nothing is asked of the partner, nothing moves.
    with app.app_context():
        assert workers.rewards.issue_reward(claimed["id"]) == "issued"
    assert len(system.calls) == 1
    assert postings(app, "capture") == 1
    ledger_sound(app)


def test_a_500_then_success_on_retry(client: FlaskClient, app: Flask, leisure) -> None:
    admin, partner = leisure
    with partner_system(partner["webhook_secret"], script=[500, 503]) as system:
        offer = _webhook_offer(client, app, system, partner, admin)
        me = resident(client, app, points=100)
        claimed = _claim(client, me.headers, offer["id"])

    assert len(system.calls) == 3
    assert {call.headers["Idempotency-Key"] for call in system.calls} == {claimed["id"]}
    assert all(system.signature_ok(call) for call in system.calls)
    assert _reward(app, claimed["id"]).status == "issued"
    with app.app_context():
        message = db.session.scalars(select(OutboxMessage)).one()
        # Done after two failed attempts: their error is not kept (only a job that gave
        # up keeps it).
        assert (message.attempts, message.due_at, message.last_error) == (3, None, None)
    assert postings(app, "capture") == 1 and postings(app, "release") == 0
    assert available(client, me.headers) == 70
    ledger_sound(app)


def test_a_name_that_does_not_resolve_for_a_moment_is_tried_again(
    client: FlaskClient, app: Flask, leisure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver that failed (EAI_AGAIN) says nothing about the partner's address: the
    attempt is retried like a refused connection, not failed as a forbidden address."""
    import socket

    from rewards import outbound

    admin, partner = leisure
    real, failures = outbound.resolve, {"left": 2}

    def flaky(host: str, port: int) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, port)

    with partner_system(partner["webhook_secret"]) as system:
        offer = _webhook_offer(client, app, system, partner, admin)
        me = resident(client, app, points=100)
        monkeypatch.setattr(outbound, "resolve", flaky)
        claimed = _claim(client, me.headers, offer["id"])
        assert len(system.calls) == 1
    assert _reward(app, claimed["id"]).status == "issued"
    assert available(client, me.headers) == 70
    with app.app_context():
        assert db.session.scalars(select(OutboxMessage)).one().attempts == 3
    ledger_sound(app)


def test_a_partner_that_never_answers_in_time(client: FlaskClient, app: Flask, leisure,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    admin, partner = leisure
    monkeypatch.setitem(app.config, "PARTNER_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setitem(app.config, "JOB_MAX_ATTEMPTS", 2)
    with partner_system(partner["webhook_secret"], script=["slow", "slow"]) as system:
        offer = _webhook_offer(client, app, system, partner, admin, stock=1)
        me = resident(client, app, points=100)
        claimed = _claim(client, me.headers, offer["id"])
        assert len(system.calls) == 2

    reward = _reward(app, claimed["id"])
    assert reward.status == "failed"
    assert "timed out" in reward.failure_reason
    shown = client.get(f"/v1/me/rewards/{claimed['id']}", headers=me.headers).json
    assert (shown["status"], shown["code"]) == ("failed", None)
    # Points and the stock come back.
    assert available(client, me.headers) == 100
    assert _claimed(app, offer["id"]) == 0
    assert (postings(app, "hold"), postings(app, "capture"), postings(app, "release")) == (1, 0, 1)
    assert _mails(app, "Your voucher is ready") == []
    ledger_sound(app)


def test_a_refusal_fails_at_once(client: FlaskClient, app: Flask, leisure) -> None:
    admin, partner = leisure
    with partner_system(partner["webhook_secret"], script=[400]) as system:
        offer = _webhook_offer(client, app, system, partner, admin)
        me = resident(client, app, points=100)
        claimed = _claim(client, me.headers, offer["id"])
    assert len(system.calls) == 1  # a 400 is not retried
    reward = _reward(app, claimed["id"])
    assert reward.status == "failed" and "HTTP 400" in reward.failure_reason
    assert available(client, me.headers) == 100

    # An offer whose partner has no endpoint any more fails the same way.
    with partner_system(partner["webhook_secret"]) as system:
        other = _webhook_offer(client, app, system, partner, admin)
    client.patch(f"/v1/admin/partners/{partner['id']}", json={"fulfilment_url": None},
                 headers=admin)
    second = _claim(client, me.headers, other["id"])
    reward = _reward(app, second["id"])
    assert reward.status == "failed" and "no fulfilment endpoint" in reward.failure_reason
    assert available(client, me.headers) == 100
    ledger_sound(app)


def test_two_runs_at_once_issue_one_voucher(client: FlaskClient, app: Flask, leisure,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    admin, partner = leisure
    monkeypatch.setattr(rewards.jobs, "dispatch_pending", rewards.jobs.discard_pending)
    with partner_system(partner["webhook_secret"]) as system:
        offer = _webhook_offer(client, app, system, partner, admin)
        me = resident(client, app, points=100)
        claimed = _claim(client, me.headers, offer["id"])
        assert _reward(app, claimed["id"]).status == "pending"
        answers: list[str] = []
        barrier = threading.Barrier(2)

        def run() -> None:
            with app.app_context():
                barrier.wait(timeout=10)
                answers.append(workers.rewards.issue_reward(claimed["id"]))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        # Then a third, late run.
        with app.app_context():
            answers.append(workers.rewards.issue_reward(claimed["id"]))

    assert answers == ["issued"] * 3
    assert 1 <= len(system.calls) <= 2  # both may ask; the partner answers both alike
    assert len(system.passes) == 1
    assert _reward(app, claimed["id"]).partner_code == "SWIM-0001"
    assert postings(app, "capture") == 1
    assert len(_mails(app, "Your voucher is ready")) == 1
    assert available(client, me.headers) == 70
    ledger_sound(app)


def _rotate_secret(client: FlaskClient, partner: dict[str, Any], admin: dict[str, str],
                   **body: Any) -> dict[str, Any]:
    rotated = client.post(f"/v1/admin/partners/{partner['id']}/webhook-secret",
                          json=body or None, headers=admin)
    assert rotated.status_code == 200, rotated.json
    assert rotated.json["webhook_secret"] != partner["webhook_secret"]
    return rotated.json


def test_after_a_secret_rotation_both_secrets_sign_until_the_overlap_ends(
        client: FlaskClient, app: Flask, leisure) -> None:
    admin, partner = leisure
    me = resident(client, app, points=100)
    # The partner's system still holds the old secret when the scheme rotates it.
    with partner_system(partner["webhook_secret"]) as old_system:
        offer = _webhook_offer(client, app, old_system, partner, admin)
        rotated = _rotate_secret(client, partner, admin)
        until = datetime.fromisoformat(rotated["previous_secret_until"])
        assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(days=1)
        claimed = _claim(client, me.headers, offer["id"])
    assert _reward(app, claimed["id"]).status == "issued"
    header = old_system.calls[0].headers["X-Signature"]
    assert header.count("v1=") == 2
    # ... and one that has taken the new secret meanwhile checks the same header.
    new_system = PartnerSystem(rotated["webhook_secret"])
    assert new_system.signature_ok(old_system.calls[0])

    # The overlap ends: only the new secret signs, and the old system refuses.
    with app.app_context():
        db.session.execute(update(Partner).where(Partner.id == uuid.UUID(partner["id"]))
                           .values(previous_webhook_secret_until=datetime.now(UTC)
                                   - timedelta(seconds=1)))
        db.session.commit()
    with partner_system(partner["webhook_secret"]) as old_system:
        _webhook_offer(client, app, old_system, partner, admin)
        late = _claim(client, me.headers, offer["id"])
    assert old_system.calls[0].headers["X-Signature"].count("v1=") == 1
    assert not old_system.signature_ok(old_system.calls[0])
    assert new_system.signature_ok(old_system.calls[0])
    assert _reward(app, late["id"]).status == "failed"
    ledger_sound(app)


def test_a_rotation_without_overlap_stops_the_old_secret_at_once(
        client: FlaskClient, app: Flask, leisure) -> None:
    admin, partner = leisure
    me = resident(client, app, points=100)
    first = _rotate_secret(client, partner, admin)
    # A second rotation inside the first's overlap, with none of its own (a leaked
    # secret): neither earlier secret signs any more.
    second = _rotate_secret(client, {**partner, "webhook_secret": first["webhook_secret"]},
                            admin, overlap_days=0)
    assert second["previous_secret_until"] is None
    for secret, good in ((partner["webhook_secret"], False), (first["webhook_secret"], False),
                         (second["webhook_secret"], True)):
        with partner_system(secret) as system:
            offer = _webhook_offer(client, app, system, partner, admin)
            claimed = _claim(client, me.headers, offer["id"])
        assert system.calls[0].headers["X-Signature"].count("v1=") == 1
        assert system.signature_ok(system.calls[0]) is good
        assert _reward(app, claimed["id"]).status == ("issued" if good else "failed")
    for bad in ({"overlap_days": -1}, {"overlap_days": 91}, {"overlap_days": "a day"}):
        refused = client.post(f"/v1/admin/partners/{partner['id']}/webhook-secret",
                              json=bad, headers=admin)
        assert refused.status_code == 422 and "overlap_days" in refused.json["errors"]
    ledger_sound(app)
