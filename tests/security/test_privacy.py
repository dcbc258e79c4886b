"""Privacy: erasure leaves no personal data and balanced books, export gives everything,
consents are kept with their history and withdrawing travel data stops taps, old
details are coarsened, photos lose their metadata, and no CSV cell can run a formula."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select

from rewards import vouchers
from rewards.cli import main as rewards_cli
from rewards.csvfile import csv_text, safe_cell
from rewards.dashboard.table import safe_cell as dashboard_cell
from rewards.extensions import db
from rewards.members import otp_address
from rewards.models import Action, Award, Device, Identifier, Member, OtpCode, Reward
from rewards.models.login import LoginSession
from rewards.models.privacy import Consent
from rewards.models.review import SelfReport, SelfReportPhoto
from rewards.photos import without_metadata
from rewards.settlement import OfferLine, PartnerSettlement, as_csv

from ..helpers import bearer, build_scheme, iso, link, member_token, signed_post, staff_token
from ..reward_support import add_ward, make_offer, make_partner, till
from ..test_flow import _daytime

CARD = "6335 0044 5566 7788"


def _cli(app: Flask, *args: str) -> Any:
    return CliRunner().invoke(rewards_cli, list(args), obj=ScriptInfo(create_app=lambda: app))


def _trip(ref: str, hours_ago: float, at: datetime | None = None,
          **attributes: Any) -> dict[str, Any]:
    moment = at or datetime.now(UTC) - timedelta(hours=hours_ago)
    return {"external_ref": ref, "member": {"kind": "travel_card", "number": CARD},
            "type": "bus_journey",
            "occurred_at": iso(moment),
            "attributes": {"distance_km": 3.2, **attributes}}


def _gps_jpeg() -> bytes:
    image = Image.new("RGB", (16, 12), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (53.0, 48.0, 0.0)   # GPSLatitudeRef, GPSLatitude (Leeds)
    gps[3], gps[4] = "W", (1.0, 33.0, 0.0)    # GPSLongitudeRef, GPSLongitude
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def test_photos_lose_their_gps_and_every_other_metadata() -> None:
    original = _gps_jpeg()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)  # GPS is there
    clean, kind = without_metadata(original)
    assert kind == "image/jpeg"
    reopened = Image.open(io.BytesIO(clean))
    assert reopened.size == (16, 12)
    assert len(reopened.getexif()) == 0 and not reopened.getexif().get_ifd(0x8825)
    assert b"Exif" not in clean and b"PhoneMaker" not in clean


def test_a_self_report_photo_is_stored_without_gps(client: FlaskClient, app: Flask) -> None:
    admin = bearer(staff_token(client, app, "admin"))
    client.post("/v1/admin/action-types", headers=admin,
                json={"code": "litter_pick", "name": "Litter pick", "category": "climate"})
    me = bearer(member_token(client, app, "photo@example.org"))
    sent = client.post("/v1/me/self-reports", headers=me, content_type="multipart/form-data",
                       data={"type": "litter_pick", "description": "Two bags",
                             "occurred_at": iso(datetime.now(UTC) - timedelta(hours=2)),
                             "photo": (io.BytesIO(_gps_jpeg()), "park.jpg")})
    assert sent.status_code == 202, sent.json
    with app.app_context():
        stored = db.session.scalars(select(SelfReportPhoto)).one().content
    assert not Image.open(io.BytesIO(stored)).getexif().get_ifd(0x8825)
    assert b"PhoneMaker" not in stored
    broken = client.post("/v1/me/self-reports", headers=me, content_type="multipart/form-data",
                         data={"type": "litter_pick", "description": "Two bags",
                               "occurred_at": iso(datetime.now(UTC) - timedelta(hours=2)),
                               "photo": (io.BytesIO(b"\xff\xd8\xff" + b"x" * 300), "a.jpg")})
    assert broken.status_code == 422 and "photo" in broken.json["errors"]


def _member_with_history(client: FlaskClient, app: Flask) -> tuple[Any, dict[str, str], str]:
    scheme = build_scheme(client, app, cost_points=10)
    me = bearer(member_token(client, app, "erase.me@leeds.gov.uk"))
    add_ward(app, "Headingley")
    changed = client.patch("/v1/me", json={"display_name": "Erin", "ward": "Headingley",
                                           "birth_year": 1980}, headers=me)
    assert changed.status_code == 200, changed.json
    device = client.post("/v1/me/devices", json={"platform": "fcm", "token": "fcm-token-erin"},
                         headers=me)
    assert device.status_code in (200, 201), device.json
    assert link(client, app, me, CARD).status_code == 201
    sent = signed_post(client, scheme.source, {"items": [
        # Daytime journeys (10 points each, not the evening's 15) whenever the test runs.
        _trip(f"t{i}", 0, at=_daytime(2, 10 + i), lat=53.81, lon=-1.56,
              stop="Hyde Park Corner")
        for i in range(4)]})
    assert [r["status"] for r in sent.json["results"]] == ["accepted"] * 4
    member_id = client.get("/v1/me", headers=me).json["id"]
    return scheme, me, member_id


def test_a_small_photo_of_too_many_pixels_is_refused_before_decoding(
        client: FlaskClient, app: Flask) -> None:
    # A few kB of PNG that decodes to 16.8 million pixels (RGB would be 50 MB, copied
    # twice while the metadata is taken off): a decompression bomb, not a phone's photo.
    out = io.BytesIO()
    Image.new("1", (4100, 4100)).save(out, format="PNG")
    bomb = out.getvalue()
    assert len(bomb) < 100_000
    admin = bearer(staff_token(client, app, "admin"))
    client.post("/v1/admin/action-types", headers=admin,
                json={"code": "litter_pick", "name": "Litter pick", "category": "climate"})
    me = bearer(member_token(client, app, "bomb@example.org"))
    sent = client.post("/v1/me/self-reports", headers=me, content_type="multipart/form-data",
                       data={"type": "litter_pick", "description": "Two bags",
                             "occurred_at": iso(datetime.now(UTC) - timedelta(hours=2)),
                             "photo": (io.BytesIO(bomb), "bags.png")})
    assert sent.status_code == 422, sent.json
    assert "pixels" in sent.json["errors"]["photo"][0]
    with app.app_context():
        assert db.session.scalars(select(SelfReportPhoto)).all() == []


def test_erasure_leaves_no_personal_data_and_the_books_balanced(
        client: FlaskClient, app: Flask) -> None:
    scheme, me, member_id = _member_with_history(client, app)
    client.post("/v1/admin/action-types", headers=bearer(scheme.admin),
                json={"code": "litter_pick", "name": "Litter pick", "category": "climate"})
    client.post("/v1/me/self-reports", headers=me, content_type="multipart/form-data",
                data={"type": "litter_pick", "description": "Behind 12 Cardigan Road",
                      "occurred_at": iso(datetime.now(UTC) - timedelta(hours=2)),
                      "photo": (io.BytesIO(_gps_jpeg()), "home.jpg")})
    issued = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]}, headers=me)
    code = client.get(f"/v1/me/rewards/{issued.json['id']}", headers=me).json["code"]
    assert code
    with app.app_context():  # a reward claimed but not issued yet
        member = db.session.get(Member, uuid.UUID(member_id))
        pending = vouchers.claim(db.session, member, uuid.UUID(scheme.offer["id"]),
                                 enqueue_issue=False)
        pending_id = pending.id
        db.session.commit()
    client.post("/v1/auth/otp", json={"email": "erase.me@leeds.gov.uk"})
    before = client.get("/v1/me/balance", headers=me).json["available"]

    assert client.delete("/v1/me", headers=me).status_code == 204

    with app.app_context():
        member = db.session.get(Member, uuid.UUID(member_id))
        assert member.erased_at is not None
        assert (member.email, member.display_name, member.ward, member.pin_hash,
                member.birth_year) == (None, None, None, None, None)
        assert db.session.scalars(select(Device)).all() == []
        assert db.session.scalars(select(LoginSession).where(
            LoginSession.member_id == member.id, LoginSession.revoked_at.is_(None))).all() == []
        assert db.session.scalar(select(func.count(OtpCode.id)).where(
            OtpCode.email_hash == otp_address("erase.me@leeds.gov.uk"))) == 0
        assert db.session.scalars(select(Identifier)).all() == []
        assert db.session.scalars(select(Consent)).all() == []
        report = db.session.scalars(select(SelfReport)).one()
        assert "Cardigan" not in report.description and report.photo_type is None
        assert db.session.scalars(select(SelfReportPhoto)).all() == []
        for action in db.session.scalars(select(Action)):
            assert action.attributes == {}, action.attributes
        for award in db.session.scalars(select(Award)):
            assert "Hyde Park" not in str(award.inputs) and "53.81" not in str(award.inputs)
        statuses = {reward.id: reward.status for reward in db.session.scalars(select(Reward))}
        assert set(statuses.values()) == {"cancelled"} and statuses[pending_id] == "cancelled"
        from rewards.ledger import member_balances

        # Both rewards' points came back: the one issued (refund) and the one held.
        assert member_balances(db.session, uuid.UUID(member_id)).available == before + 20
    # The voucher no longer works at the till; the old token no longer works at all.
    checked = client.get(f"/v1/partner/vouchers/{code}", headers=till(scheme.partner))
    assert checked.status_code == 200 and checked.json["status"] == "cancelled", checked.json
    redeemed = client.post("/v1/partner/redemptions", json={"code": code},
                           headers=till(scheme.partner))
    assert redeemed.status_code == 409 and "cancelled" in redeemed.json["message"]
    assert client.get("/v1/me", headers=me).status_code == 401
    # New taps on the old card find nobody.
    again = signed_post(client, scheme.source, {"items": [_trip("after", 1)]})
    assert again.json["results"][0]["status"] == "rejected"
    verified = _cli(app, "ledger", "verify")
    assert verified.exit_code == 0 and "ledger ok" in verified.output, verified.output


def test_export_gives_everything_held(client: FlaskClient, app: Flask) -> None:
    scheme, me, member_id = _member_with_history(client, app)
    answer = client.get("/v1/me/export", headers=me)
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert "attachment" in answer.headers["Content-Disposition"]
    data = answer.json
    assert data["member"]["id"] == member_id
    assert data["member"]["email"] == "erase.me@leeds.gov.uk"
    assert (data["member"]["display_name"], data["member"]["ward"]) == ("Erin", "Headingley")
    assert data["member"]["birth_year"] == 1980
    assert [d["token"] for d in data["devices"]] == ["fcm-token-erin"]
    assert data["cards"] == [{"kind": "travel_card", "last4": "7788",
                              "linked_at": data["cards"][0]["linked_at"]}]
    assert "6335004455667788" not in answer.get_data(as_text=True)
    assert len(data["actions"]) == 4
    assert data["actions"][0]["attributes"]["stop"] == "Hyde Park Corner"
    assert data["actions"][0]["awards"][0]["points"] == 10
    assert sum(line["points"] for line in data["ledger"] if line["account"] == "available") \
        == data["balance"]["available"] == 40
    purposes = {c["purpose"]: c for c in data["consents"]["current"]}
    assert purposes["terms"]["granted"] and purposes["terms"]["version"] == "1"
    assert purposes["travel_data"]["granted"] and not purposes["research"]["granted"]
    # Times as every other answer writes them: RFC 3339, UTC, +00:00.
    assert data["member"]["joined_at"].endswith("+00:00")
    assert data["actions"][0]["occurred_at"].endswith("+00:00")
    assert not re.search(r'\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z"', answer.get_data(as_text=True))
    assert client.get("/v1/me/export").status_code == 401
    assert client.get("/v1/me/export", headers=bearer(scheme.admin)).status_code == 403


def test_consents_keep_their_history_and_travel_consent_stops_taps(
        client: FlaskClient, app: Flask) -> None:
    scheme, me, _ = _member_with_history(client, app)
    shown = client.get("/v1/me/consents", headers=me).json
    assert [(h["purpose"], h["granted"]) for h in shown["history"]] == [
        ("terms", True), ("privacy_notice", True)]

    withdrawn = client.put("/v1/me/consents", headers=me, json={"consents": [
        {"purpose": "travel_data", "granted": False}, {"purpose": "research", "granted": True}]})
    assert withdrawn.status_code == 200, withdrawn.json
    state = {c["purpose"]: c for c in withdrawn.json["consents"]}
    assert state["travel_data"]["granted"] is False and state["travel_data"]["withdrawn_at"]
    assert state["research"]["granted"] is True and state["research"]["given_at"]

    refused = signed_post(client, scheme.source, {"items": [_trip("late", 1)]})
    [result] = refused.json["results"]
    assert result["status"] == "rejected" and result["reason"].startswith("no_consent")
    with app.app_context():
        assert db.session.scalar(select(func.count(Action.id))) == 4

    given = client.put("/v1/me/consents", headers=me, json={"consents": [
        {"purpose": "travel_data", "granted": True}]})
    assert {c["purpose"]: c["granted"] for c in given.json["consents"]}["travel_data"]
    assert [(h["purpose"], h["granted"]) for h in given.json["history"]][2:] == [
        ("travel_data", False), ("research", True), ("travel_data", True)]
    accepted = signed_post(client, scheme.source, {"items": [_trip("back", 1)]})
    assert accepted.json["results"][0]["status"] == "accepted"

    for body in ({"consents": [{"purpose": "terms", "granted": False}]},
                 {"consents": [{"purpose": "selling_data", "granted": True}]},
                 {"consents": []}, {}):
        assert client.put("/v1/me/consents", headers=me, json=body).status_code == 422
    assert len(client.get("/v1/me/consents", headers=me).json["history"]) == 5


def test_retention_coarsens_old_details(client: FlaskClient, app: Flask) -> None:
    _, me, member_id = _member_with_history(client, app)
    with app.app_context():
        old = db.session.scalars(select(Action).order_by(Action.occurred_at)).first()
        old.occurred_at = datetime.now(UTC) - timedelta(days=500)
        old_id = old.id
        db.session.commit()
    result = _cli(app, "privacy", "retention")
    assert result.exit_code == 0 and "1 actions older than 400 days" in result.output
    with app.app_context():
        for action in db.session.scalars(select(Action)):
            if action.id == old_id:
                assert action.attributes == {"distance_km": 3.2, "_coarsened": True}
                for award in action.awards:
                    assert award.inputs["attributes"] == action.attributes
            else:
                assert action.attributes["stop"] == "Hyde Park Corner"
    assert "0 actions" in _cli(app, "privacy", "retention").output  # once only
    from workers.privacy import apply_retention

    with app.app_context():
        assert apply_retention() == {"coarsened": 0, "days": 400,
                                     "idempotency_records": 0, "idempotency_days": 30,
                                     "photos_removed": 0, "photo_days": 90}


def test_no_csv_cell_can_run_a_formula(client: FlaskClient, app: Flask) -> None:
    for text in ("=HYPERLINK(\"http://x\",\"pay\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx",
                 " =1+1", "\n=cmd()", "  @SUM(A1)", "\uff1dHYPERLINK(\"x\")", "\uff0b1"):
        assert safe_cell(text) == "'" + text
        assert dashboard_cell(text) == "'" + text  # the dashboard's CSV, the same rule
    assert (safe_cell("a = b"), dashboard_cell("Café")) == ("a = b", "Café")
    assert (safe_cell(-5), safe_cell(12), safe_cell("Café"), safe_cell(None)) == (
        -5, 12, "Café", "")
    settlement = as_csv("2026-07", [PartnerSettlement(uuid.uuid4(), "@Evil Ltd", [
        OfferLine(uuid.uuid4(), "=HYPERLINK(\"http://x\")", "redeemed", 1, 250)])])
    rows = list(csv.reader(io.StringIO(settlement)))
    assert rows[1][2] == "'@Evil Ltd" and rows[1][4] == "'=HYPERLINK(\"http://x\")"
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row)
    assert csv_text(["a"], [["-1-1"]]).splitlines()[1] == "'-1-1"

    # Through the API: an offer title reaches the council's finance file neutralised.
    admin = bearer(staff_token(client, app, "scheme_manager"))
    partner = make_partner(client, admin, "=cmd|' /C calc'!A0")
    offer = make_offer(client, admin, partner["id"], title="=HYPERLINK(\"http://evil\")",
                       cost_points=10)
    me = bearer(member_token(client, app, "csv@example.org"))
    from ..reward_support import give_points

    give_points(app, client.get("/v1/me", headers=me).json["id"], 10)
    reward = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me).json
    code = client.get(f"/v1/me/rewards/{reward['id']}", headers=me).json["code"]
    assert client.post("/v1/partner/redemptions", json={"code": code},
                       headers=till(partner)).status_code == 201
    month = datetime.now(UTC).astimezone().strftime("%Y-%m")
    sheet = client.get(f"/v1/admin/settlements?month={month}&format=csv", headers=admin)
    cells = [cell for row in csv.reader(io.StringIO(sheet.get_data(as_text=True)))
             for cell in row]
    assert "'=HYPERLINK(\"http://evil\")" in cells and "'=cmd|' /C calc'!A0" in cells


def test_the_public_page_tells_nothing_about_one_resident(
        client: FlaskClient, app: Flask) -> None:
    # Anyone may load it, as often as they like: a live count of members, actions or
    # vouchers would move when one resident joins or acts, with no small-cell rule.
    from ..helpers import tap

    scheme = build_scheme(client, app, cost_points=10)
    before = client.get("/").get_data(as_text=True)
    me = bearer(member_token(client, app, "watched@example.org"))
    link(client, app, me, "6335000011112222")
    sent = signed_post(client, scheme.source,
                       {"items": [tap("w1", "6335000011112222", _daytime(1, 10))]})
    assert sent.json["results"][0]["status"] == "accepted", sent.json
    reward = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]}, headers=me)
    assert reward.status_code == 202, reward.json
    after = client.get("/")
    assert after.status_code == 200
    assert after.get_data(as_text=True) == before
    assert "Members" not in before and "Vouchers" not in before
