"""A source's keys (rotation with an overlap, retiring), settings (allowed types, window,
active) and CSV uploads for operators without an API, through HTTP."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from rewards.extensions import db
from rewards.models import Action, AuditEntry
from rewards.models.source import SourceImport, SourceImportRow, SourceKey

from .helpers import Scheme, bearer, build_scheme, signed_post, staff_token, tap
from .ways_in import assert_error, counts, daytime, resident

CARD = "6335 0012 3456 7890"


@pytest.fixture
def scheme(client: FlaskClient, app: Flask) -> Scheme:
    built = build_scheme(client, app)
    resident(client, app, "amira@example.org", CARD)
    return built


def _admin(scheme: Scheme) -> dict[str, str]:
    return bearer(scheme.admin)


def _keys_url(scheme: Scheme) -> str:
    return f"/v1/admin/sources/{scheme.source['id']}/keys"


def _send(client: FlaskClient, key: dict[str, Any], ref: str, **kwargs: Any) -> Any:
    return signed_post(client, key, {"items": [tap(ref, CARD, daytime(1, 10))]}, **kwargs)


# -- keys --------------------------------------------------------------------------------

def test_rotation_keeps_the_old_key_working_for_the_overlap(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    old = scheme.source
    listed = client.get(_keys_url(scheme), headers=_admin(scheme))
    assert listed.status_code == 200, listed.json
    assert [(k["state"], k["key_prefix"], k["expires_at"]) for k in listed.json] == [
        ("active", None, None)]

    rotated = client.post(_keys_url(scheme), json={}, headers=_admin(scheme))
    assert rotated.status_code == 201, rotated.json
    new = {"api_key": rotated.json["api_key"], "signing_secret": rotated.json["signing_secret"]}
    assert new["api_key"] != old["api_key"] and new["signing_secret"] != old["signing_secret"]
    assert rotated.json["key_prefix"] == new["api_key"][:12]
    assert rotated.json["state"] == "active" and rotated.json["expires_at"] is None
    ends = datetime.fromisoformat(rotated.json["previous_keys_end_at"])
    assert timedelta(days=6, hours=23) < ends - datetime.now(UTC) <= timedelta(days=7)

    # Both keys work, each with its own secret; while both work, either secret signs for
    # the source (a sender may switch its key and its secret at different moments).
    assert [r["status"] for r in _send(client, old, "old-key").json["results"]] == ["accepted"]
    assert [r["status"] for r in _send(client, new, "new-key").json["results"]] == ["accepted"]
    mixed = _send(client, new, "mixed", secret=old["signing_secret"])
    assert [r["status"] for r in mixed.json["results"]] == ["accepted"]

    listed = client.get(_keys_url(scheme), headers=_admin(scheme)).json
    assert [k["state"] for k in listed] == ["active", "expiring"]
    assert listed[1]["expires_at"] == rotated.json["previous_keys_end_at"]
    raw = json.dumps(listed)
    assert "signing_secret" not in raw and "api_key" not in raw
    for secret in (old["api_key"], old["signing_secret"], *new.values()):
        assert secret not in raw

    # The overlap ends: the old key stops, saying why; nothing it sends is recorded.
    with app.app_context():
        db.session.execute(update(SourceKey).where(SourceKey.key_prefix.is_(None))
                           .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        db.session.commit()
    before = counts(app)
    late = assert_error(_send(client, old, "after-overlap"), 401)
    assert "expired" in late["message"] and "newer key" in late["message"]
    # Nor does its secret, beside the newer key.
    late_secret = _send(client, new, "old-secret-late", secret=old["signing_secret"])
    assert "does not match" in assert_error(late_secret, 401)["message"]
    assert counts(app) == before
    assert [k["state"] for k in client.get(_keys_url(scheme), headers=_admin(scheme)).json] == [
        "active", "expired"]

    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "rotate_key")
                                   ).one()
        assert entry.details["overlap_days"] == 7
        assert new["api_key"] not in json.dumps(entry.details)


def test_rotation_with_no_overlap_stops_the_old_key_at_once(
    client: FlaskClient, scheme: Scheme
) -> None:
    rotated = client.post(_keys_url(scheme), json={"overlap_days": 0}, headers=_admin(scheme))
    assert rotated.status_code == 201, rotated.json
    assert_error(_send(client, scheme.source, "old"), 401)
    assert _send(client, rotated.json, "new").status_code == 200
    for bad in ({"overlap_days": -1}, {"overlap_days": 91}, {"overlap_days": "week"}):
        error = assert_error(client.post(_keys_url(scheme), json=bad, headers=_admin(scheme)),
                             422)
        assert "overlap_days" in error["errors"]


def test_a_retired_key_stops_at_once(client: FlaskClient, app: Flask, scheme: Scheme) -> None:
    rotated = client.post(_keys_url(scheme), headers=_admin(scheme)).json
    assert _send(client, rotated, "before").status_code == 200
    deleted = client.delete(f"{_keys_url(scheme)}/{rotated['id']}", headers=_admin(scheme))
    assert deleted.status_code == 204
    error = assert_error(_send(client, rotated, "after"), 401)
    assert "retired" in error["message"]
    # The older key, still in its overlap, works; retiring again changes nothing.
    assert _send(client, scheme.source, "old-still").status_code == 200
    assert client.delete(f"{_keys_url(scheme)}/{rotated['id']}",
                         headers=_admin(scheme)).status_code == 204
    states = {k["id"]: k["state"] for k in client.get(_keys_url(scheme),
                                                      headers=_admin(scheme)).json}
    assert states[rotated["id"]] == "retired"
    with app.app_context():
        assert len(db.session.scalars(select(AuditEntry)
                                      .where(AuditEntry.action == "retire_key")).all()) == 1
    # Unknown keys, and another source's, are 404.
    other = client.post("/v1/admin/sources", headers=_admin(scheme),
                        json={"name": "Arriva", "action_types": ["bus_journey"]}).json
    other_keys = client.get(f"/v1/admin/sources/{other['id']}/keys", headers=_admin(scheme)).json
    assert_error(client.delete(f"{_keys_url(scheme)}/{other_keys[0]['id']}",
                               headers=_admin(scheme)), 404)
    assert_error(client.delete(f"{_keys_url(scheme)}/{uuid.uuid4()}", headers=_admin(scheme)),
                 404)
    assert _send(client, other, "arriva").status_code == 200


def test_keys_are_for_scheme_managers(client: FlaskClient, app: Flask, scheme: Scheme) -> None:
    reviewer = bearer(staff_token(client, app, "reviewer"))
    assert_error(client.get(_keys_url(scheme), headers=reviewer), 403)
    assert_error(client.post(_keys_url(scheme), headers=reviewer), 403)
    assert_error(client.get(_keys_url(scheme)), 401)
    manager = bearer(staff_token(client, app, "scheme_manager"))
    assert client.post(_keys_url(scheme), headers=manager).status_code == 201
    assert_error(client.get(f"/v1/admin/sources/{uuid.uuid4()}/keys", headers=manager), 404)


def test_a_replayed_batch_and_revocations_with_a_rotated_key(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    rotated = client.post(_keys_url(scheme), headers=_admin(scheme)).json
    raw = json.dumps({"items": [tap("trip-1", CARD, daytime(1, 9)),
                                tap("trip-2", CARD, daytime(1, 11))]}).encode()
    from rewards.security import signature_header

    headers = {"X-Api-Key": rotated["api_key"],
               "X-Signature": signature_header(rotated["signing_secret"], raw)}
    first = client.post("/v1/source/actions", data=raw, content_type="application/json",
                        headers=headers)
    assert [r["status"] for r in first.json["results"]] == ["accepted", "accepted"]
    before = counts(app)
    # The very same request again (inside the signature's 300 s): each item a duplicate.
    replay = client.post("/v1/source/actions", data=raw, content_type="application/json",
                         headers=headers)
    assert replay.status_code == 200
    assert [(r["status"], r["action_id"]) for r in replay.json["results"]] == [
        ("duplicate", r["action_id"]) for r in first.json["results"]]
    assert counts(app) == before
    # Revocations take the same keys; the old key revokes what the new one sent.
    revoked = signed_post(client, scheme.source, {"external_refs": ["trip-1"]},
                          path="/v1/source/actions/revocations")
    assert revoked.status_code == 200, revoked.json
    assert revoked.json["results"][0]["status"] == "revoked"
    # A ref no database could hold is refused whole, not a 500.
    before = counts(app)
    odd = signed_post(client, rotated, {"external_refs": ["trip-2", "nul\u0000ref"]},
                      path="/v1/source/actions/revocations")
    assert "1" in assert_error(odd, 422)["errors"]["external_refs"]
    assert counts(app) == before


# -- settings ------------------------------------------------------------------------------

def test_allowed_types_window_and_active(client: FlaskClient, app: Flask,
                                         scheme: Scheme) -> None:
    url = f"/v1/admin/sources/{scheme.source['id']}"
    assert client.post("/v1/admin/action-types", headers=_admin(scheme), json={
        "code": "cycle_hire", "name": "Cycle hire", "category": "travel"}).status_code == 201
    shown = client.get(url, headers=_admin(scheme)).json
    assert shown["action_types"] == ["bus_journey"] and shown["max_age_days"] is None

    changed = client.patch(url, headers=_admin(scheme), json={"action_types": ["cycle_hire"]})
    assert changed.status_code == 200, changed.json
    result = _send(client, scheme.source, "bus").json["results"][0]
    assert result["status"] == "rejected"
    assert "may not send 'bus_journey'" in result["reason"] and "cycle_hire" in result["reason"]
    error = assert_error(client.patch(url, headers=_admin(scheme),
                                      json={"action_types": ["taxi"]}), 422)
    assert error["errors"] == {"action_types": ["unknown action type 'taxi'"]}

    client.patch(url, headers=_admin(scheme), json={"action_types": ["bus_journey"],
                                                    "max_age_days": 2})
    old = signed_post(client, scheme.source, {"items": [tap("old", CARD, daytime(3, 10)),
                                                        tap("recent", CARD, daytime(1, 10))]})
    assert [(r["status"], r["reason"]) for r in old.json["results"]] == [
        ("rejected", "occurred_at is older than 2 days"), ("accepted", None)]

    assert client.patch(url, headers=_admin(scheme), json={"active": False}).status_code == 200
    before = counts(app)
    error = assert_error(_send(client, scheme.source, "inactive"), 401)
    assert "not active" in error["message"]
    assert counts(app) == before
    assert_error(client.patch(url, headers=bearer(staff_token(client, app, "analyst")),
                              json={"active": True}), 403)


# -- CSV uploads ---------------------------------------------------------------------------

HEADER = "external_ref,card_kind,card_number,type,occurred_at,attributes"


def _when(days: int, hour: int) -> str:
    return daytime(days, hour).isoformat().replace("+00:00", "Z")


def _upload(client: FlaskClient, scheme: Scheme, content: bytes | str,
            filename: str = "taps.csv", headers: dict[str, str] | None = None) -> Any:
    data = content.encode() if isinstance(content, str) else content
    return client.post(f"/v1/admin/sources/{scheme.source['id']}/imports",
                       data={"file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data",
                       headers=headers or _admin(scheme))


def _report(client: FlaskClient, scheme: Scheme, upload: dict[str, Any]) -> list[dict]:
    response = client.get(upload["report_url"], headers=_admin(scheme))
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def _rows() -> Iterator[str]:
    yield HEADER
    yield f'good-1,travel_card,{CARD},bus_journey,{_when(1, 9)},"{{""distance_km"": 3}}"'
    yield f"no-attrs,travel_card,{CARD},bus_journey,{_when(1, 10)},"
    yield f'good-1,travel_card,{CARD},bus_journey,{_when(1, 11)},"{{""distance_km"": 3}}"'
    yield f"stranger,travel_card,9999 8888 7777 6666,bus_journey,{_when(1, 9)},"
    yield f"taxi,travel_card,{CARD},taxi_ride,{_when(1, 9)},"
    yield f"when,travel_card,{CARD},bus_journey,yesterday,"
    yield f"bad-json,travel_card,{CARD},bus_journey,{_when(1, 9)},{{distance: 3}}"
    yield f"a-list,travel_card,{CARD},bus_journey,{_when(1, 9)},[1]"
    yield f"short,travel_card,{CARD},bus_journey"
    yield f"no-card,travel_card,,bus_journey,{_when(1, 9)},"
    yield ""
    yield f"nul-\x00-ref,travel_card,{CARD},bus_journey,{_when(1, 9)},"
    yield f'=HYPERLINK("x"),travel_card,{CARD},bus_journey,{_when(1, 12)},'
    yield f'good-2,travel_card,{CARD},bus_journey,{_when(2, 9)},"{{""distance_km"": 5}}"'


def test_csv_rows_are_imported_and_each_row_reported(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    before = counts(app)
    response = _upload(client, scheme, "\r\n".join(_rows()) + "\r\n")
    assert response.status_code == 202, response.json
    upload = response.json
    assert upload["rows"] == 13 and upload["filename"] == "taps.csv"
    # The job ran after the request (in-process without Redis).
    shown = client.get(f"/v1/admin/sources/{scheme.source['id']}/imports/{upload['id']}",
                       headers=_admin(scheme)).json
    assert shown["status"] == "done", shown
    assert (shown["rows_done"], shown["accepted"], shown["duplicate"], shown["rejected"]) == (
        13, 4, 1, 8)
    assert shown["points"] == 20  # good-1 and good-2 (no distance: no points)

    report = _report(client, scheme, upload)
    by_row = {int(r["row"]): r for r in report}
    assert list(by_row) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15]  # blank 12 skipped
    assert [by_row[n]["status"] for n in by_row] == [
        "accepted", "accepted", "duplicate", "rejected", "rejected", "rejected", "rejected",
        "rejected", "rejected", "rejected", "rejected", "accepted", "accepted"]
    assert "earlier item of this batch" in by_row[4]["reason"]
    assert by_row[4]["action_id"] == by_row[2]["action_id"]
    assert "unknown card" in by_row[5]["reason"]
    assert "taxi_ride" in by_row[6]["reason"]
    assert "RFC 3339" in by_row[7]["reason"]
    assert "attributes is not valid JSON" in by_row[8]["reason"]
    assert "JSON object" in by_row[9]["reason"]
    assert "4 fields" in by_row[10]["reason"] and "6" in by_row[10]["reason"]
    assert by_row[11]["reason"] == "card_number is empty"
    assert by_row[13]["external_ref"] == "nul-\ufffd-ref"
    assert "control characters" in by_row[13]["reason"]
    assert by_row[14]["external_ref"].startswith("'=")  # not a formula in a spreadsheet
    assert all(r["reason"] == "" for r in report if r["status"] == "accepted")

    after = counts(app)
    assert after["actions"] - before["actions"] == 4
    with app.app_context():
        actions = db.session.scalars(select(Action)).all()
        assert {a.origin for a in actions} == {"csv"}
        assert {str(a.id) for a in actions} == {r["action_id"] for r in report
                                                if r["status"] == "accepted"}
        stored = db.session.get(SourceImport, uuid.UUID(upload["id"]))
        assert stored.content is None  # card numbers in clear are not kept
        assert stored.finished_at is not None

    # The same file again: every good row is a duplicate; nothing changes.
    again = _upload(client, scheme, "\r\n".join(_rows()))
    assert again.status_code == 202
    shown = client.get(f"/v1/admin/sources/{scheme.source['id']}/imports/{again.json['id']}",
                       headers=_admin(scheme)).json
    assert (shown["accepted"], shown["duplicate"], shown["rejected"]) == (0, 5, 8)
    assert counts(app) == after
    listed = client.get(f"/v1/admin/sources/{scheme.source['id']}/imports",
                        headers=_admin(scheme))
    assert [u["id"] for u in listed.json] == [again.json["id"], upload["id"]]


def test_a_csv_that_cannot_be_imported_is_refused_whole(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    good_row = f"r1,travel_card,{CARD},bus_journey,{_when(1, 9)},"
    cases = {
        "empty": ("", "empty"),
        "header only": (HEADER + "\n", "no rows"),
        "missing column": ("external_ref,card_kind,card_number,type\nr,t,1,b\n",
                           "missing occurred_at"),
        "misspelt column": (HEADER.replace("occurred_at", "occured_at") + "\n" + good_row,
                            "'occured_at'"),
        "not utf-8": ((HEADER + "\n" + good_row).encode("utf-16"), "UTF-8"),
        "broken quote": (HEADER + '\n"r1,travel_card\n' + good_row, "valid CSV"),
    }
    before = counts(app, SourceImport)
    for case, (content, words) in cases.items():
        error = assert_error(_upload(client, scheme, content), 422)
        assert words in error["message"], (case, error)
    assert "file" in assert_error(client.post(
        f"/v1/admin/sources/{scheme.source['id']}/imports", data={},
        content_type="multipart/form-data", headers=_admin(scheme)), 422)["errors"]
    assert counts(app, SourceImport) == before

    # A UTF-8 file with a byte-order mark (as spreadsheets save it) is fine.
    bom = _upload(client, scheme, "\ufeff" + HEADER + "\n" + good_row)
    assert bom.status_code == 202, bom.json


def test_csv_size_and_row_limits_are_413(client: FlaskClient, app: Flask,
                                         scheme: Scheme) -> None:
    config = app.config
    saved = config["CSV_IMPORT_MAX_BYTES"], config["CSV_IMPORT_MAX_ROWS"]
    rows = [HEADER] + [f"r{n},travel_card,{CARD},bus_journey,{_when(1, 9)},"
                       for n in range(30)]
    content = "\n".join(rows)
    before = counts(app, SourceImport)
    try:
        config["CSV_IMPORT_MAX_ROWS"] = 20
        assert "at most 20 rows" in assert_error(_upload(client, scheme, content), 413)["message"]
        config["CSV_IMPORT_MAX_ROWS"] = 1000
        config["CSV_IMPORT_MAX_BYTES"] = 1024
        assert "1 kB" in assert_error(_upload(client, scheme, content), 413)["message"]
        # Far over: refused before the body is read at all.
        assert_error(_upload(client, scheme, content * 100), 413)
    finally:
        config["CSV_IMPORT_MAX_BYTES"], config["CSV_IMPORT_MAX_ROWS"] = saved
    assert counts(app, SourceImport) == before


def test_csv_uploads_are_for_scheme_managers_and_active_sources(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    content = HEADER + f"\nr1,travel_card,{CARD},bus_journey,{_when(1, 9)},\n"
    assert_error(_upload(client, scheme, content,
                         headers=bearer(staff_token(client, app, "reviewer"))), 403)
    done = _upload(client, scheme, content).json
    other = client.post("/v1/admin/sources", headers=_admin(scheme),
                        json={"name": "Arriva", "action_types": ["bus_journey"]}).json
    assert_error(client.get(f"/v1/admin/sources/{other['id']}/imports/{done['id']}",
                            headers=_admin(scheme)), 404)
    assert_error(client.get(f"/v1/admin/sources/{other['id']}/imports/{done['id']}/report.csv",
                            headers=_admin(scheme)), 404)
    client.patch(f"/v1/admin/sources/{scheme.source['id']}", headers=_admin(scheme),
                 json={"active": False})
    assert "not active" in assert_error(_upload(client, scheme, content), 409)["message"]
    with app.app_context():
        rows = db.session.scalars(select(SourceImportRow)).all()
        assert [(r.row_number, r.status) for r in rows] == [(2, "accepted")]
