"""The published contract: operationIds, declared errors with a reason, typed and
required response fields, the webhook callback; and the reasons the API really sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from rewards.api.operation_ids import OPERATION_IDS
from rewards.reasons import Reason
from workers.fulfilment import request_body

from .reward_support import (
    admin_headers,
    make_offer,
    make_partner,
    partner_user,
    resident,
    till,
)

METHODS = ("get", "post", "put", "patch", "delete")


def _spec(client: FlaskClient) -> dict[str, Any]:
    return client.get("/openapi.json").json


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, operation) for path, item in spec["paths"].items()
            for method, operation in item.items() if method in METHODS]


def test_every_operation_has_its_hand_chosen_unique_operation_id(client: FlaskClient) -> None:
    operations = _operations(_spec(client))
    ids = [operation.get("operationId") for _, _, operation in operations]
    missing = [(m, p) for m, p, operation in operations if "operationId" not in operation]
    assert missing == [], f"add these to rewards/api/operation_ids.py: {missing}"
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for method, path, operation in operations:
        assert operation["operationId"] == OPERATION_IDS[(method, path)]
    served = {(method, path) for method, path, _ in operations}
    assert set(OPERATION_IDS) - served == set(), "operation_ids.py names routes that do not exist"


def test_error_statuses_are_declared_with_the_shared_error_body(client: FlaskClient) -> None:
    spec = _spec(client)
    responses = spec["components"]["responses"]
    for method, path, operation in _operations(spec):
        declared = operation["responses"]
        for status in ("414", "429", "503"):
            assert status in declared, (method, path, status)
        if operation.get("security"):
            assert {"401", "403"} <= set(declared), (method, path)
        if "{" in path:
            assert "404" in declared, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(declared), (method, path)
        for status, response in declared.items():
            if status == "default" or int(status) < 400:
                continue
            if "$ref" in response:
                response = responses[response["$ref"].rsplit("/", 1)[1]]
            schema = response["content"]["application/json"]["schema"]
            if (path, status) == ("/readyz", "503"):  # a load balancer's, with the checks
                assert schema == {"$ref": "#/components/schemas/Readiness"}
                continue
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    error = spec["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "status", "reason", "message"}
    assert error["properties"]["reason"]["enum"] == [reason.value for reason in Reason]


def test_response_schemas_are_typed_and_list_required_fields(client: FlaskClient) -> None:
    spec = _spec(client)
    schemas = spec["components"]["schemas"]
    for name in ("Reward", "Voucher", "RedemptionOut", "CatalogueOffer", "Balance",
                 "LedgerLine", "Action", "Tokens", "OfferOut"):
        schema = schemas[name]
        assert set(schema["required"]) == set(schema["properties"]), name
        for field, prop in schema["properties"].items():
            assert {"type", "$ref"} & set(prop), (name, field, prop)
    assert schemas["Reward"]["properties"]["partner"] == {
        "$ref": "#/components/schemas/PartnerBrief"}
    assert schemas["Voucher"]["properties"]["valid"]["type"] == "boolean"
    for name, field in (("Reward", "status"), ("Voucher", "status"), ("Action", "status"),
                        ("LedgerLine", "kind"), ("OfferOut", "status"),
                        ("RedemptionOut", "channel"), ("Tokens", "role")):
        assert schemas[name]["properties"][field]["enum"], (name, field)


def test_files_are_declared_with_their_media_types(client: FlaskClient) -> None:
    paths = _spec(client)["paths"]
    qr = paths["/v1/me/rewards/{reward_id}/qr.svg"]["get"]["responses"]["200"]["content"]
    assert list(qr) == ["image/svg+xml"]
    report = paths["/v1/admin/sources/{source_id}/imports/{import_id}/report.csv"]["get"]
    assert list(report["responses"]["200"]["content"]) == ["text/csv"]
    settlement = paths["/v1/partner/settlements"]["get"]["responses"]["200"]["content"]
    assert set(settlement) == {"application/json", "text/csv"}


def test_the_fulfilment_webhook_is_a_callback_matching_what_workers_send(
        client: FlaskClient, app: Flask) -> None:
    spec = _spec(client)
    callbacks = spec["paths"]["/v1/me/rewards"]["post"]["callbacks"]
    (operation,) = [item["post"] for item in callbacks["fulfilment"].values()]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"X-Signature", "Idempotency-Key"}
    schema = spec["components"]["schemas"]["FulfilmentRequest"]
    with app.app_context():
        sent = json.loads(request_body("r", "p", "m", "o", "Swim", datetime.now(UTC)))
    assert set(sent) == set(schema["required"]) == set(schema["properties"])
    assert set(sent["offer"]) == set(spec["components"]["schemas"]["OfferBrief"]["properties"])


def test_refusals_carry_their_reason(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=50, stock=1)
    poor = resident(client, app, points=10)
    refused = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                          headers=poor.headers)
    assert (refused.status_code, refused.json["reason"]) == (409, "insufficient_points")

    rich = resident(client, app, points=200)
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                          headers=rich.headers)
    assert claimed.status_code == 202, claimed.json
    other = resident(client, app, points=200)
    sold_out = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                           headers=other.headers)
    assert (sold_out.status_code, sold_out.json["reason"]) == (409, "sold_out")

    code = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=rich.headers).json["code"]
    first = client.post("/v1/partner/redemptions", json={"code": code}, headers=till(partner))
    assert first.status_code == 201, first.json
    again = client.post("/v1/partner/redemptions", json={"code": code}, headers=till(partner))
    assert (again.status_code, again.json["reason"]) == (409, "voucher_used")
    unknown = client.post("/v1/partner/redemptions", json={"code": "ZZZZZZZZZZ"},
                          headers=till(partner))
    assert (unknown.status_code, unknown.json["reason"]) == (404, "voucher_not_found")
    no_auth = client.get("/v1/me", headers={})
    assert (no_auth.status_code, no_auth.json["reason"]) == (401, "unauthenticated")
    invalid = client.post("/v1/me/rewards", json={"offer_id": "nope"}, headers=rich.headers)
    assert (invalid.status_code, invalid.json["reason"]) == (422, "invalid_request")


def test_months_outside_the_calendar_are_422_not_500(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    for month in ("0000-01", "9999-12", "0001-01"):
        for path, headers in (("/v1/admin/settlements", admin),
                              ("/v1/partner/redemptions", till(partner)),
                              ("/v1/partner/settlements", till(partner))):
            response = client.get(path, query_string={"month": month}, headers=headers)
            assert response.status_code == 422, (path, month, response.json)
            assert "month" in response.json["errors"]


def test_page_numbers_past_64_bits_are_422_on_every_list(client: FlaskClient,
                                                         app: Flask) -> None:
    member = resident(client, app)
    admin = admin_headers(client, app, "admin")
    partner = make_partner(client, admin)
    spec = _spec(client)
    for method, path, operation in _operations(spec):
        names = {p["name"] for p in operation.get("parameters", [])}
        if method != "GET" or "page" not in names or "{" in path:
            continue
        headers = (member.headers if path.startswith(("/v1/me", "/v1/offers", "/v1/charities"))
                   else till(partner) if path.startswith("/v1/partner") else admin)
        for page in (2**63, 2**64 + 1, 10**30):
            response = client.get(path, query_string={"page": page}, headers=headers)
            assert response.status_code == 422, (path, page, response.json)
            assert "page" in response.json["errors"], response.json
        last = client.get(path, query_string={"page": 100_000}, headers=headers)
        assert last.status_code == 200, (path, last.json)
        assert last.json == []


def test_a_number_longer_than_python_reads_is_422_on_every_json_body(client: FlaskClient,
                                                                     app: Flask) -> None:
    """JSON allows an integer of any length; Python refuses to read one longer than
    sys.get_int_max_str_digits() (4,300 digits). Every operation taking a JSON body
    answers that with a 422 naming the body, having changed nothing, not a 500."""
    member = resident(client, app, points=50)
    admin = admin_headers(client, app, "admin")
    partner = make_partner(client, admin)
    user = partner_user(client, app, partner["id"])
    spec = _spec(client)
    huge = "1" + "0" * 5000
    before = _row_counts()
    refused = []
    for method, path, operation in _operations(spec):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content or path.startswith("/v1/source"):
            continue  # sources' batches are read whole and answered item by item
        headers = (member.headers if path.startswith(("/v1/me", "/v1/offers"))
                   else user if path.startswith("/v1/partner")
                   else {} if path.startswith("/v1/auth/") and "security" not in operation
                   else member.headers if path.startswith("/v1/auth/")
                   else admin)
        filled = path
        for name in [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]:
            filled = filled.replace(f"{{{name}}}", "00000000-0000-4000-8000-000000000000")
        raw = f'{{"points": {huge}, "name": {huge}}}'.encode()
        response = client.open(filled, method=method, data=raw, headers=headers,
                               content_type="application/json")
        assert response.status_code < 500, (method, path, response.json)
        assert response.json["code"] == response.status_code, (method, path)
        if response.status_code == 422:
            assert response.json["errors"] == {"body": [
                "The body holds a number longer than 4300 digits."]}, (method, path)
            refused.append(path)
    assert len(refused) > 30, refused  # the rest refuse the caller before reading the body
    assert {"/v1/auth/otp", "/v1/me", "/v1/admin/rules", "/v1/partner/redemptions"} \
        <= set(refused)
    assert _row_counts() == before


def _row_counts() -> dict[str, int]:
    from sqlalchemy import func, select

    from rewards.extensions import db
    from rewards.models import Base

    with db.engine.connect() as connection:
        return {table.name: connection.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}


def test_nul_characters_in_bodies_are_422_and_change_nothing(client: FlaskClient,
                                                             app: Flask) -> None:
    member = resident(client, app, display_name="Ada")
    response = client.patch("/v1/me", json={"display_name": "A\x00da"}, headers=member.headers)
    assert response.status_code == 422, response.json
    assert response.json["errors"] == {"display_name": [
        "Must not contain NUL characters or half of a UTF-16 surrogate pair."]}
    assert client.get("/v1/me", headers=member.headers).json["display_name"] == "Ada"
    ward = client.patch("/v1/me", json={"ward": "Headingley\x00"}, headers=member.headers)
    assert ward.status_code == 422
    admin = admin_headers(client, app)
    partner = client.post("/v1/admin/partners", json={"name": "Cafe\x00", "kind": "business"},
                          headers=admin)
    assert partner.status_code == 422 and "name" in partner.json["errors"]
    made = make_partner(client, admin, name="Cafe")
    patched = client.patch(f"/v1/admin/partners/{made['id']}",
                           json={"description": "x\x00"}, headers=admin)
    assert patched.status_code == 422
    offer = client.post("/v1/admin/offers", json={
        "partner_id": made["id"], "title": "T", "cost_points": 5,
        "translations": {"cy": {"title": "\x00"}}}, headers=admin)
    assert offer.status_code == 422 and "translations" in offer.json["errors"]
    query = client.get("/v1/admin/offers", query_string={"status": "live\x00"}, headers=admin)
    assert query.status_code == 422


def test_an_over_long_url_is_a_json_414(client: FlaskClient, app: Flask) -> None:
    member = resident(client, app)
    response = client.get("/v1/me/ledger?" + "x=1&" * 3000, headers=member.headers)
    assert response.status_code == 414
    assert response.json["reason"] == "uri_too_long"


def test_an_app_can_tell_refresh_from_log_in_again(client: FlaskClient, app: Flask) -> None:
    """A token that is not good any more (expired, tampered) says invalid_token: refresh
    and try again. A login that ended (logged out, password changed, account gone)
    says session_ended: refreshing will not help."""
    member = resident(client, app)
    assert client.get("/v1/me", headers=member.headers).status_code == 200
    token = member.headers["Authorization"].split(" ", 1)[1]
    tampered = client.get("/v1/me", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
    assert (tampered.status_code, tampered.json["reason"]) == (401, "invalid_token")
    assert tampered.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert client.get("/v1/me").headers["WWW-Authenticate"] == 'Bearer realm="api"'

    assert client.post("/v1/auth/logout", headers=member.headers).status_code in (200, 204)
    ended = client.get("/v1/me", headers=member.headers)
    assert (ended.status_code, ended.json["reason"]) == (401, "session_ended")
    staff = admin_headers(client, app, "analyst")
    assert client.post("/v1/auth/logout", headers=staff).status_code in (200, 204)
    gone = client.get("/v1/admin/dashboard", headers=staff)
    assert (gone.status_code, gone.json["reason"]) == (401, "session_ended")
    for path, body in (("/v1/auth/token", {"email": "x@example.org", "code": "000000"}),
                       ("/v1/auth/refresh", {"refresh_token": "not-a-token"}),
                       ("/v1/auth/login", {"email": "x@example.org", "password": "wrong"})):
        refused = client.post(path, json=body)
        assert refused.status_code == 401, (path, refused.json)
        declared = _spec(client)["paths"][path]["post"]["responses"]
        assert "401" in declared, path


def test_every_batch_result_carries_every_declared_field(client: FlaskClient,
                                                        app: Flask) -> None:
    """ItemResult lists points as required: a duplicate or rejected item says 0, not
    nothing (a strict client would fail to decode the whole answer)."""
    from .helpers import build_scheme, link, signed_post, tap
    from .test_flow import _daytime

    scheme = build_scheme(client, app)
    member = resident(client, app)
    assert link(client, app, member.headers, "6335 0012 3456 7001").status_code == 201
    item = tap("r-1", "6335 0012 3456 7001", _daytime(1, 9))
    answer = signed_post(client, scheme.source, {"items": [
        item, item, {**item, "external_ref": "r-2", "type": "no_such_type"}]})
    assert answer.status_code == 200, answer.json
    results = answer.json["results"]
    assert [r["status"] for r in results] == ["accepted", "duplicate", "rejected"]
    assert [r["points"] for r in results] == [10, 0, 0]
    required = _spec(client)["components"]["schemas"]["ItemResult"]["required"]
    for result in results:
        assert set(required) <= set(result), result
    # Half a surrogate pair is refused as a ref and not echoed as an escape that strict
    # decoders refuse (which would fail the whole answer); other text comes back as sent.
    odd = signed_post(client, scheme.source, {"items": [
        {**item, "external_ref": "r\ud800-3"}, {**item, "external_ref": "r-é?-4"}]})
    assert "\\ud800" not in odd.get_data(as_text=True)
    assert [r["external_ref"] for r in odd.json["results"]] == ["r\ufffd-3", "r-é?-4"]


def test_idempotent_operations_declare_their_key_limits_and_the_replay_header(
    client: FlaskClient, app: Flask
) -> None:
    spec = _spec(client)
    keyed = [(method, path, operation) for method, path, operation in _operations(spec)
             if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))]
    assert {operation["operationId"] for _, _, operation in keyed} >= {
        "claimOffer", "donatePoints", "claimEvent", "adjustPoints", "approveReview",
        "rejectReview", "redeemWithCard", "redeemVoucher"}
    for method, path, operation in keyed:
        parameter = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
        assert (parameter["schema"]["minLength"], parameter["schema"]["maxLength"]) == (1, 200)
        ok = next(r for s, r in operation["responses"].items() if s.startswith("2"))
        assert "Idempotent-Replayed" in ok["headers"], (method, path)
    # The same mistake gets the same shape whichever operation it is sent to.
    member = resident(client, app, points=10)
    long_key = {"Idempotency-Key": "k" * 201}
    claim = client.post("/v1/me/rewards", json={"offer_id": "00000000-0000-0000-0000-000000000000"},
                        headers={**member.headers, **long_key})
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    redeem = client.post("/v1/partner/redemptions", json={"code": "ABCDEFGHJK"},
                         headers={**till(partner), **long_key})
    for answer in (claim, redeem):
        assert answer.status_code == 422
        assert answer.json["errors"] == {"Idempotency-Key": ["1 to 200 characters."]}


def test_what_a_post_makes_is_located_where_the_spec_says(client: FlaskClient, app: Flask) -> None:
    """A 201/202 carries `Location` exactly where the spec declares one, and it reads back
    the thing made; where none is declared (nothing to GET by that id) none is sent."""
    spec = _spec(client)
    declared = {path for path, item in spec["paths"].items()
                for status, response in item.get("post", {}).get("responses", {}).items()
                if status in ("201", "202") and "Location" in response.get("headers", {})}
    assert {"/v1/admin/offers", "/v1/admin/partners", "/v1/me/rewards"} <= declared
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    made = client.post("/v1/admin/partners", json={"name": "Second Cup", "kind": "business"},
                       headers=admin)
    assert made.status_code == 201
    assert made.headers["Location"] == f"/v1/admin/partners/{made.json['id']}"
    assert client.get(made.headers["Location"], headers=admin).json["id"] == made.json["id"]
    offer = make_offer(client, admin, partner["id"], cost_points=50)
    member = resident(client, app, points=200)
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=member.headers)
    assert claimed.status_code == 202
    assert claimed.headers["Location"] == f"/v1/me/rewards/{claimed.json['id']}"
    read = client.get(claimed.headers["Location"], headers=member.headers)
    assert read.status_code == 200 and read.json["id"] == claimed.json["id"]
    # Nothing to read one donation by: no Location, and none declared.
    assert "/v1/me/donations" not in declared
    given = client.post("/v1/me/donations", json={"charity_id": make_partner(
        client, admin, kind="charity")["id"], "points": 10}, headers=member.headers)
    assert given.status_code == 201 and "Location" not in given.headers


def test_a_body_with_no_required_field_is_declared_optional_and_may_be_left_out(
        client: FlaskClient, app: Flask) -> None:
    spec = _spec(client)
    optional = {(method, path) for method, path, operation in _operations(spec)
                if "requestBody" in operation and not operation["requestBody"].get("required")}
    assert {("PATCH", "/v1/me"), ("PATCH", "/v1/me/notification-preferences"),
            ("POST", "/v1/admin/offers/{offer_id}/approve")} <= optional
    # A body with a required field stays required.
    assert spec["paths"]["/v1/me/rewards"]["post"]["requestBody"]["required"] is True
    member = resident(client, app, display_name="Asha")
    for path in ("/v1/me", "/v1/me/notification-preferences"):
        before = client.get(path, headers=member.headers).json
        answer = client.patch(path, headers=member.headers)  # no body at all
        assert answer.status_code == 200, answer.json
        assert client.get(path, headers=member.headers).json == before


def _response_schema(spec: dict[str, Any], method: str, path: str,
                     status: str = "200") -> dict[str, Any]:
    response = spec["paths"][path][method]["responses"][status]
    ref = response["content"]["application/json"]["schema"]["$ref"]
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_a_staff_login_answers_every_field_its_schema_requires(client: FlaskClient,
                                                                app: Flask) -> None:
    """A staff or partner user's login has no refresh token: the schema it is declared
    with must not require one, or a generated client fails to decode every staff login."""
    from .helpers import make_staff

    make_staff(app, "rev@council.example", "reviewer")
    answer = client.post("/v1/auth/login", json={"email": "rev@council.example",
                                                 "password": "correct horse"})
    assert answer.status_code == 200, answer.json
    schema = _response_schema(_spec(client), "post", "/v1/auth/login")
    assert set(schema["required"]) == set(answer.json)
    assert answer.json["role"] in schema["properties"]["role"]["enum"]
    member = _response_schema(_spec(client), "post", "/v1/auth/token")
    assert "refresh_token" in member["required"]


def test_a_members_cards_devices_and_a_rules_versions_are_paged_lists(
        client: FlaskClient, app: Flask) -> None:
    """Lists are paginated (page, page_size at most 100) and say so in X-Pagination,
    these as every other."""
    from .helpers import link

    member = resident(client, app)
    for number in ("6335 0012 3456 0001", "6335 0012 3456 0002"):
        assert link(client, app, member.headers, number).status_code == 201
    for token in ("device-token-one", "device-token-two"):
        added = client.post("/v1/me/devices", json={"platform": "fcm", "token": token},
                            headers=member.headers)
        assert added.status_code == 201, added.json
    manager = admin_headers(client, app)
    client.post("/v1/admin/action-types", headers=manager,
                json={"code": "bus_trip", "name": "Bus trip", "category": "travel"})
    rule = client.post("/v1/admin/rules", headers=manager, json={
        "name": "Bus", "action_types": ["bus_trip"], "points": "10", "status": "active"}).json
    assert client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": "12"},
                        headers=manager).status_code == 200
    spec = _spec(client)
    for path, headers in (("/v1/me/identifiers", member.headers),
                          ("/v1/me/devices", member.headers),
                          (f"/v1/admin/rules/{rule['id']}/versions", manager)):
        template = path.replace(rule["id"], "{rule_id}")
        declared = spec["paths"][template]["get"]
        assert {"page", "page_size"} <= {p["name"] for p in declared.get("parameters", [])}
        assert "X-Pagination" in declared["responses"]["200"]["headers"], path
        first = client.get(path, query_string={"page_size": 1}, headers=headers)
        assert first.status_code == 200, (path, first.json)
        assert len(first.json) == 1
        paging = json.loads(first.headers["X-Pagination"])
        assert (paging["total"], paging["next_page"]) == (2, 2), (path, paging)
        second = client.get(path, query_string={"page": 2, "page_size": 1}, headers=headers)
        assert second.json != first.json and len(second.json) == 1
        too_big = client.get(path, query_string={"page_size": 101}, headers=headers)
        assert too_big.status_code == 422, (path, too_big.json)


def test_the_export_is_declared_as_the_json_it_is(client: FlaskClient, app: Flask) -> None:
    """GET /v1/me/export answers a JSON document: the spec says so, with its parts, so a
    generated client reads the body instead of dropping it."""
    member = resident(client, app)
    answer = client.get("/v1/me/export", headers=member.headers)
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    declared = _spec(client)["paths"]["/v1/me/export"]["get"]["responses"]["200"]
    assert list(declared.get("content", {})) == ["application/json"], declared
    schema = _response_schema(_spec(client), "get", "/v1/me/export")
    assert set(schema["required"]) == set(answer.json)
    for name, value in answer.json.items():
        expected = {"object": dict, "array": list, "string": str}[
            schema["properties"][name]["type"]]
        assert isinstance(value, expected), name


def test_a_sources_and_a_partners_keys_are_paged_lists(client: FlaskClient,
                                                      app: Flask) -> None:
    """Key lists are paged as every list is (page, page_size, X-Pagination)."""
    manager = admin_headers(client, app)
    client.post("/v1/admin/action-types", headers=manager,
                json={"code": "bus_trip", "name": "Bus trip", "category": "travel"})
    source = client.post("/v1/admin/sources", headers=manager,
                         json={"name": "Bus co", "action_types": ["bus_trip"]}).json
    partner = make_partner(client, manager)
    for path, body in ((f"/v1/admin/sources/{source['id']}/keys", {"overlap_days": 7}),
                       (f"/v1/admin/partners/{partner['id']}/keys", {"rotate": False})):
        issued = client.post(path, json=body, headers=manager)
        assert issued.status_code == 201, issued.json
        everything = client.get(path, headers=manager)
        assert everything.status_code == 200
        total = len(everything.json)
        assert total >= 2
        first = client.get(path, query_string={"page_size": 1}, headers=manager)
        assert first.json == everything.json[:1]
        paging = json.loads(first.headers["X-Pagination"])
        assert (paging["total"], paging["next_page"]) == (total, 2), paging
        assert client.get(path, query_string={"page_size": 101},
                          headers=manager).status_code == 422
    declared = _spec(client)["paths"]
    for template in ("/v1/admin/sources/{source_id}/keys",
                     "/v1/admin/partners/{partner_id}/keys"):
        assert "X-Pagination" in declared[template]["get"]["responses"]["200"]["headers"]
