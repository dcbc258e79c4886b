"""What the scheme's mail and push notices say, in English and Welsh (other languages:
their NOTICES in rewards/languages/<code>.py): the member's saved locale chooses (for a
login code, the address's member if there is one, else the request's Accept-Language).
A language without a notice's text says it in English. No database."""

from __future__ import annotations

from datetime import datetime

from . import languages
from .i18n import preferences

WELSH_MONTHS = ("Ionawr", "Chwefror", "Mawrth", "Ebrill", "Mai", "Mehefin", "Gorffennaf",
                "Awst", "Medi", "Hydref", "Tachwedd", "Rhagfyr")

# name -> language -> (subject, body); bodies are str.format templates. A push shows the
# subject and the body's first paragraph.
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "voucher_ready": {
        "en": ("Your voucher is ready: {title}",
               "Your voucher for {title} at {partner} is ready.\nCode: {code}{reference}\n"
               "Show it at the till before {expires}.\n\n{scheme}"),
        "cy": ("Mae eich taleb yn barod: {title}",
               "Mae eich taleb ar gyfer {title} yn {partner} yn barod.\nCod: {code}{reference}\n"
               "Dangoswch hi wrth y til cyn {expires}.\n\n{scheme}"),
    },
    "booking_reference": {
        "en": ("", "\nBooking reference: {reference}"),
        "cy": ("", "\nCyfeirnod archebu: {reference}"),
    },
    "voucher_expiring": {
        "en": ("Your voucher expires soon: {title}",
               "Your voucher for {title} at {partner} expires on {expires} at {time}.\n"
               "Code: {code}\n\n{scheme}"),
        "cy": ("Mae eich taleb yn dod i ben cyn bo hir: {title}",
               "Mae eich taleb ar gyfer {title} yn {partner} yn dod i ben ar {expires} am "
               "{time}.\nCod: {code}\n\n{scheme}"),
    },
    "points_earned": {
        "en": ("You earned {points} points",
               "You earned {points} points with {scheme} for {actions} action(s).\n\n"
               "See your statement in the app.\n\n{scheme}"),
        "cy": ("Rydych wedi ennill {points} pwynt",
               "Rydych wedi ennill {points} pwynt gyda {scheme}. Gweithredoedd: {actions}.\n\n"
               "Gwelwch eich datganiad yn yr ap.\n\n{scheme}"),
    },
    "login_code": {
        "en": ("Your {scheme} code: {code}",
               "Your login code is {code}. It works once, for {minutes} minutes.\n"
               "If you did not ask for it, ignore this message."),
        "cy": ("Eich cod {scheme}: {code}",
               "Eich cod mewngofnodi yw {code}. Mae'n gweithio unwaith, am {minutes} munud.\n"
               "Os na wnaethoch ofyn amdano, anwybyddwch y neges hon."),
    },
    "email_confirm": {
        "en": ("Confirm your new address for {scheme}",
               "Someone (we hope you) asked to use this address for a {scheme} account.\n"
               "To confirm, open the app with this code within 24 hours:\n\n{token}\n\n"
               "If you did not ask for it, ignore this message: nothing changes."),
        "cy": ("Cadarnhewch eich cyfeiriad newydd ar gyfer {scheme}",
               "Gofynnodd rhywun (chi, gobeithio) am ddefnyddio'r cyfeiriad hwn ar gyfer "
               "cyfrif {scheme}.\nI gadarnhau, agorwch yr ap gyda'r cod hwn o fewn 24 awr:"
               "\n\n{token}\n\nOs na wnaethoch ofyn amdano, anwybyddwch y neges hon: nid oes "
               "dim yn newid."),
    },
    "email_in_use": {
        "en": ("Someone asked to use this address for {scheme}",
               "Someone asked to move a {scheme} account to this address, but an account "
               "already uses it: nothing has changed. If it was you, sign in with this "
               "address instead. If not, you need do nothing."),
        "cy": ("Gofynnodd rhywun am ddefnyddio'r cyfeiriad hwn ar gyfer {scheme}",
               "Gofynnodd rhywun am symud cyfrif {scheme} i'r cyfeiriad hwn, ond mae cyfrif "
               "eisoes yn ei ddefnyddio: nid oes dim wedi newid. Os mai chi oedd e, "
               "mewngofnodwch gyda'r cyfeiriad hwn yn lle hynny. Os nad chi, nid oes angen "
               "i chi wneud dim."),
    },
    "email_changed": {
        "en": ("Your {scheme} address has changed",
               "Your account's address is now {new}. If you did not do this, contact the "
               "council's help desk."),
        "cy": ("Mae eich cyfeiriad {scheme} wedi newid",
               "Cyfeiriad eich cyfrif bellach yw {new}. Os na wnaethoch chi hyn, cysylltwch â "
               "desg gymorth y cyngor."),
    },
    "pin_set": {
        "en": ("Your {scheme} card PIN was set",
               "A council desk set a new PIN for the card on your account, which pays for "
               "rewards at partners' tills. If you did not ask for this, contact the "
               "council's help desk."),
        "cy": ("Gosodwyd PIN cerdyn {scheme}",
               "Gosododd desg y cyngor PIN newydd ar gyfer y cerdyn ar eich cyfrif, sy'n talu "
               "am wobrau wrth diliau partneriaid. Os na wnaethoch chi ofyn am hyn, cysylltwch "
               "â desg gymorth y cyngor."),
    },
}


def mail_language(locale: str | None, accept_language: str | None = None) -> str:
    """The saved locale first, then what the request asked for, among the scheme's
    languages that have notices; English otherwise."""
    wanted = preferences(None, locale) if locale else preferences(accept_language, None)
    offered = languages.spoken()
    for language in wanted:
        if (offered is None or language in offered) and languages.has(language, "NOTICES"):
            return language
    return languages.ENGLISH


def long_date(moment: datetime, language: str) -> str:
    """`05 March 2026` / `05 Mawrth 2026` (the month from the language's MONTHS)."""
    months = languages.table(language, "MONTHS")
    if months:
        return f"{moment:%d} {months[moment.month - 1]} {moment.year}"
    return f"{moment:%d %B %Y}"


def text(name: str, language: str, **values: object) -> tuple[str, str]:
    """(subject, body) of notice `name` in `language` (English if it has no such text)."""
    english = TEXTS[name]["en"]
    own = (languages.table(language, "NOTICES") or {}).get(name) if language != "en" else None
    subject, body = own or english
    return subject.format(**values), body.format(**values)
