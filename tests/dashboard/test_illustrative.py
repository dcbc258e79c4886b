"""Ward facts marked illustrative (the demo's populations and deciles) are said to be so
by the figures that use them (reach_wards, fairness_deprivation), on the staff page and
in the open-data export; real facts are not."""

from __future__ import annotations

import csv
import io
import random
import zipfile
from urllib.parse import quote

from flask import Flask
from flask.testing import FlaskClient

from rewards.dashboard.settings import put
from rewards.extensions import db

from ..helpers import bearer, make_staff, staff_token
from ..test_staff_pages import log_in
from .scheme import WARDS, make_world, now_utc, random_round

FROM = "from=2020-01-01"


def _world(app: Flask, illustrative: set[str]) -> None:
    with app.app_context():
        world = make_world(db.session)
        for n, ward in enumerate(WARDS):
            put(db.session, f"ward:{ward}", {"adult_population": 1000 + n, "imd_decile": n + 2,
                                             "illustrative": ward in illustrative}, None)
        db.session.commit()
        random_round(db.session, world, random.Random(5), now_utc(), actions=200, members=40)


def _notes(client: FlaskClient, token: str, name: str, query: str = FROM) -> list[str]:
    response = client.get(f"/v1/admin/dashboard/{name}?{query}", headers=bearer(token))
    assert response.status_code == 200
    return response.json["notes"]


def _zip(client: FlaskClient, token: str) -> zipfile.ZipFile:
    response = client.get(f"/v1/admin/dashboard/open-data.zip?{FROM}", headers=bearer(token))
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(response.data))


def test_illustrative_ward_facts_are_said_to_be(client: FlaskClient, app: Flask) -> None:
    _world(app, set(WARDS))
    token = staff_token(client, app, "analyst")
    reach = [n for n in _notes(client, token, "reach_wards") if "illustrative" in n.lower()]
    assert reach == ["Illustrative figures: the adult populations of all the wards shown are "
                     "illustrative values (as the demo loads them), not official statistics, "
                     "and so are the shares of adults joined."]
    deprivation = [n for n in _notes(client, token, "fairness_deprivation")
                   if "illustrative" in n.lower()]
    assert len(deprivation) == 1 and "deprivation deciles" in deprivation[0]
    assert "all the wards with a decile" in deprivation[0]
    # Figures that use no ward facts say nothing of them.
    for name in ("actions", "actions_by_ward", "fairness_age"):
        assert not any("illustrative" in n.lower() for n in _notes(client, token, name)), name
    # The open-data export: the README, the dictionary, and the files' notes there.
    bundle = _zip(client, token)
    readme = bundle.read("README.txt").decode()
    assert readme.startswith("ILLUSTRATIVE FIGURES: reach_wards.csv, fairness_deprivation.csv")
    dictionary = list(csv.DictReader(io.StringIO(bundle.read("dictionary.csv").decode())))
    flagged = {row["file"] for row in dictionary if row["column"] == ""
               and row["meaning"].startswith("Illustrative figures:")
               and "enghreifftiol" in row["meaning_cy"]}
    assert flagged == {"reach_wards.csv", "fairness_deprivation.csv"}
    # The staff page shows the notes (English, marked as such on a Welsh page).
    make_staff(app, "a@council.example", "analyst")
    assert log_in(client, "a@council.example").status_code == 302
    html = client.get(f"/staff/fairness?lang=cy&{FROM}").data.decode()
    notes = html[html.index('<ul class="notes" aria-label="Nodiadau" lang="en">'):]
    assert "<li>Illustrative figures: the deprivation deciles" in notes[:notes.index("</ul>")]


def test_one_illustrative_ward_is_named(client: FlaskClient, app: Flask) -> None:
    _world(app, {WARDS[1]})
    token = staff_token(client, app, "analyst")
    for name in ("reach_wards", "fairness_deprivation"):
        said = [n for n in _notes(client, token, name) if n.startswith("Illustrative")]
        assert len(said) == 1 and f"of {WARDS[1]} are illustrative" in said[0], said
    # Under a ward filter reach_wards uses that ward's population only.
    assert any(n.startswith("Illustrative") for n in _notes(
        client, token, "reach_wards", f"{FROM}&ward={quote(WARDS[1])}"))
    assert not any(n.startswith("Illustrative") for n in _notes(
        client, token, "reach_wards", f"{FROM}&ward={quote(WARDS[0])}"))


def test_real_ward_facts_say_nothing(client: FlaskClient, app: Flask) -> None:
    _world(app, set())
    token = staff_token(client, app, "analyst")
    for name in ("reach_wards", "fairness_deprivation"):
        assert not any("illustrative" in n.lower() for n in _notes(client, token, name))
    bundle = _zip(client, token)
    everything = b" ".join(bundle.read(name) for name in bundle.namelist()).lower()
    assert b"illustrative" not in everything and b"enghreifftiol" not in everything
