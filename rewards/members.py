"""Residents: one-time-code login, profiles, linked cards."""

from __future__ import annotations

import functools
import itertools
import math
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from flask import current_app, has_request_context, request
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .consents import accept_at_first_login
from .ledger import ensure_member_accounts
from .mail import MailUnavailable, send_mail
from .models import Identifier, Member, OtpCode, utcnow
from .notice_text import mail_language, text
from .security import identifier_key_id, keyed_hash, normalise_card_number
from .throttle import lock_row, throttle_key


class OtpRateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after  # seconds until the address may ask again


def normalise_email(email: str) -> str:
    """The one spelling an address is kept and looked up under. Lower case; compatibility
    forms folded (NFKC: a fullwidth "ａ" is "a", "＠" is "@"); an internationalised domain
    in its ASCII (punycode) form, as mail is routed. Otherwise "ａlice@example.org",
    "alice@ｅxample.org" or "alice@exämple.org" beside "alice@xn--exmple-cua.org" would
    each open an account of its own for one mailbox, with its own code limits."""
    email = unicodedata.normalize("NFKC", email).strip().lower()
    local, at, domain = email.rpartition("@")
    if at and domain and not domain.isascii():
        try:
            # IDNA 2003 also takes the ideographic full stop (U+3002) as a dot.
            domain = domain.encode("idna").decode("ascii").lower()
        except UnicodeError:
            pass  # not a name that can be routed: kept as typed (no mail arrives)
    return f"{local}{at}{domain}" if at else email


def otp_address(email: str) -> str:
    """How login codes name the address they went to: a keyed hash, never the address."""
    return keyed_hash(normalise_email(email), "otp-address")


def purge_login_codes(session: Session, before: datetime) -> int:
    """Delete codes asked for before `before` (a day ago is the nightly purge's: a code
    lives minutes, and the per-address count looks back an hour). Commits."""
    result = session.execute(delete(OtpCode).where(OtpCode.created_at < before))
    session.commit()
    return int(result.rowcount or 0)


def request_otp(session: Session, email: str) -> None:
    """Mail a fresh 6-digit code; earlier codes for the address stop working."""
    email = normalise_email(email)
    config = current_app.config
    # Requests for one address take turns on its row, so the count below is exact even
    # when many arrive at once (PostgreSQL would otherwise let each see the same count).
    lock_row(session, throttle_key("otp", email))
    now = utcnow()
    window = now - timedelta(hours=1)
    recent, oldest = session.execute(
        select(func.count(OtpCode.id), func.min(OtpCode.created_at)).where(
            OtpCode.email_hash == otp_address(email), OtpCode.created_at > window
        )
    ).one()
    if (recent or 0) >= config["OTP_PER_HOUR"]:
        raise OtpRateLimited(max(1, math.ceil((oldest - window).total_seconds())))
    session.execute(
        update(OtpCode)
        .where(OtpCode.email_hash == otp_address(email), OtpCode.used_at.is_(None))
        .values(used_at=now)
    )
    code = f"{secrets.randbelow(10**6):06d}"
    sent = OtpCode(
        email_hash=otp_address(email),
        code_hash=keyed_hash(f"{email}:{code}", "otp"),
        expires_at=now + timedelta(seconds=config["OTP_TTL"]),
    )
    session.add(sent)
    session.commit()
    minutes = config["OTP_TTL"] // 60
    # In the member's language; before they have an account, in the one the app asked for.
    locale = session.scalar(select(Member.locale).where(Member.email == email))
    language = mail_language(locale, request.headers.get("Accept-Language")
                             if has_request_context() else None)
    try:
        send_mail(email, *text("login_code", language, scheme=config["SCHEME_NAME"],
                               code=code, minutes=minutes))
    except MailUnavailable:
        # Never mailed: the code goes, so asking again once mail is back is not refused
        # as one code too many (the caller answers 503 with Retry-After).
        session.execute(delete(OtpCode).where(OtpCode.id == sent.id))
        session.commit()
        raise


@dataclass
class LoginResult:
    member: Member | None
    problem: str | None = None


def verify_otp(session: Session, email: str, code: str) -> LoginResult:
    """Check a code; the first good login creates the member. A code dies after
    OTP_MAX_ATTEMPTS wrong tries or OTP_TTL seconds."""
    email = normalise_email(email)
    now = utcnow()
    otp = session.scalar(
        select(OtpCode)
        .where(OtpCode.email_hash == otp_address(email), OtpCode.used_at.is_(None))
        .order_by(OtpCode.created_at.desc())
        .limit(1)
        .with_for_update()
    )
    if otp is None or otp.expires_at <= now:
        return LoginResult(None, "The code has expired or was never sent; ask for a new one.")
    if otp.attempts >= current_app.config["OTP_MAX_ATTEMPTS"]:
        return LoginResult(None, "Too many wrong tries; ask for a new code.")
    if not secrets.compare_digest(otp.code_hash, keyed_hash(f"{email}:{code}", "otp")):
        otp.attempts += 1
        if otp.attempts >= current_app.config["OTP_MAX_ATTEMPTS"]:
            otp.used_at = now
        session.commit()
        return LoginResult(None, "The code is not right.")
    otp.used_at = now
    member = session.scalar(select(Member).where(Member.email == email))
    if member is None:
        member = create_member(session, email=email)
        accept_at_first_login(session, member)
    session.commit()
    return LoginResult(member)


def create_member(session: Session, **fields: object) -> Member:
    member = Member(id=uuid.uuid4(), **fields)
    session.add(member)
    ensure_member_accounts(session, member.id)
    session.flush()
    return member


class CardAlreadyLinked(Exception):
    pass


def card_hash(kind: str, number: str, key: str | None = None) -> str:
    return keyed_hash(f"{kind}:{normalise_card_number(number)}", "card", key)


def previous_card_hash(kind: str, number: str) -> str | None:
    """The card's hash under IDENTIFIER_KEY_PREVIOUS, while a rotation is under way."""
    previous = current_app.config.get("IDENTIFIER_KEY_PREVIOUS")
    return card_hash(kind, number, previous) if previous else None


def rehash_cards(session: Session, cards: set[tuple[str, str]]) -> dict[str, uuid.UUID]:
    """During a rotation: cards among `cards` still hashed under the previous key are
    re-hashed under the current one. Their members, by current hash."""
    if not current_app.config.get("IDENTIFIER_KEY_PREVIOUS") or not cards:
        return {}
    old_to_new = {previous_card_hash(*card): card_hash(*card) for card in cards}
    found: dict[str, uuid.UUID] = {}
    key_id = identifier_key_id()
    for identifier in session.scalars(select(Identifier).where(
            Identifier.number_hash.in_(list(old_to_new))).with_for_update()):
        identifier.number_hash = old_to_new[identifier.number_hash]
        identifier.key_id = key_id
        found[identifier.number_hash] = identifier.member_id
    session.flush()
    return found


def link_card(session: Session, member: Member, kind: str, number: str) -> Identifier:
    normalised = normalise_card_number(number)
    if rehash_cards(session, {(kind, number)}):
        raise CardAlreadyLinked()  # linked already, under the previous key
    identifier = Identifier(
        member_id=member.id,
        kind=kind,
        number_hash=card_hash(kind, number),
        last4=normalised[-4:],
        key_id=identifier_key_id(),
    )
    try:
        # A savepoint: a clash undoes only this card, not the caller's transaction.
        with session.begin_nested():
            session.add(identifier)
    except IntegrityError:
        raise CardAlreadyLinked() from None
    return identifier


def find_member_by_card(session: Session, kind: str, number: str) -> uuid.UUID | None:
    found = session.scalar(
        select(Identifier.member_id).where(Identifier.number_hash == card_hash(kind, number))
    )
    if found is None:
        found = rehash_cards(session, {(kind, number)}).get(card_hash(kind, number))
    return found


# -- card and PIN (members enrolled at a council desk, without a phone) ---------------

PIN_MAX_FAILURES = 5
PIN_LOCK_MINUTES = 15  # the first lock; each further one doubles, then PIN_MAX_LOCKS blocks
PIN_WRONG = "Card or PIN not recognised."
PIN_LOCKED = "Too many wrong PINs; try again later or ask at a council desk."
PIN_BLOCKED = ("This card's PIN is blocked after many wrong tries; the member can have it "
               "unlocked at a council desk.")


class PinRefused(Exception):
    """The card and PIN do not open an account; `message` is safe to show at a till."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def valid_pin(pin: str) -> bool:
    return pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 6


def set_pin(member: Member, pin: str) -> None:
    if not valid_pin(pin):
        raise ValueError("a PIN is 4 to 6 digits")
    member.pin_hash = generate_password_hash(pin)
    unlock_pin(member)


def unlock_pin(member: Member) -> None:
    """Lift a PIN lock or block (a desk, after checking who the member is)."""
    member.pin_failures = 0
    member.pin_locks = 0
    member.pin_locked_until = None
    member.pin_blocked_at = None


def pin_lock_minutes(locks_before: int) -> int:
    """The lock after the (locks_before + 1)th run of wrong PINs: 15, 30, 60... minutes."""
    return PIN_LOCK_MINUTES * 2 ** locks_before


def check_card_pin(session: Session, kind: str, number: str, pin: str) -> Member:
    """The member whose card this is, if the PIN is right. Five wrong PINs lock the
    card's PIN for 15 minutes, the next five for 30, and so on; after PIN_MAX_LOCKS
    locks the card is blocked until a desk unlocks it (so a finder of the card gets
    a few dozen guesses, not 480 a day). A right PIN clears the count. The caller
    commits (wrong tries must be kept)."""
    member_id = find_member_by_card(session, kind, number)
    member = (
        session.scalar(select(Member).where(Member.id == member_id).with_for_update())
        if member_id else None
    )
    if member is None or member.erased_at is not None or not member.pin_hash:
        _refuse_unknown_card(session, kind, number, pin)
    now = utcnow()
    if member.pin_blocked_at is not None:
        raise PinRefused(PIN_BLOCKED)
    if member.pin_locked_until is not None and member.pin_locked_until > now:
        raise PinRefused(PIN_LOCKED)
    if not check_password_hash(member.pin_hash, pin):
        member.pin_failures += 1
        if member.pin_failures >= PIN_MAX_FAILURES:
            member.pin_failures = 0
            if member.pin_locks + 1 >= current_app.config["PIN_MAX_LOCKS"]:
                member.pin_blocked_at = now
            else:
                member.pin_locked_until = now + timedelta(
                    minutes=pin_lock_minutes(member.pin_locks))
            member.pin_locks += 1
        raise PinRefused(PIN_WRONG)
    member.pin_failures = 0
    member.pin_locks = 0
    member.pin_locked_until = None
    return member


def lock_member(session: Session, member_id: uuid.UUID) -> None:
    """Hold the member's row until the transaction ends: a per-member limit counted
    after this is exact under concurrent requests."""
    session.execute(select(Member.id).where(Member.id == member_id).with_for_update())


# Postcode districts: enough for ward-level figures without holding anyone's address. The
# default is the UK's outward code (LS6, LS10, WF1, EC1A); a council elsewhere sets
# POSTCODE_DISTRICT_PATTERN to what its desks record (Bologna's whole CAP: [0-9]{5}).
UK_POSTCODE_DISTRICT = r"[A-Z]{1,2}[0-9][A-Z0-9]?"


def normalise_postcode_district(text: str, pattern: str = UK_POSTCODE_DISTRICT) -> str | None:
    """Capitals, without spaces; None unless it is a whole district."""
    district = "".join(text.split()).upper()
    return district if re.fullmatch(pattern, district) else None


def pin_problem(pin: str) -> str | None:
    """Why a PIN will not do, or None: 4 to 6 digits, not all one digit and not a run
    (1234, 9876), which are the first any finder of the card would try."""
    if not valid_pin(pin):
        return "A PIN is 4 to 6 digits."
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if steps in ({0}, {1}, {-1}):
        return "Choose a PIN that is not one digit repeated or a run such as 1234."
    return None


def enrol_member(session: Session, kind: str, number: str, postcode_district: str, pin: str,
                 enrolled_by: uuid.UUID | None) -> tuple[Member, Identifier]:
    """A member enrolled at a council desk: no email or phone, a card and a PIN. In the
    caller's transaction; CardAlreadyLinked if the card is someone's already."""
    member = create_member(session, postcode_district=postcode_district,
                           enrolled_by=enrolled_by)
    set_pin(member, pin)
    identifier = link_card(session, member, kind, number)
    return member, identifier


UNKNOWN_CARD_BLOCK = timedelta(days=3650)


@functools.cache
def _dummy_pin_hash() -> str:
    return generate_password_hash(secrets.token_hex(8))


def _refuse_unknown_card(session: Session, kind: str, number: str, pin: str) -> NoReturn:
    """A card that opens no member (unknown, erased, or with no PIN) counts wrong tries,
    locks and blocks exactly as a member's card does, in login_throttles under the
    card's keyed hash; and a PIN hash is checked all the same. Otherwise the lock after
    five tries, or the time taken, would tell a till which card numbers are members'."""
    row = lock_row(session, throttle_key("pin", card_hash(kind, number)))
    check_password_hash(_dummy_pin_hash(), pin)
    now = utcnow()
    locks = row.failures // PIN_MAX_FAILURES
    if locks >= current_app.config["PIN_MAX_LOCKS"]:
        raise PinRefused(PIN_BLOCKED)
    if row.locked_until is not None and row.locked_until > now:
        raise PinRefused(PIN_LOCKED)
    row.failures += 1
    row.updated_at = now
    if row.failures % PIN_MAX_FAILURES == 0:
        if locks + 1 < current_app.config["PIN_MAX_LOCKS"]:
            row.locked_until = now + timedelta(minutes=pin_lock_minutes(locks))
        else:
            # Blocked, as a member's card stays until a desk unlocks it: a lock with no
            # end also keeps the row from the nightly clearing of idle counters.
            row.locked_until = now + UNKNOWN_CARD_BLOCK
    raise PinRefused(PIN_WRONG)
