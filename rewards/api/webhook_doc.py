"""The partner fulfilment webhook as the contract shows it (an OpenAPI callback on
claiming an offer): what the scheme sends, how it is signed, what it expects back.
workers/fulfilment.py is what sends it; tests/test_contract.py keeps the two agreeing."""

from __future__ import annotations

from typing import Any

WEBHOOK_SCHEMAS: dict[str, dict[str, Any]] = {
    "FulfilmentRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["reward_id", "offer", "member_ref", "valid_until"],
        "properties": {
            "reward_id": {"type": "string", "format": "uuid",
                          "description": "The reward; also sent as Idempotency-Key."},
            "offer": {"$ref": "#/components/schemas/OfferBrief"},
            "member_ref": {"type": "string", "minLength": 32, "maxLength": 32,
                           "description": "A pseudonym for the member, stable for this "
                                          "partner; no name, email or card leaves the scheme."},
            "valid_until": {"type": "string", "format": "date-time",
                            "description": "When the pass should stop being honoured."},
        },
    },
    "FulfilmentPass": {
        "type": "object",
        "required": ["code"],
        "properties": {
            "code": {"type": "string", "minLength": 1, "maxLength": 200,
                     "description": "What the member shows: their voucher code."},
            "reference": {"type": "string", "nullable": True, "maxLength": 200,
                          "description": "The partner system's own booking reference."},
        },
    },
}

FULFILMENT_CALLBACK: dict[str, Any] = {
    "fulfilment": {
        "https://partner.example/fulfilment-url-set-by-scheme-staff": {
            "post": {
                "operationId": "fulfilReward",
                "summary": "The scheme asks a webhook partner's system to issue a pass.",
                "description": (
                    "Sent by a worker after a claim of an offer whose fulfilment is "
                    "`webhook`, to the partner's fulfilment URL (set by scheme staff; "
                    "https in production). Retried with backoff on timeouts, connection "
                    "errors, 5xx and 408/409/425/429; any other 4xx fails the reward and "
                    "refunds the points. Redirects are not followed."),
                "parameters": [
                    {"in": "header", "name": "X-Signature", "required": True,
                     "schema": {"type": "string",
                                "pattern": r"^t=\d+(,v1=[0-9a-f]{64}){1,2}$"},
                     "description": (
                         "`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<raw body>\")>` "
                         "with the partner's webhook secret; reject a stale `t`. For a while "
                         "after the secret is rotated a second `v1=` entry signs under the "
                         "replaced one: accept the request when any `v1=` entry is right "
                         "under the secret you hold.")},
                    {"in": "header", "name": "Idempotency-Key", "required": True,
                     "schema": {"type": "string", "format": "uuid"},
                     "description": "The reward id: a retry must get the same pass back."},
                ],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/FulfilmentRequest"}}}},
                "responses": {
                    "200": {"description": "The pass", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/FulfilmentPass"}}}},
                    "201": {"description": "The pass, newly made", "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/FulfilmentPass"}}}},
                },
            },
        },
    },
}
