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
