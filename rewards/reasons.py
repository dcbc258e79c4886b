"""Machine-readable reasons carried by every error body (`reason`), so an app can show
its own text and a till can branch without parsing the English `message`.

The values are a contract: add new ones, never rename or reuse one. A refusal that
names no reason gets the general one for its HTTP status (`GENERAL`)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # General, one per HTTP status.
    BAD_REQUEST = "bad_request"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    CONFLICT = "conflict"
    GONE = "gone"
    PRECONDITION_FAILED = "precondition_failed"
    TOO_LARGE = "too_large"
    URI_TOO_LONG = "uri_too_long"
    HEADERS_TOO_LARGE = "headers_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_REQUEST = "invalid_request"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    UNAVAILABLE = "unavailable"
    # Signing in and credentials.
    INVALID_TOKEN = "invalid_token"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_CODE = "invalid_code"
    WRONG_ROLE = "wrong_role"
    ACCOUNT_GONE = "account_gone"
    PIN_LOCKED = "pin_locked"
    # Claiming offers (and events, donations).
    INSUFFICIENT_POINTS = "insufficient_points"
    SOLD_OUT = "sold_out"
    LIMIT_REACHED = "limit_reached"
    NOT_ELIGIBLE = "not_eligible"
    NOT_OPEN = "not_open"
    ENDED = "ended"
    ALREADY_CLAIMED = "already_claimed"
    CODE_USED = "code_used"
    # Vouchers at the till.
    VOUCHER_NOT_FOUND = "voucher_not_found"
    VOUCHER_USED = "voucher_used"
    VOUCHER_EXPIRED = "voucher_expired"
    VOUCHER_NOT_ISSUED = "voucher_not_issued"
    VOUCHER_CANCELLED = "voucher_cancelled"
    PARTNER_FULFILS = "partner_fulfils"
    UNDO_WINDOW_PASSED = "undo_window_passed"
    ALREADY_UNDONE = "already_undone"
    # Records and their states.
    ALREADY_EXISTS = "already_exists"
    CARD_LINKED = "card_linked"
    ACCOUNT_ERASED = "account_erased"
    WRONG_STATE = "wrong_state"
    EDIT_CONFLICT = "edit_conflict"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    # Logins that are locked or have ended; cards that must be proven.
    ACCOUNT_LOCKED = "account_locked"
    SESSION_ENDED = "session_ended"
    CARD_NOT_PROVEN = "card_not_proven"
    NO_CONSENT = "no_consent"
    # Names that must come from the scheme's own lists.
    UNKNOWN_WARD = "unknown_ward"
    WARD_CHANGED_RECENTLY = "ward_changed_recently"
    # Caps per account on what waits for staff or what an account keeps.
    TOO_MANY_PENDING = "too_many_pending"
    TOO_MANY_DEVICES = "too_many_devices"
    TOO_MANY_CARDS = "too_many_cards"


GENERAL: dict[int, Reason] = {
    400: Reason.BAD_REQUEST,
    401: Reason.UNAUTHENTICATED,
    403: Reason.FORBIDDEN,
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    406: Reason.NOT_ACCEPTABLE,
    409: Reason.CONFLICT,
    410: Reason.GONE,
    412: Reason.PRECONDITION_FAILED,
    413: Reason.TOO_LARGE,
    414: Reason.URI_TOO_LONG,
    431: Reason.HEADERS_TOO_LARGE,
    415: Reason.UNSUPPORTED_MEDIA_TYPE,
    422: Reason.INVALID_REQUEST,
    429: Reason.RATE_LIMITED,
    500: Reason.INTERNAL_ERROR,
    503: Reason.UNAVAILABLE,
}


def reason_for(code: int, reason: str | None = None) -> str:
    """The reason to send: the one given if it is a known one, else the status's own."""
    if reason is not None and reason in Reason._value2member_map_:
        return str(reason)
    if code in GENERAL:
        return GENERAL[code].value
    return (Reason.INTERNAL_ERROR if code >= 500 else Reason.BAD_REQUEST).value


class Refused(Exception):
    """Something asked of the scheme that it will not do: the HTTP status to answer
    with, the message for the caller and, where one fits, the reason."""

    def __init__(self, status: int, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
