"""Sources' request signatures: the X-Signature header's layout (several v1= entries, as a
sender in the middle of a key rotation sends), which secrets verify it, and which
headers are refused as malformed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

import rewards.security
from rewards.extensions import db
from rewards.models.source import SourceKey
from rewards.security import (
    MAX_SIGNATURES,
    SIGNATURE_FORMAT,
    check_signature,
    parse_signature,
    sign_body,
)
from tests.helpers import Scheme, bearer, build_scheme, tap
from tests.ways_in import assert_error, counts, daytime, resident

CARD = "6335 0012 3456 7890"
BODY = b'{"items": []}'
OLD, NEW, OTHER = "old-secret", "new-secret", "someone-elses-secret"
NOW = int(time.time())


def _v1(secret: str, t: int = NOW, body: bytes = BODY) -> str:
    return f"v1={sign_body(secret, t, body)}"


# -- the header, without a request ---------------------------------------------------------

@pytest.fixture(autouse=True)
def frozen_now(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks below run at NOW, however long after import they run (the HTTP tests
    further down sign at the real time instead)."""
    if "client" not in request.fixturenames:
        monkeypatch.setattr(rewards.security, "time", SimpleNamespace(time=lambda: float(NOW)))

@pytest.mark.parametrize("header", [
    f"t={NOW},{_v1(NEW)}",
    f"t={NOW},{_v1(OLD)},{_v1(NEW)}",  # the good entry last
    f"t={NOW},{_v1(NEW)},{_v1(OTHER)}",  # ... first
    f"t={NOW},{_v1(OTHER)},{_v1(NEW)},{_v1(OTHER)}",  # ... in the middle
    f"{_v1(NEW)},t={NOW}",  # any order
    f" t = {NOW} , {_v1(NEW)} ",  # spaces around the pieces
    f"T={NOW},V1={sign_body(NEW, NOW, BODY).upper()}",  # names and hex in upper case
    f"t={NOW},v0=whatever,{_v1(NEW)}",  # another scheme's entry is skipped
])
def test_any_v1_entry_under_any_working_secret_verifies(header: str) -> None:
    assert check_signature([NEW], header, BODY, 300) is None
    # With the old secret still working too, the same header verifies as well.
    assert check_signature([OLD, NEW], header, BODY, 300) is None


def test_a_rotating_sender_signing_with_both_secrets_passes_under_either() -> None:
    both = f"t={NOW},{_v1(OLD)},{_v1(NEW)}"
    assert check_signature([OLD], both, BODY, 300) is None
    assert check_signature([NEW], both, BODY, 300) is None
    # A secret that no longer works verifies nothing, however many entries there are.
    assert check_signature([OTHER], both, BODY, 300) == "X-Signature does not match the body"
    assert check_signature([], both, BODY, 300) == "X-Signature does not match the body"


def test_every_entry_is_checked_against_the_body_and_timestamp_it_names() -> None:
    # Each entry signs another body or another time: none is good for this request.
    header = f"t={NOW},{_v1(NEW, body=b'{}')},{_v1(NEW, t=NOW - 1)}"
    assert check_signature([NEW], header, BODY, 300) == "X-Signature does not match the body"


@pytest.mark.parametrize("header", [
    "abc",
    f"t={NOW}",  # no v1
    _v1(NEW),  # no t
    f"t={NOW},t={NOW},{_v1(NEW)}",  # two timestamps
    f"t=soon,{_v1(NEW)}",
    f"t=\u0661\u0662\u0663,{_v1(NEW)}",  # Unicode digits
    f"t=1{'0' * 12},{_v1(NEW)}",  # too large for a moment
    f"t={NOW},v1=0f",  # not a whole digest
    f"t={NOW},v1={'z' * 64}",  # not hex
    f"t={NOW},v1=\u00e9\u00e9",
    f"t={NOW},{_v1(NEW)},v1=",  # an empty entry beside a good one
    f"t={NOW},{_v1(NEW)},",  # a trailing comma
    f"t={NOW},{_v1(NEW)},garbage",  # an element without "="
    f"t={NOW}," + ",".join([_v1(OTHER)] * MAX_SIGNATURES + [_v1(NEW)]),  # too many
    f"t={NOW},{_v1(NEW)}," + ",".join(["v0=x"] * 9),  # too many elements
])
def test_malformed_headers_are_refused_saying_the_layout(header: str) -> None:
    assert parse_signature(header) is None
    assert check_signature([NEW], header, BODY, 300) == SIGNATURE_FORMAT


def test_up_to_the_cap_of_entries_is_accepted() -> None:
    header = f"t={NOW}," + ",".join([_v1(OTHER)] * (MAX_SIGNATURES - 1) + [_v1(NEW)])
    assert check_signature([NEW], header, BODY, 300) is None


def test_the_timestamp_may_be_off_by_the_tolerance_either_way_and_no_more() -> None:
    for age in (-300, 0, 300):
        assert check_signature([NEW], f"t={NOW - age},{_v1(NEW, t=NOW - age)}", BODY, 300) \
            is None, age
    for age in (-301, 301, -86400, 86400):
        problem = check_signature([NEW], f"t={NOW - age},{_v1(NEW, t=NOW - age)}", BODY, 300)
        assert problem == "X-Signature timestamp is more than 300 seconds from now", age


# -- through HTTP, with a source's rotated keys ---------------------------------------------

@pytest.fixture
def scheme(client: FlaskClient, app: Flask) -> Scheme:
    built = build_scheme(client, app)
    resident(client, app, "amira@example.org", CARD)
    return built


def _post(client: FlaskClient, api_key: str, raw: bytes, signature: str) -> Any:
    return client.post("/v1/source/actions", data=raw, content_type="application/json",
                       headers={"X-Api-Key": api_key, "X-Signature": signature})


def _raw(ref: str) -> bytes:
    return json.dumps({"items": [tap(ref, CARD, daytime(1, 10))]}).encode()


def _signed(raw: bytes, *secrets: str) -> str:
    t = int(time.time())
    return f"t={t}," + ",".join(f"v1={sign_body(secret, t, raw)}" for secret in secrets)


def _rotate(client: FlaskClient, scheme: Scheme) -> dict[str, Any]:
    rotated = client.post(f"/v1/admin/sources/{scheme.source['id']}/keys", json={},
                          headers=bearer(scheme.admin))
    assert rotated.status_code == 201, rotated.json
    return rotated.json


def _accepted(response: Any) -> list[str]:
    assert response.status_code == 200, response.json
    return [r["status"] for r in response.json["results"]]


def test_during_a_rotation_a_batch_signed_with_both_secrets_is_accepted_with_either_key(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    old, new = scheme.source, _rotate(client, scheme)
    for n, (key, order) in enumerate([(new, (old, new)), (new, (new, old)),
                                      (old, (old, new)), (old, (new, old))]):
        raw = _raw(f"both-{n}")
        secrets = [k["signing_secret"] for k in order]
        assert _accepted(_post(client, key["api_key"], raw, _signed(raw, *secrets))) == [
            "accepted"], n
    # A sender whose key and secret were switched at different moments: the new key with
    # only the old secret's signature (or the other way round) is still the source's.
    raw = _raw("new-key-old-secret")
    assert _accepted(_post(client, new["api_key"], raw,
                           _signed(raw, old["signing_secret"]))) == ["accepted"]
    raw = _raw("old-key-new-secret")
    assert _accepted(_post(client, old["api_key"], raw,
                           _signed(raw, new["signing_secret"]))) == ["accepted"]


def test_a_secret_whose_key_stopped_verifies_nothing(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    old, new = scheme.source, _rotate(client, scheme)
    # The overlap ends: the old key's secret no longer signs for the source, even beside
    # the new key.
    with app.app_context():
        db.session.execute(update(SourceKey).where(SourceKey.key_prefix.is_(None))
                           .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        db.session.commit()
    before = counts(app)
    raw = _raw("late")
    error = assert_error(_post(client, new["api_key"], raw,
                               _signed(raw, old["signing_secret"])), 401)
    assert error["message"] == "X-Signature does not match the body"
    assert counts(app) == before
    # Both signatures, the new one good: accepted.
    assert _accepted(_post(client, new["api_key"], raw,
                           _signed(raw, old["signing_secret"], new["signing_secret"]))) == [
        "accepted"]
    # A retired key's secret likewise.
    newer = _rotate(client, scheme)
    retired = client.delete(f"/v1/admin/sources/{scheme.source['id']}/keys/{new['id']}",
                            headers=bearer(scheme.admin))
    assert retired.status_code == 204
    raw = _raw("retired-secret")
    assert_error(_post(client, newer["api_key"], raw, _signed(raw, new["signing_secret"])),
                 401)
    assert _accepted(_post(client, newer["api_key"], raw,
                           _signed(raw, newer["signing_secret"]))) == ["accepted"]


def test_another_sources_secret_does_not_sign_for_this_one(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    other = client.post("/v1/admin/sources", headers=bearer(scheme.admin),
                        json={"name": "Arriva", "action_types": ["bus_journey"]}).json
    before = counts(app)
    raw = _raw("cross")
    # Source A's key with source B's secret; B's key with A's secret.
    assert_error(_post(client, scheme.source["api_key"], raw,
                       _signed(raw, other["signing_secret"])), 401)
    assert_error(_post(client, other["api_key"], raw,
                       _signed(raw, scheme.source["signing_secret"])), 401)
    assert counts(app) == before


def test_malformed_headers_are_a_401_in_the_error_shape_and_record_nothing(
    client: FlaskClient, app: Flask, scheme: Scheme
) -> None:
    raw = _raw("malformed")
    good = _signed(raw, scheme.source["signing_secret"])
    before = counts(app)
    for header in (good + ",", good + ",v1=" + "0" * 63, good + ",v1=" + "0" * 128,
                   f"{good},t=1", f"{good},,",
                   good + "".join(f",v1={'0' * 64}" for _ in range(MAX_SIGNATURES))):
        error = assert_error(_post(client, scheme.source["api_key"], raw, header), 401)
        assert error["message"] == SIGNATURE_FORMAT, header
        assert "results" not in error
    assert counts(app) == before
    assert _accepted(_post(client, scheme.source["api_key"], raw, good)) == ["accepted"]
