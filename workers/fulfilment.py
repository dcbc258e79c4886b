"""Asking a partner's own system to issue a pass (a signed webhook).

The request is JSON, signed like a source's batches (X-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, with a second v1= entry under the replaced
secret while a rotation's overlap lasts), with Idempotency-Key set to the reward
id so a retried call gets the same pass back. The partner answers 200 or 201 with
`{"code": "...", "reference": "..."}` (reference optional): the code is what the
member shows. Anything else is an error: 4xx other than 408, 409, 425 and 429 is
permanent (retrying will not help); the rest, timeouts and connection errors are
worth retrying."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rewards import outbound
from rewards.security import keyed_hash, signatures_header

MAX_ANSWER_BYTES = 64 * 1024
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


class FulfilmentError(Exception):
    """The partner's system did not issue the pass this time; a retry may."""


class PermanentFulfilmentError(FulfilmentError):
    """The partner's system refused the request; retrying the same request will not help."""


@dataclass(frozen=True)
class Pass:
    code: str
    reference: str | None


def request_body(reward_id: str, partner_id: str, member_id: str, offer_id: str,
                 offer_title: str, expires_at: datetime) -> bytes:
    """What the partner's system is told. The member is a pseudonym, stable for this
    partner and useless to anyone else: no name, email or card number leaves the scheme."""
    body = {
        "reward_id": reward_id,
        "offer": {"id": offer_id, "title": offer_title},
        "member_ref": keyed_hash(f"{partner_id}:{member_id}", "partner-member")[:32],
        "valid_until": expires_at.isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def parse_answer(status: int, raw: bytes) -> Pass:
    """Decide what an answer means; raises for anything that is not a pass."""
    if status not in (200, 201):
        problem = f"the partner's system answered HTTP {status}"
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            raise PermanentFulfilmentError(problem)
        raise FulfilmentError(problem)
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):  # a deeply nested answer too
        raise FulfilmentError("the partner's system answered with something not JSON") from None
    code = data.get("code") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code.strip() or len(code) > 200:
        raise FulfilmentError("the partner's answer has no usable code")
    reference = data.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        reference = None
    return Pass(code.strip(), reference[:200] if reference else None)


def call_partner(url: str, signing_secrets: list[str], idempotency_key: str, body: bytes,
                 timeout: float, *, allow_private: bool = False,
                 allow_http: bool = False) -> Pass:
    """POST the body, signed under each of `signing_secrets` (the partner's current
    webhook secret, and the one it replaced during an overlap), and read the pass from
    the answer, all within `timeout` seconds however slowly the partner answers. Only
    to a public address (checked after resolving the name, and the checked address is
    the one connected to), unless
    `allow_private` (tests, a partner system on the council's own network)."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "citizen-rewards-fulfilment/1",
        "Idempotency-Key": idempotency_key,
        "X-Signature": signatures_header(signing_secrets, body),
    }
    try:
        answer = outbound.post(url, body, headers, deadline_seconds=timeout,
                               allow_private=allow_private, allow_http=allow_http,
                               max_answer_bytes=MAX_ANSWER_BYTES)
    except outbound.UnsafeAddress as error:
        raise PermanentFulfilmentError(f"the partner's address is not allowed: {error}") \
            from None
    except outbound.Deadline as error:
        raise FulfilmentError(f"the partner's system timed out: {error}") from None
    except OSError as error:
        raise FulfilmentError(f"could not reach the partner's system: {error}") from None
    return parse_answer(answer.status, answer.body)
