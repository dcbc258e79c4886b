"""The published contract, finished in one place after every blueprint is registered:
hand-chosen operationIds, every error status an operation can answer with the shared
error body, real media types for files, `required` on response schemas, the cursor
headers, and the partner fulfilment webhook as a callback. Route modules keep
describing what is particular to them; what follows from how a route is built
(authentication, path parameters, a body) is declared here, once."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from apispec import APISpec

from .operation_ids import OPERATION_IDS
from .webhook_doc import FULFILMENT_CALLBACK, WEBHOOK_SCHEMAS

METHODS = ("get", "post", "put", "patch", "delete")

ERRORS: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "The request cannot be read (a body that is not JSON)."),
    401: ("UNAUTHORIZED", "No credentials, or ones that are not valid (reason says which)."),
    403: ("FORBIDDEN", "Valid credentials without the right to do this."),
    404: ("NOT_FOUND", "No such thing, or not one this caller may see."),
    409: ("CONFLICT", "Refused in the current state (reason says why)."),
    410: ("GONE", "No longer available: ended or expired."),
    412: ("PRECONDITION_FAILED", "If-Match named no ETag of the current answer."),
    413: ("PAYLOAD_TOO_LARGE", "The body is larger than the API takes."),
    414: ("URI_TOO_LONG", "The address (with its query string) is too long."),
    422: ("UNPROCESSABLE_ENTITY", "The request is not valid: see errors for each field."),
    429: ("TOO_MANY_REQUESTS", "Too many requests: wait for Retry-After seconds."),
    503: ("SERVICE_UNAVAILABLE", "Briefly unavailable: try again after Retry-After seconds."),
}
RETRY_AFTER = {"description": "Seconds to wait before trying again.",
               "schema": {"type": "integer"}}
# The header of a POST that answers a retry as it answered the first try (common.idempotent).
IDEMPOTENCY_KEY = {
    "in": "header", "name": "Idempotency-Key", "required": False, "schema": {"type": "string"},
    "description": "A retry with the same key and body replays the first answer.",
}

IDEMPOTENT_REPLAYED = {
    "description": "true when this is the answer to an earlier try with the same "
                   "Idempotency-Key (replayed, nothing done again)",
    "schema": {"type": "string", "enum": ["true"]}}

# Files: the media type served, for operations whose body is not JSON.
MEDIA: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/me/rewards/{reward_id}/qr.svg"): {
        "image/svg+xml": {"schema": {"type": "string"}}},
    ("GET", "/v1/admin/sources/{source_id}/imports/{import_id}/report.csv"): {
        "text/csv": {"schema": {"type": "string"}}},
    ("GET", "/v1/admin/reviews/{action_id}/photo"): {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}}},
    ("GET", "/v1/admin/dashboard/{name}.csv"): {"text/csv": {"schema": {"type": "string"}}},
    ("GET", "/v1/admin/dashboard/open-data.zip"): {
        "application/zip": {"schema": {"type": "string", "format": "binary"}}},
    ("GET", "/v1/admin/dashboard/open-data/dictionary.csv"): {
        "text/csv": {"schema": {"type": "string"}}},
    ("GET", "/v1/admin/dashboard/open-data/{name}.csv"): {
        "text/csv": {"schema": {"type": "string"}}},
}
# Statuses particular to an operation, beyond what its shape implies.
EXTRA: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/v1/me/rewards/{reward_id}/qr.svg"): (409,),
    ("POST", "/v1/partner/redemptions"): (409, 410),
    ("GET", "/v1/partner/vouchers/{code}"): (404,),
    ("POST", "/v1/me/devices"): (409,),
    # Signing in: wrong code, password or refresh token (no bearer token to declare).
    ("POST", "/v1/auth/token"): (401,),
    ("POST", "/v1/auth/refresh"): (401,),
    ("POST", "/v1/auth/login"): (401,),
    ("POST", "/v1/auth/totp/confirm"): (409,),
}
# Keyset-paginated lists: the cursor of the next page comes back in headers.
CURSOR_HEADERS = {
    "X-Next-Cursor": {"description": "Pass as `cursor` for the next page; absent on the "
                                     "last page.", "schema": {"type": "string"}},
    "Link": {"description": "The next page's URL, as `<url>; rel=\"next\"`.",
             "schema": {"type": "string"}},
}
CURSOR_LISTS = {("GET", "/v1/me/ledger"), ("GET", "/v1/me/actions")}
CALLBACKS = {("POST", "/v1/me/rewards"): FULFILMENT_CALLBACK}
# Answers with an ETag and Cache-Control (rewards/api/caching.py): 304 on If-None-Match.
CACHED = {("GET", "/v1/offers"), ("GET", "/v1/offers/{offer_id}"), ("GET", "/v1/charities"),
          ("GET", "/v1/action-types"), ("GET", "/v1/wards"),
          ("GET", "/v1/partners")}
CACHE_HEADERS = {
    "ETag": {"description": "Send it back as If-None-Match: 304 while nothing changed.",
             "schema": {"type": "string"}},
    "Cache-Control": {"description": "How long the answer stays fresh, and for whom.",
                      "schema": {"type": "string"}},
}
# Answers that carry the ETag of what they show, and changes that take it back as
# If-Match (412 when it is no longer current): the resident's profile.
VERSIONED = {("GET", "/v1/me"): False, ("PATCH", "/v1/me"): True}
PROFILE_ETAG = {"description": "The profile's version: send it back as If-Match with a "
                               "PATCH of /v1/me.", "schema": {"type": "string"}}
IF_MATCH = {"in": "header", "name": "If-Match", "required": False,
            "schema": {"type": "string"},
            "description": "The ETag of the profile as last read: the change is made only if "
                           "it is still current, else 412."}
IF_NONE_MATCH = {"in": "header", "name": "If-None-Match", "required": False,
                 "schema": {"type": "string"},
                 "description": "The ETag of the copy held: 304 if it is still current."}


# Every answer under /v1 says its language (rewards/api/language.py).
LANGUAGE_HEADERS = {
    "Content-Language": {"description": "The answer's language: Accept-Language (else the "
                                        "member's locale) among the scheme's languages.",
                         "schema": {"type": "string", "example": "cy"}},
    "Vary": {"description": "Includes Accept-Language: caches keep one copy per language.",
             "schema": {"type": "string"}},
}


def _say_language(response: dict[str, Any]) -> None:
    if "$ref" not in response:
        headers = response.setdefault("headers", {})
        for name in LANGUAGE_HEADERS:
            headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})


def finish_spec(spec: APISpec) -> None:
    for name, schema in WEBHOOK_SCHEMAS.items():
        if name not in spec.components.schemas:
            spec.components.schema(name, schema)
    for status, (name, description) in ERRORS.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": RETRY_AFTER}
        if name not in spec.components.responses:
            spec.components.response(name, response)
    if "PAGINATION" in spec.components.headers:
        # What is sent is JSON text in the header: say so, with the shape of that JSON.
        spec.components.headers["PAGINATION"] = {
            "description": "Page metadata as JSON: total, total_pages, first_page, "
                           "last_page, page, previous_page, next_page.",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PaginationMetadata"}}}}
    for name, header in LANGUAGE_HEADERS.items():
        if name not in spec.components.headers:
            spec.components.header(name, deepcopy(header))
    paths: dict[str, dict[str, Any]] = spec._paths
    for path, item in paths.items():
        for method, operation in item.items():
            if method in METHODS:
                _finish_operation(method.upper(), path, operation)
                if path.startswith("/v1/"):
                    for response in operation["responses"].values():
                        _say_language(response)
    for response in spec.components.responses.values():
        _say_language(response)
    _declare_locations(paths)
    _optional_bodies(paths, spec.components.schemas)
    _require_response_fields(paths, spec.components.schemas)


def _optional_bodies(paths: dict[str, dict[str, Any]], schemas: dict[str, Any]) -> None:
    """A JSON body none of whose fields is required may be left out (the view reads no
    body as `{}`, a PATCH that changes nothing): say so, rather than `required: true`."""
    for item in paths.values():
        for method, operation in item.items():
            body = operation.get("requestBody") if method in METHODS else None
            if not body or not body.get("required"):
                continue
            media = body.get("content", {})
            schema = media.get("application/json", {}).get("schema") if len(media) == 1 else None
            if schema is None:
                continue
            if "$ref" in schema:
                schema = schemas.get(schema["$ref"].rsplit("/", 1)[1], {})
            if schema.get("type", "object") == "object" and not schema.get("required"):
                body["required"] = False


LOCATION = {"description": "Where to read what was made: the collection's GET for one item "
                           "by its id", "schema": {"type": "string", "format": "uri-reference"}}


def _last_is_uuid(path: str, item: dict[str, Any]) -> bool:
    name = path.rsplit("/{", 1)[1].rstrip("}")
    for parameter in [*item.get("parameters", []), *item["get"].get("parameters", [])]:
        if parameter.get("in") == "path" and parameter.get("name") == name:
            return bool(parameter.get("schema", {}).get("format") == "uuid")
    return False


def _declare_locations(paths: dict[str, dict[str, Any]]) -> None:
    """The `Location` a 201 or 202 carries (hardening._locate_created): a POST to a
    collection that has a GET for one item below it by id."""
    for path, item in paths.items():
        if "post" not in item:
            continue
        readable = any(other.startswith(f"{path}/{{") and other.count("/") == path.count("/") + 1
                       and other.endswith("}") and "get" in paths[other]
                       and _last_is_uuid(other, paths[other]) for other in paths)
        if not readable:
            continue
        for status, response in item["post"]["responses"].items():
            if status in ("201", "202") and "$ref" not in response:
                response.setdefault("headers", {})["Location"] = deepcopy(LOCATION)


def _finish_operation(method: str, path: str, operation: dict[str, Any]) -> None:
    key = (method, path)
    if key in OPERATION_IDS:
        operation["operationId"] = OPERATION_IDS[key]
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = {414, 429, 503, *EXTRA.get(key, ())}
    if operation.get("security"):
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {400, 413, 422}
    if any(p.get("in") == "query" for p in operation.get("parameters", [])):
        statuses.add(422)
    for status in statuses | {int(s) for s in responses if s.isdigit() and int(s) >= 400}:
        name, _ = ERRORS[status]
        said = responses.get(str(status), {}).get("description")
        if said and "content" not in responses[str(status)]:
            # Keep the route's own words for when it happens; the body is the shared one.
            responses[str(status)] = {"description": said, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
        else:
            responses.setdefault(str(status), {"$ref": f"#/components/responses/{name}"})
    # Copies, so that no two operations share a dict (YAML would write anchors).
    if key in MEDIA:
        ok = next(s for s in responses if s.startswith("2"))
        responses[ok]["content"] = deepcopy(MEDIA[key])
    if key in CURSOR_LISTS:
        responses["200"].setdefault("headers", {}).update(deepcopy(CURSOR_HEADERS))
    if key in CALLBACKS:
        operation["callbacks"] = deepcopy(CALLBACKS[key])
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter.get("name") == "Idempotency-Key":
            # The server's limits (common.idempotent), and the header marking a replay.
            parameter["schema"] = {"type": "string", "minLength": 1, "maxLength": 200}
            for status, response in responses.items():
                if status.startswith("2") and "$ref" not in response:
                    response.setdefault("headers", {}).setdefault(
                        "Idempotent-Replayed", deepcopy(IDEMPOTENT_REPLAYED))
    if key in VERSIONED:
        responses["200"].setdefault("headers", {})["ETag"] = deepcopy(PROFILE_ETAG)
        if VERSIONED[key]:
            responses["412"] = {"$ref": "#/components/responses/PRECONDITION_FAILED"}
            operation.setdefault("parameters", []).append(deepcopy(IF_MATCH))
    if key in CACHED:
        responses["412"] = {"$ref": "#/components/responses/PRECONDITION_FAILED"}
        responses["200"].setdefault("headers", {}).update(deepcopy(CACHE_HEADERS))
        responses["304"] = {"description": "Not Modified: the copy held is current.",
                            "headers": {"ETag": deepcopy(CACHE_HEADERS["ETag"])}}
        operation.setdefault("parameters", []).append(deepcopy(IF_NONE_MATCH))


def _require_response_fields(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Output schemas list every property as required: the API always sends each one
    (null where nullable), so clients need no optional unwrapping. Schemas that are
    also read from requests keep what their fields say."""
    read: set[str] = set()
    written: set[str] = set()
    for item in paths.values():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            _collect(operation.get("requestBody", {}), schemas, written)
            for parameter in operation.get("parameters", []):
                _collect(parameter, schemas, written)
            for response in operation.get("responses", {}).values():
                _collect(response, schemas, read)
    for name in read - written - {"Error"}:
        properties = schemas[name].get("properties")
        if properties:
            schemas[name]["required"] = sorted(properties)


def _collect(node: Any, schemas: dict[str, Any], into: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in into:
                into.add(name)
                _collect(schemas[name], schemas, into)
        for value in node.values():
            _collect(value, schemas, into)
    elif isinstance(node, list):
        for value in node:
            _collect(value, schemas, into)
