"""Partners as places: address, location, opening hours and logo set by staff; a public
list for maps, nearest first with near=lat,lon; offers with an image."""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient

from rewards.api.places import distance_m

from .reward_support import admin_headers, make_offer, make_partner, resident

KIRKGATE = (53.7973, -1.5402)  # Kirkgate Market, Leeds
HEADINGLEY = (53.8197, -1.5763)
HOURS = {"mon": [{"opens": "09:00", "closes": "17:30"}], "sat": [
    {"opens": "10:00", "closes": "13:00"}, {"opens": "14:00", "closes": "16:00"}]}


def test_partner_places_nearest_first(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    market = make_partner(client, admin, name="Market Cafe", address="Kirkgate, Leeds LS2 7HY",
                          latitude=KIRKGATE[0], longitude=KIRKGATE[1], opening_hours=HOURS,
                          logo_url="https://cdn.example/market.png")
    assert market["opening_hours"]["sat"][1] == {"opens": "14:00", "closes": "16:00"}
    assert market["opening_hours"]["sun"] == []
    far = make_partner(client, admin, name="Headingley Books")
    moved = client.patch(f"/v1/admin/partners/{far['id']}", headers=admin,
                         json={"latitude": HEADINGLEY[0], "longitude": HEADINGLEY[1]})
    assert moved.status_code == 200, moved.json
    make_partner(client, admin, name="No Place Yet")
    make_partner(client, admin, name="A Charity", kind="charity",
                 latitude=KIRKGATE[0], longitude=KIRKGATE[1])

    everyone = client.get("/v1/partners")  # no account needed
    assert everyone.status_code == 200
    assert [p["name"] for p in everyone.json] == ["Headingley Books", "Market Cafe",
                                                  "No Place Yet"]
    assert all(p["distance_m"] is None for p in everyone.json)
    assert "public" in everyone.headers["Cache-Control"] and everyone.headers["ETag"]

    near = client.get("/v1/partners", query_string={"near": "53.8008,-1.5491"}).json
    assert [p["name"] for p in near] == ["Market Cafe", "Headingley Books"]
    assert near[0]["distance_m"] == round(distance_m(53.8008, -1.5491, *KIRKGATE))
    assert 600 < near[0]["distance_m"] < 800
    close = client.get("/v1/partners", query_string={"near": "53.8008,-1.5491",
                                                     "radius_km": 1}).json
    assert [p["name"] for p in close] == ["Market Cafe"]

    # Paged like every other list, nearest-first order kept across pages.
    first = client.get("/v1/partners", query_string={"near": "53.8008,-1.5491",
                                                     "page_size": 1})
    assert [p["name"] for p in first.json] == ["Market Cafe"]
    assert json.loads(first.headers["X-Pagination"])["total"] == 2
    second = client.get("/v1/partners", query_string={"near": "53.8008,-1.5491",
                                                      "page_size": 1, "page": 2}).json
    assert [p["name"] for p in second] == ["Headingley Books"]
    assert client.get("/v1/partners", query_string={"page": 9}).json == []
    for bad in ("north", "91,0", "53.8,-181", "53.8"):
        refused = client.get("/v1/partners", query_string={"near": bad})
        assert refused.status_code == 422, bad


def test_place_fields_are_checked(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    path = f"/v1/admin/partners/{partner['id']}"
    for body in ({"latitude": 53.8}, {"latitude": 95, "longitude": 0},
                 {"opening_hours": {"mon": [{"opens": "9am", "closes": "17:00"}]}},
                 {"logo_url": "http://insecure.example/logo.png"}):
        assert client.patch(path, json=body, headers=admin).status_code == 422, body
    cleared = client.patch(path, json={"latitude": None, "longitude": None,
                                       "opening_hours": None}, headers=admin)
    assert cleared.status_code == 200 and cleared.json["latitude"] is None


def test_offers_carry_an_image(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], image_url="https://cdn.example/swim.jpg")
    assert offer["image_url"] == "https://cdn.example/swim.jpg"
    member = resident(client, app)
    listed = client.get("/v1/offers", headers=member.headers).json
    assert listed[0]["image_url"] == "https://cdn.example/swim.jpg"
