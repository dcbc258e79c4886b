"""ETag and Cache-Control on what apps read often: 304 while nothing changed, a new
ETag once something has; public action types with names to show."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from .reward_support import admin_headers, make_offer, make_partner, resident


def test_the_catalogue_answers_304_until_it_changes(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], title="Swim")
    member = resident(client, app, points=50)
    first = client.get("/v1/offers", headers=member.headers)
    assert first.status_code == 200 and first.headers["ETag"]
    assert "private" in first.headers["Cache-Control"]
    assert "max-age=60" in first.headers["Cache-Control"]
    assert {"Accept-Language", "Authorization"} <= {
        v.strip() for v in first.headers["Vary"].split(",")}
    again = client.get("/v1/offers", headers={**member.headers,
                                              "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    one = client.get(f"/v1/offers/{offer['id']}", headers=member.headers)
    assert client.get(f"/v1/offers/{offer['id']}", headers={
        **member.headers, "If-None-Match": one.headers["ETag"]}).status_code == 304
    make_offer(client, admin, partner["id"], title="Gym")
    changed = client.get("/v1/offers", headers={**member.headers,
                                                "If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and len(changed.json) == 2
    assert changed.headers["ETag"] != first.headers["ETag"]
    stale = client.get("/v1/offers", headers={**member.headers, "If-None-Match": '"other"'})
    assert stale.status_code == 200
    # Errors are never cached.
    missing = client.get("/v1/offers/00000000-0000-0000-0000-000000000000",
                         headers=member.headers)
    assert missing.status_code == 404 and "ETag" not in missing.headers


def test_action_types_are_listed_publicly_with_names(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app, "admin")
    made = client.post("/v1/admin/action-types", headers=admin, json={
        "code": "volunteering_hour", "name": "An hour volunteering", "category": "volunteering",
        "description": "With a registered Leeds charity.",
        "translations": {"cy": {"name": "Awr o wirfoddoli"}}})
    assert made.status_code == 201, made.json
    listed = client.get("/v1/action-types")
    assert listed.status_code == 200
    assert listed.json == [{"code": "volunteering_hour", "name": "An hour volunteering",
                            "description": "With a registered Leeds charity.",
                            "category": "volunteering", "language": "en"}]
    welsh = client.get("/v1/action-types", headers={"Accept-Language": "cy"}).json[0]
    assert (welsh["name"], welsh["language"]) == ("Awr o wirfoddoli", "cy")
    assert welsh["description"] == "With a registered Leeds charity."  # not translated
    assert "public" in listed.headers["Cache-Control"]
    assert client.get("/v1/action-types", headers={
        "If-None-Match": listed.headers["ETag"]}).status_code == 304


def test_if_match_is_evaluated_before_if_none_match(client: FlaskClient, app: Flask) -> None:
    """An If-Match naming the current ETag (or *) passes, so a matching If-None-Match
    still gives 304; one naming none gives 412 in the one error shape, not the body."""
    first = client.get("/v1/wards")
    tag = first.headers["ETag"]
    for if_match in (tag, "*", f'"old", {tag}'):
        again = client.get("/v1/wards", headers={"If-None-Match": tag, "If-Match": if_match})
        assert again.status_code == 304, if_match
    refused = client.get("/v1/wards", headers={"If-Match": '"old"'})
    assert refused.status_code == 412
    assert (refused.json["reason"], refused.json["code"]) == ("precondition_failed", 412)
    assert client.get("/v1/wards", headers={"If-Match": tag}).status_code == 200
    declared = client.get("/openapi.json").json["paths"]["/v1/wards"]["get"]["responses"]
    assert "412" in declared
