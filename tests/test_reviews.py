"""Self-reported actions with evidence, and the review queue, through HTTP: residents
report, reviewers approve (points through the rules) or reject with a reason (anything
earned is reversed), and the resident sees the outcome."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select

from rewards.extensions import db
from rewards.models import Action, AuditEntry
from rewards.models.review import Review, SelfReport, SelfReportPhoto

from .helpers import at_once, bearer, build_scheme, iso, signed_post, staff_token, tap
from .ways_in import add_type_and_rule, assert_error, balance, counts, daytime, resident


def _image(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (20, 120, 40)).save(out, format=kind)
    return out.getvalue()


JPEG = _image("JPEG")
PNG = _image("PNG")
GIF = b"GIF89a" + b"\x00" * 200


@pytest.fixture
def staff(client: FlaskClient, app: Flask) -> dict[str, dict[str, str]]:
    admin = bearer(staff_token(client, app, "admin"))
    add_type_and_rule(client, admin, "litter_pick", "climate", "15", caps={"per_day": 1})
    return {"admin": admin, "reviewer": bearer(staff_token(client, app, "reviewer"))}


def _report(client: FlaskClient, me: dict[str, str], photo: bytes | None = None,
            filename: str = "bag.jpg", **fields: Any) -> Any:
    data: dict[str, Any] = {"type": "litter_pick", "occurred_at": iso(daytime(1, 10)),
                            "description": "Two bags of litter from Woodhouse Moor", **fields}
    if photo is not None:
        data["photo"] = (io.BytesIO(photo), filename)
    return client.post("/v1/me/self-reports", data=data, content_type="multipart/form-data",
                       headers=me)


def test_a_self_report_waits_for_review_and_approval_awards_it(
    client: FlaskClient, app: Flask, staff: dict[str, dict[str, str]]
) -> None:
    me, member_id = resident(client, app, "amira@example.org")
    sent = _report(client, me, JPEG)
    assert sent.status_code == 202, sent.json
    report = sent.json
    assert (report["status"], report["points"], report["has_photo"]) == ("pending", 0, True)
    assert report["reason"] is None and report["decided_at"] is None
    assert balance(client, me) == 0
    assert [r["id"] for r in client.get("/v1/me/self-reports", headers=me).json] == [report["id"]]

    queue = client.get("/v1/admin/reviews", headers=staff["reviewer"])
    assert queue.status_code == 200 and "X-Pagination" in queue.headers
    [item] = queue.json
    assert item["id"] == report["action_id"] and item["kind"] == "self_report"
    assert item["status"] == "pending" and item["member_id"] == member_id
    assert item["origin"] == "self_report" and item["reason"].startswith("self-reported")
    assert item["self_report"]["description"] == "Two bags of litter from Woodhouse Moor"
    photo = client.get(item["self_report"]["photo_url"], headers=staff["reviewer"])
    assert photo.status_code == 200 and photo.data[:3] == JPEG[:3]
    assert Image.open(io.BytesIO(photo.data)).size == (8, 6)  # re-encoded, same picture
    assert photo.mimetype == "image/jpeg" and photo.headers["X-Content-Type-Options"] == "nosniff"

    # Points notices are mailed only to members who ask for them.
    assert client.patch("/v1/me/notification-preferences", headers=me,
                        json={"points_earned": {"email": True}}).status_code == 200
    mails = app.extensions.setdefault("sent_mail", [])
    before = len(mails)
    approved = client.post(f"/v1/admin/reviews/{item['id']}/approve", json={"note": "Thanks!"},
                           headers=staff["reviewer"])
    assert approved.status_code == 200, approved.json
    assert approved.json["status"] == "approved" and approved.json["points"] == 15
    # The member hears of the points the approval gave them, once.
    assert [m["Subject"] for m in mails[before:]] == ["You earned 15 points"]
    assert approved.json["decision"]["decision"] == "approved"
    assert approved.json["decision"]["points"] == 15
    assert balance(client, me) == 15
    [mine] = client.get("/v1/me/self-reports", headers=me).json
    assert (mine["status"], mine["points"], mine["reason"]) == ("approved", 15, "Thanks!")
    assert mine["decided_at"] is not None
    [action] = client.get("/v1/me/actions", headers=me).json
    assert (action["status"], action["points"], action["reason"]) == ("accepted", 15, None)
    assert client.get("/v1/admin/reviews", headers=staff["reviewer"]).json == []

    again = assert_error(client.post(f"/v1/admin/reviews/{item['id']}/approve", json={},
                                     headers=staff["reviewer"]), 409)
    assert "approved already" in again["message"]
    assert_error(client.post(f"/v1/admin/reviews/{item['id']}/reject", json={"reason": "no"},
                             headers=staff["reviewer"]), 409)
    assert balance(client, me) == 15
    assert len(mails) == before + 1
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "approve")
                                   ).one()
        assert entry.actor_role == "reviewer" and entry.target_id == item["id"]
        assert entry.details["points"] == 15


def test_a_rejected_self_report_says_why(client: FlaskClient, app: Flask,
                                         staff: dict[str, dict[str, str]]) -> None:
    me, _ = resident(client, app, "amira@example.org")
    report = _report(client, me).json
    assert report["has_photo"] is False
    blank = assert_error(client.post(f"/v1/admin/reviews/{report['action_id']}/reject",
                                     json={"reason": "  "}, headers=staff["reviewer"]), 422)
    assert "reason" in blank["errors"]
    rejected = client.post(f"/v1/admin/reviews/{report['action_id']}/reject",
                           json={"reason": "The photo shows a different park."},
                           headers=staff["reviewer"])
    assert rejected.status_code == 200, rejected.json
    assert rejected.json["status"] == "rejected"
    [mine] = client.get("/v1/me/self-reports", headers=me).json
    assert (mine["status"], mine["reason"], mine["points"]) == (
        "rejected", "The photo shows a different park.", 0)
    [action] = client.get("/v1/me/actions", headers=me).json
    assert action["status"] == "revoked"
    assert action["reason"] == "Rejected on review: The photo shows a different park."
    assert balance(client, me) == 0
    shown = client.get(f"/v1/admin/reviews/{report['action_id']}", headers=staff["reviewer"])
    assert shown.json["decision"]["reason"] == "The photo shows a different park."
    assert shown.json["reason"].startswith("self-reported")  # why it was held


def test_bad_self_reports_change_nothing(client: FlaskClient, app: Flask,
                                         staff: dict[str, dict[str, str]]) -> None:
    me, _ = resident(client, app, "amira@example.org")
    limit = app.config["SELF_REPORT_PHOTO_MAX_BYTES"]
    before = counts(app, SelfReport, SelfReportPhoto)
    future = iso(datetime.now(UTC) + timedelta(hours=1))
    old = iso(datetime.now(UTC) - timedelta(days=31))
    cases: list[tuple[Any, int, str]] = [
        (_report(client, me, GIF, filename="bag.jpg"), 422, "photo"),
        (_report(client, me, b"%PDF-1.7" + b"\x00" * 100, filename="bag.png"), 422, "photo"),
        (_report(client, me, type="taxi_ride"), 422, "type"),
        (_report(client, me, occurred_at=future), 422, "occurred_at"),
        (_report(client, me, occurred_at=old), 422, "occurred_at"),
        (_report(client, me, occurred_at="2026-11-20T10:00:00"), 422, "occurred_at"),
        (_report(client, me, description="   "), 422, "description"),
        (_report(client, me, description="x" * 2001), 422, "description"),
        (_report(client, me, description="nul \x00 here"), 422, "description"),
        (_report(client, me, type="litter\x00pick"), 422, "type"),
        (_report(client, me, JPEG[:3] + b"\x00" * limit), 413, ""),
        (_report(client, me, JPEG + b"\x00" * (limit + 200_000)), 413, ""),
    ]
    for n, (response, status, field) in enumerate(cases):
        error = assert_error(response, status)
        if field:
            assert field in error["errors"], (n, error)
    assert "JPEG or PNG" in assert_error(cases[0][0], 422)["message"]
    assert "2 MB" in assert_error(cases[10][0], 413)["message"]
    missing = client.post("/v1/me/self-reports", data={"type": "litter_pick"},
                          content_type="multipart/form-data", headers=me)
    assert {"occurred_at", "description"} <= set(assert_error(missing, 422)["errors"])
    assert_error(_report(client, staff["reviewer"]), 403)
    assert counts(app, SelfReport, SelfReportPhoto) == before
    # A PNG at the limit is fine.
    assert _report(client, me, PNG + b"\x00" * (limit - len(PNG)), filename="x.png"
                   ).status_code == 202


def test_self_reports_are_rate_limited(client: FlaskClient, app: Flask,
                                       staff: dict[str, dict[str, str]]) -> None:
    me, _ = resident(client, app, "amira@example.org")
    limit = app.config["SELF_REPORTS_PER_DAY"]
    assert all(_report(client, me).status_code == 202 for _ in range(limit))
    refused = _report(client, me)
    assert_error(refused, 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600
    assert counts(app, SelfReport)["self_reports"] == limit


def test_reviewing_needs_the_reviewer_role(client: FlaskClient, app: Flask,
                                           staff: dict[str, dict[str, str]]) -> None:
    me, _ = resident(client, app, "amira@example.org")
    report = _report(client, me).json
    manager = bearer(staff_token(client, app, "scheme_manager"))
    assert_error(client.get("/v1/admin/reviews", headers=manager), 403)
    assert_error(client.post(f"/v1/admin/reviews/{report['action_id']}/approve", json={},
                             headers=manager), 403)
    assert_error(client.post(f"/v1/admin/reviews/{report['action_id']}/approve", json={},
                             headers=me), 403)
    assert_error(client.post(f"/v1/admin/reviews/{uuid.uuid4()}/approve", json={},
                             headers=staff["reviewer"]), 404)
    assert_error(client.get(f"/v1/admin/reviews/{report['action_id']}/photo",
                            headers=staff["reviewer"]), 404)
    # The admin may review too.
    assert client.post(f"/v1/admin/reviews/{report['action_id']}/approve", json={},
                       headers=staff["admin"]).status_code == 200


def test_a_flagged_action_approved_keeps_what_it_earned_and_rejected_reverses_it(
    client: FlaskClient, app: Flask
) -> None:
    """A rule failing at run time flags the action while other rules award: approving it
    awards no rule twice; rejecting it takes back what it had earned."""
    scheme = build_scheme(client, app)
    me, _ = resident(client, app, "amira@example.org", "6335 0012 3456 7890")
    broken = client.post("/v1/admin/rules", headers=bearer(scheme.admin), json={
        "name": "Hours bonus", "action_types": ["bus_journey"], "condition": "true",
        "points": "action.attributes.hours * 2", "status": "active",
        "starts_at": iso(datetime.now(UTC) - timedelta(days=30))})
    assert broken.status_code == 201
    sent = signed_post(client, scheme.source, {"items": [
        tap("t-1", "6335 0012 3456 7890", daytime(1, 10)),
        tap("t-2", "6335 0012 3456 7890", daytime(1, 11))]})
    assert [r["points"] for r in sent.json["results"]] == [10, 10]
    reviewer = bearer(staff_token(client, app, "reviewer"))
    queue = client.get("/v1/admin/reviews", query_string={"kind": "flagged"},
                       headers=reviewer).json
    assert [item["external_ref"] for item in queue] == ["t-1", "t-2"]
    assert all("Hours bonus" in item["reason"] and item["points"] == 10 for item in queue)
    assert client.get("/v1/admin/reviews", query_string={"kind": "self_report"},
                      headers=reviewer).json == []
    assert_error(client.get("/v1/admin/reviews", query_string={"kind": "odd"},
                            headers=reviewer), 422)

    before = counts(app, Review)
    approved = client.post(f"/v1/admin/reviews/{queue[0]['id']}/approve", json={},
                           headers=reviewer, )
    assert approved.status_code == 200, approved.json
    assert approved.json["points"] == 10 and approved.json["decision"]["points"] == 0
    after = counts(app, Review)
    assert after["awards"] == before["awards"] and after["postings"] == before["postings"]
    assert balance(client, me) == 20

    rejected = client.post(f"/v1/admin/reviews/{queue[1]['id']}/reject",
                           json={"reason": "Card reported stolen"}, headers=reviewer)
    assert rejected.status_code == 200, rejected.json
    assert rejected.json["decision"]["points"] == 10
    assert balance(client, me) == 10
    with app.app_context():
        action = db.session.get(Action, uuid.UUID(queue[1]["id"]))
        assert action.status == "revoked"
        assert action.flag_reason == "Rejected on review: Card reported stolen"


def test_concurrent_decisions_decide_once(client: FlaskClient, app: Flask,
                                          staff: dict[str, dict[str, str]]) -> None:

    me, _ = resident(client, app, "amira@example.org")
    action_id = _report(client, me).json["action_id"]
    calls = [("approve", {})] * 3 + [("reject", {"reason": "Duplicate report"})] * 2

    def send(client: FlaskClient, index: int) -> Any:
        verb, body = calls[index]
        return client.post(f"/v1/admin/reviews/{action_id}/{verb}", json=body,
                           headers=staff["reviewer"])

    answers = at_once(app, len(calls), send)
    codes = [a.status_code for a in answers]
    assert sorted(codes) == [200] + [409] * 4, codes
    with app.app_context():
        [review] = db.session.scalars(select(Review)).all()
    assert balance(client, me) == (15 if review.decision == "approved" else 0)


def _age(app: Flask, model: Any, where: Any, days: float) -> None:
    """Move rows' created_at `days` days into the past (the clock, for retention)."""
    with app.app_context():
        for row in db.session.scalars(select(model).where(where)):
            row.created_at = row.created_at - timedelta(days=days)
        db.session.commit()


def test_a_decided_self_reports_photo_is_deleted_after_the_retention(
    client: FlaskClient, app: Flask, staff: dict[str, dict[str, str]]
) -> None:
    from rewards.cli import main as rewards_cli
    from workers.privacy import apply_retention

    me, _ = resident(client, app, "amira@example.org")
    old, recent, waiting = (_report(client, me, photo).json for photo in (JPEG, PNG, JPEG))
    for report, verb, body in ((old, "approve", {}), (recent, "reject", {"reason": "No."})):
        decided = client.post(f"/v1/admin/reviews/{report['action_id']}/{verb}", json=body,
                              headers=staff["reviewer"])
        assert decided.status_code == 200, decided.json
    _age(app, Review, Review.action_id == uuid.UUID(old["action_id"]), 91)
    _age(app, Review, Review.action_id == uuid.UUID(recent["action_id"]), 89)
    # Waiting for a decision: kept however old.
    _age(app, SelfReport, SelfReport.id == uuid.UUID(waiting["id"]), 400)
    _age(app, SelfReportPhoto, SelfReportPhoto.self_report_id == uuid.UUID(waiting["id"]), 400)

    with app.app_context():
        done = apply_retention()
    assert (done["photos_removed"], done["photo_days"]) == (1, 90)
    with app.app_context():
        assert sorted(str(i) for i in db.session.scalars(
            select(SelfReportPhoto.self_report_id))) == sorted([recent["id"], waiting["id"]])
        gone = db.session.get(SelfReport, uuid.UUID(old["id"]))
        assert (gone.photo_removed_after_days, gone.photo_type) == (90, "image/jpeg")
        assert gone.photo_removed_at is not None
        assert gone.description == "Two bags of litter from Woodhouse Moor"
        for kept in (recent["id"], waiting["id"]):
            assert db.session.get(SelfReport, uuid.UUID(kept)).photo_removed_at is None

    shown = client.get(f"/v1/admin/reviews/{old['action_id']}", headers=staff["reviewer"])
    assert shown.status_code == 200, shown.json
    assert shown.json["decision"]["decision"] == "approved"
    assert shown.json["self_report"]["photo_removed"] == "photo removed after 90 days"
    assert shown.json["self_report"]["photo_url"] is None
    photo = client.get(f"/v1/admin/reviews/{old['action_id']}/photo", headers=staff["reviewer"])
    assert photo.status_code == 410 and "photo removed after 90 days" in photo.json["message"]
    for kept in (recent, waiting):
        item = client.get(f"/v1/admin/reviews/{kept['action_id']}",
                          headers=staff["reviewer"]).json["self_report"]
        assert item["photo_removed"] is None
        assert client.get(item["photo_url"], headers=staff["reviewer"]).status_code == 200

    mine = {r["id"]: r for r in client.get("/v1/me/self-reports", headers=me).json}
    assert mine[old["id"]]["photo_removed"] == "photo removed after 90 days"
    assert mine[old["id"]]["has_photo"] is True
    assert mine[recent["id"]]["photo_removed"] is None
    exported = {r["action_id"]: r for r in
                client.get("/v1/me/export", headers=me).json["self_reports"]}
    assert exported[old["action_id"]]["photo_removed"] == "photo removed after 90 days"
    assert exported[waiting["action_id"]]["photo_removed"] is None
    assert exported[waiting["action_id"]]["photo"] == "image/jpeg"

    # Once only: a second run finds nothing, and the first removal's marker stays.
    from click.testing import CliRunner
    from flask.cli import ScriptInfo

    again = CliRunner().invoke(rewards_cli, ["privacy", "retention"],
                               obj=ScriptInfo(create_app=lambda: app))
    assert again.exit_code == 0, again.output
    assert "0 self-report photos decided over 90 days ago deleted" in again.output
    with app.app_context():
        assert db.session.scalar(select(func.count(SelfReportPhoto.self_report_id))) == 2


def test_stored_idempotent_answers_are_deleted_after_the_retention(
    client: FlaskClient, app: Flask, staff: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rewards import retention
    from rewards.models import IdempotencyRecord
    from workers.privacy import apply_retention

    me, _ = resident(client, app, "amira@example.org")
    report = _report(client, me).json
    decide = f"/v1/admin/reviews/{report['action_id']}/approve"
    keyed = {**staff["reviewer"], "Idempotency-Key": "approve-once"}
    first = client.post(decide, json={}, headers=keyed)
    assert first.status_code == 200, first.json
    replayed = client.post(decide, json={}, headers=keyed)
    assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
    with app.app_context():
        for n in range(5):
            db.session.add(IdempotencyRecord(scope="member:x:donations", key=f"old-{n}",
                                             request_hash="0" * 64, status_code=201,
                                             response={}))
        db.session.add(IdempotencyRecord(scope="member:x:donations", key="recent",
                                         request_hash="0" * 64, status_code=201, response={}))
        db.session.commit()
    _age(app, IdempotencyRecord, IdempotencyRecord.key.like("old-%"), 31)
    _age(app, IdempotencyRecord, IdempotencyRecord.key == "recent", 29)
    _age(app, IdempotencyRecord, IdempotencyRecord.key == "approve-once", 30.1)

    monkeypatch.setattr(retention, "BATCH", 2)  # several transactions, none left half way
    commits: list[int] = []
    with app.app_context():
        real_commit = db.session.commit

        def counted() -> None:
            commits.append(1)
            real_commit()

        monkeypatch.setattr(db.session, "commit", counted)
        done = apply_retention()
        monkeypatch.undo()
        assert (done["idempotency_records"], done["idempotency_days"]) == (6, 30)
        assert len(commits) >= 3
        assert db.session.scalars(select(IdempotencyRecord.key)).all() == ["recent"]

    # A retry past the retention is judged afresh: the review is decided already.
    late = client.post(decide, json={}, headers=keyed)
    assert late.status_code == 409 and "Idempotent-Replayed" not in late.headers
