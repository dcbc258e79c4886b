"""Choosing the language of catalogue text: the request's Accept-Language first (the
app asks for what the phone is set to), else the member's saved locale, else English.
Pure functions: no Flask, no database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_LANGUAGE = "en"


def primary(tag: str | None) -> str | None:
    """"cy-GB" -> "cy"; None or junk -> None."""
    if not tag:
        return None
    head = tag.strip().split("-", 1)[0].split("_", 1)[0].lower()
    return head if head.isalpha() and 2 <= len(head) <= 3 else None


def parse_accept_language(header: str | None) -> list[str]:
    """Primary language tags in the order the client prefers them (by q, then as
    written); q=0 means "not this one" and is left out, "*" is ignored."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = primary(tag)
        if language and quality > 0:
            ranked.append((-quality, index, language))
    seen: list[str] = []
    for _, _, language in sorted(ranked):
        if language not in seen:
            seen.append(language)
    return seen


def preferences(accept_language: str | None, locale: str | None) -> list[str]:
    """Languages to try, best first; English always last."""
    wanted = parse_accept_language(accept_language)
    saved = primary(locale)
    if saved and saved not in wanted:
        wanted.append(saved)
    if DEFAULT_LANGUAGE not in wanted:
        wanted.append(DEFAULT_LANGUAGE)
    return wanted


def choose(wanted: Iterable[str], available: Iterable[str]) -> str:
    have = set(available) | {DEFAULT_LANGUAGE}
    for language in wanted:
        if language in have:
            return language
    return DEFAULT_LANGUAGE


def localise(
    title: str,
    description: str | None,
    translations: Mapping[str, Any] | None,
    wanted: Iterable[str],
) -> tuple[str, str | None, str]:
    """(title, description, language) in the best language the offer has. A
    translation without a description falls back to the English description."""
    translations = translations or {}
    language = choose(wanted, translations)
    if language == DEFAULT_LANGUAGE or language not in translations:
        return title, description, DEFAULT_LANGUAGE
    text = translations[language] or {}
    return (text.get("title") or title, text.get("description") or description, language)


# -- the staff pages' own words (English, Welsh) ----------------------------------------------
# Figure titles and column labels come with the figures (title_cy, label_cy); these are the
# words around them. A key missing here is a bug the staff page tests catch. Another
# language's words are its STAFF in rewards/languages/<code>.py; a key it lacks is English.

STAFF_TEXT: dict[str, tuple[str, str]] = {
    "dashboard": ("Dashboard", "Dangosfwrdd"),
    "staff_dashboard": ("Staff dashboard", "Dangosfwrdd staff"),
    "skip": ("Skip to main content", "Neidio i'r prif gynnwys"),
    "main_nav": ("Dashboard pages", "Tudalennau'r dangosfwrdd"),
    "overview": ("Overview", "Trosolwg"),
    "reach": ("Reach", "Cyrhaeddiad"),
    "engagement": ("Engagement", "Ymgysylltiad"),
    "behaviour": ("Behaviour change", "Newid ymddygiad"),
    "impact": ("Impact", "Effaith"),
    "money": ("Money", "Arian"),
    "fairness": ("Fairness", "Tegwch"),
    "report": ("Monthly impact report", "Adroddiad effaith misol"),
    "open_data": ("Open data export (zip of CSV files)",
                  "Allforio data agored (zip o ffeiliau CSV)"),
    "open_data_dictionary": ("Open data dictionary", "Geiriadur data agored"),
    "log_in": ("Log in", "Mewngofnodi"),
    "log_out": ("Log out", "Allgofnodi"),
    "staff_login": ("Staff login", "Mewngofnodi staff"),
    "email": ("Email", "E-bost"),
    "password": ("Password", "Cyfrinair"),
    "one_time_code": ("One-time code (if your account has one)",
                      "Cod untro (os oes gan eich cyfrif un)"),
    "login_failed": ("Email, password or authenticator code is not right.",
                     "Nid yw'r e-bost, y cyfrinair na'r cod dilysu yn gywir."),
    "login_role": ("This account cannot see the dashboard.",
                   "Ni all y cyfrif hwn weld y dangosfwrdd."),
    "login_enrol": ("This account must set up its second factor (an authenticator app) "
                    "before it can see the dashboard: enrol it through the API "
                    "(POST /v1/auth/totp), then log in here with its code.",
                    "Rhaid i'r cyfrif hwn osod ei ail ffactor (ap dilysu) cyn y gall weld "
                    "y dangosfwrdd: cofrestrwch ef drwy'r API (POST /v1/auth/totp), yna "
                    "mewngofnodwch yma gyda'i god."),
    "form_expired": ("The form expired; try again.",
                     "Daeth y ffurflen i ben; rhowch gynnig arall."),
    "needs_https": ("Signing in here needs HTTPS: this page was served over plain http, so "
                    "the browser does not send back its sign-in cookie.",
                    "Mae angen HTTPS i fewngofnodi yma: daeth y dudalen hon dros http plaen, "
                    "felly nid yw'r porwr yn anfon ei gwci mewngofnodi yn ôl."),
    "signed_in_as": ("Signed in as", "Wedi mewngofnodi fel"),
    "language": ("Language", "Iaith"),
    "filters": ("Filters", "Hidlyddion"),
    "date_from": ("From", "O"),
    "date_to": ("To", "I"),
    "ward": ("Ward", "Ward"),
    "category": ("Category", "Categori"),
    "action_type": ("Action type", "Math o weithred"),
    "all": ("All", "Pob un"),
    "apply": ("Show figures", "Dangos ffigurau"),
    "bad_filters": ("The filters are not valid", "Nid yw'r hidlyddion yn ddilys"),
    "download_csv": ("Download CSV", "Lawrlwytho CSV"),
    "data_table": ("Data table", "Tabl data"),
    "chart_label": ("Chart of {title}. The same figures are in the table below.",
                    "Siart o {title}. Mae'r un ffigurau yn y tabl isod."),
    "suppressed": ("suppressed (fewer than {n} members)", "wedi'i atal (llai na {n} aelod)"),
    "suppressed_short": ("suppressed", "wedi'i atal"),
    "suppressed_why": ("(fewer than {n} members)", "(llai na {n} aelod)"),
    "plus_suppressed": ("not counting {n} suppressed cells", "heb gyfrif {n} cell wedi'u hatal"),
    "suppressed_cells": ("Suppressed cells", "Celloedd wedi'u hatal"),
    "suppressed_note": ("Cells counting fewer than {n} members are suppressed to protect privacy.",
                        "Mae celloedd sy'n cyfrif llai na {n} aelod wedi'u hatal i ddiogelu "
                        "preifatrwydd."),
    "no_rows": ("No figures for these filters.", "Dim ffigurau ar gyfer yr hidlyddion hyn."),
    "notes": ("Notes", "Nodiadau"),
    "headlines": ("Headline figures", "Prif ffigurau"),
    "active_30d": ("Active members, last 30 days", "Aelodau gweithgar, 30 diwrnod olaf"),
    "active_7d": ("Active members, last 7 days", "Aelodau gweithgar, 7 diwrnod olaf"),
    "liability_pounds": ("Liability in money", "Rhwymedigaeth mewn arian"),
    "actions": ("Verified actions", "Gweithredoedd wedi'u gwirio"),
    "points_issued": ("Points issued", "Pwyntiau a roddwyd"),
    "liability": ("Points outstanding (liability)", "Pwyntiau heb eu gwario (rhwymedigaeth)"),
    "figures_in_period": ("Figures for {start} to {end}", "Ffigurau ar gyfer {start} i {end}"),
    "month": ("Month", "Mis"),
    "show_report": ("Show report", "Dangos adroddiad"),
    "print": ("Print this report", "Argraffu'r adroddiad hwn"),
    "bad_month": ("The month must be written YYYY-MM.", "Rhaid ysgrifennu'r mis fel BBBB-MM."),
    "not_found": ("No such page.", "Nid oes tudalen o'r fath."),
    "forbidden": ("Your role cannot see this page.", "Ni all eich rôl weld y dudalen hon."),
    # Error pages (rewards/web/errors.py): plain words, the status code in the heading.
    "error_heading": ("Error {code}", "Gwall {code}"),
    "error_bad_request": ("The page could not use what was sent. Go back and try again.",
                          "Ni allai'r dudalen ddefnyddio'r hyn a anfonwyd. Ewch yn ôl a "
                          "rhowch gynnig arall."),
    "error_sign_in": ("You need to sign in to see this page.",
                      "Mae angen i chi fewngofnodi i weld y dudalen hon."),
    "error_method": ("This page cannot be used that way.",
                     "Ni ellir defnyddio'r dudalen hon yn y ffordd honno."),
    "error_too_large": ("What was sent is too large.", "Mae'r hyn a anfonwyd yn rhy fawr."),
    "error_address_too_long": ("The address of this page is too long.",
                               "Mae cyfeiriad y dudalen hon yn rhy hir."),
    "error_too_many": ("Too many tries in a short time. Wait a few minutes, then try again.",
                       "Gormod o ymdrechion mewn amser byr. Arhoswch ychydig funudau, yna "
                       "rhowch gynnig arall."),
    "error_refused": ("This request could not be done.", "Ni ellid gwneud y cais hwn."),
    "error_server": ("Something went wrong on our side; it has been logged. Please try "
                     "again later.",
                     "Aeth rhywbeth o'i le ar ein hochr ni; mae wedi'i gofnodi. Rhowch "
                     "gynnig arall yn nes ymlaen."),
    "error_unavailable": ("The service is briefly unavailable. Nothing was changed: please "
                          "try again in a moment.",
                          "Nid yw'r gwasanaeth ar gael am ennyd. Ni newidiwyd dim: rhowch "
                          "gynnig arall mewn munud."),
    "back_to_redeem": ("Back to the redeem page", "Yn ôl i'r dudalen adbrynu"),
    "back_home": ("Back to the home page", "Yn ôl i'r hafan"),
}


def staff_languages(scheme_languages: Iterable[str]) -> tuple[str, ...]:
    """The languages the staff pages can be read in: English, then each of the scheme's
    languages whose module has staff texts (Welsh for the default en,cy)."""
    from . import languages

    return (DEFAULT_LANGUAGE, *(code for code in scheme_languages
                                if code != DEFAULT_LANGUAGE and languages.has(code, "STAFF")))


def staff_language(requested: str | None, saved: str | None, accept_language: str | None,
                   offered: Iterable[str] = (DEFAULT_LANGUAGE, "cy")) -> str:
    """The staff pages' language among `offered`: ?lang= first, then the one chosen
    earlier, then the browser's Accept-Language, else English."""
    offered = tuple(offered)
    for choice in (primary(requested), primary(saved)):
        if choice in offered:
            return choice
    return choose(parse_accept_language(accept_language), offered)


def staff_text(key: str, language: str, **values: object) -> str:
    from . import languages

    english = STAFF_TEXT[key][0]
    text = english if language == DEFAULT_LANGUAGE else (
        (languages.table(language, "STAFF") or {}).get(key) or english)
    return text.format(**values) if values else text
