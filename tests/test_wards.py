"""Wards: listed for apps; a member's ward is one of them (by code or name) or comes
from the council's postcode lookup, never free text."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient

from rewards.cli import main

from .reward_support import admin_headers, load_test_wards, make_offer, make_partner, resident


def test_wards_are_listed_and_a_members_ward_is_one_of_them(client: FlaskClient,
                                                            app: Flask) -> None:
    load_test_wards(app, "Roundhay", "Headingley & Hyde Park")
    listed = client.get("/v1/wards")
    assert listed.status_code == 200
    assert listed.json == [{"code": "Headingley & Hyde Park", "name": "Headingley & Hyde Park"},
                           {"code": "Roundhay", "name": "Roundhay"}]
    assert client.get("/v1/wards", headers={
        "If-None-Match": listed.headers["ETag"]}).status_code == 304
    member = resident(client, app)
    made_up = client.patch("/v1/me", json={"ward": "Gotham"}, headers=member.headers)
    assert made_up.status_code == 422 and "ward" in made_up.json["errors"]
    chosen = client.patch("/v1/me", json={"ward": "  headingley &  hyde park "},
                          headers=member.headers)
    assert chosen.status_code == 200 and chosen.json["ward"] == "Headingley & Hyde Park"
    cleared = client.patch("/v1/me", json={"ward": None}, headers=member.headers)
    assert cleared.status_code == 200 and cleared.json["ward"] is None


def test_a_postcode_sets_the_ward_through_the_councils_lookup(
        client: FlaskClient, app: Flask, tmp_path: Path) -> None:
    wards = tmp_path / "wards.csv"
    wards.write_text("code,name\nE05011410,Roundhay\nE05011400,Armley\n")
    postcodes = tmp_path / "postcodes.csv"
    postcodes.write_text("postcode,ward_code\nLS8 2ET,E05011410\nls12 3aa,E05011400\n"
                         "not a postcode,E05011400\nLS1 1AA,E0000NONE\n")
    runner, info = CliRunner(), ScriptInfo(create_app=lambda: app)
    loaded = runner.invoke(main, ["wards", "load", str(wards)], obj=info)
    assert loaded.exit_code == 0, loaded.output
    looked = runner.invoke(main, ["wards", "postcodes", str(postcodes)], obj=info)
    assert looked.exit_code == 0, looked.output
    assert "2 postcodes loaded, 2 rows skipped" in looked.output
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    local = make_offer(client, admin, partner["id"], eligible_wards=["Roundhay"])
    member = resident(client, app, points=50)
    assert client.get("/v1/offers", headers=member.headers).json == []
    set_by_postcode = client.patch("/v1/me", json={"postcode": "ls82et"},
                                   headers=member.headers)
    assert set_by_postcode.status_code == 200, set_by_postcode.json
    assert set_by_postcode.json["ward"] == "Roundhay"
    assert "postcode" not in set_by_postcode.json
    assert [o["id"] for o in client.get("/v1/offers", headers=member.headers).json] == [
        local["id"]]
    elsewhere = client.patch("/v1/me", json={"postcode": "SW1A 1AA"}, headers=member.headers)
    assert elsewhere.status_code == 422 and "postcode" in elsewhere.json["errors"]
    by_code = client.patch("/v1/me", json={"ward": "E05011400"}, headers=member.headers)
    assert by_code.json["ward"] == "Armley"


def test_a_council_outside_the_uk_loads_its_own_postcodes(
        client: FlaskClient, app: Flask, tmp_path: Path) -> None:
    """Bologna's quartieri and CAPs (five digits), Singapore's six-digit codes: the
    lookup takes the postcodes the council publishes, not only UK-shaped ones."""
    wards = tmp_path / "quartieri.csv"
    wards.write_text("code,name\nBO-SF,Santo Stefano\nBO-NAV,Navile\n", encoding="utf-8")
    postcodes = tmp_path / "cap.csv"
    postcodes.write_text("postcode,ward_code\n40121,BO-SF\n40125,BO-SF\n40128,BO-NAV\n"
                         "018956,BO-NAV\nquaranta,BO-SF\n40129,BO-NONE\n", encoding="utf-8")
    runner, info = CliRunner(), ScriptInfo(create_app=lambda: app)
    assert runner.invoke(main, ["wards", "load", str(wards)], obj=info).output == \
        "2 wards loaded\n"
    looked = runner.invoke(main, ["wards", "postcodes", str(postcodes)], obj=info)
    assert looked.output == "4 postcodes loaded, 2 rows skipped\n"
    member = resident(client, app)
    for typed, ward in ((" 40128 ", "Navile"), ("40121", "Santo Stefano"),
                        ("018 956", "Navile")):
        answer = client.patch("/v1/me", json={"postcode": typed}, headers=member.headers)
        assert answer.status_code == 200, answer.json
        assert answer.json["ward"] == ward, typed
    for unknown in ("40129", "LS8 2ET", "quaranta"):
        refused = client.patch("/v1/me", json={"postcode": unknown}, headers=member.headers)
        assert refused.status_code == 422 and "postcode" in refused.json["errors"], unknown


def test_where_the_scheme_says_so_a_ward_changes_at_most_once_in_so_many_days(
        client: FlaskClient, app: Flask, monkeypatch) -> None:
    """A ward unlocks ward-only offers: with WARD_CHANGE_DAYS a resident cannot move to
    a ward, claim its offer and move back. The first ward given is free."""
    from datetime import timedelta

    from sqlalchemy import update

    from rewards.extensions import db
    from rewards.models import Member, utcnow

    monkeypatch.setitem(app.config, "WARD_CHANGE_DAYS", 30)
    load_test_wards(app, "Roundhay", "Gipton")
    member = resident(client, app)
    first = client.patch("/v1/me", json={"ward": "Roundhay"}, headers=member.headers)
    assert first.status_code == 200 and first.json["ward"] == "Roundhay"
    for change in ({"ward": "Gipton"}, {"ward": None}):
        refused = client.patch("/v1/me", json={**change, "display_name": "Amira"},
                               headers=member.headers)
        assert refused.status_code == 409, refused.json
        assert refused.json["reason"] == "ward_changed_recently"
    profile = client.get("/v1/me", headers=member.headers).json
    assert (profile["ward"], profile["display_name"]) == ("Roundhay", None)  # nothing changed
    same = client.patch("/v1/me", json={"ward": "roundhay", "display_name": "Amira"},
                        headers=member.headers)
    assert same.status_code == 200 and same.json["display_name"] == "Amira"
    with app.app_context():
        db.session.execute(update(Member).where(Member.email == member.email).values(
            ward_changed_at=utcnow() - timedelta(days=31)))
        db.session.commit()
    later = client.patch("/v1/me", json={"ward": "Gipton"}, headers=member.headers)
    assert later.status_code == 200 and later.json["ward"] == "Gipton"
    again = client.patch("/v1/me", json={"ward": "Roundhay"}, headers=member.headers)
    assert again.status_code == 409
