"""Welsh forms of the words the figures write in their rows. Column labels carry their
own Welsh (`Column.label_cy`); a row whose text cell is one of these words carries its
Welsh under `<key>_cy` ("ward_cy", "category_cy", ...), as `money`'s rows carry
`label_cy`. The Welsh staff page shows it (and its CSV writes it); the English value
under `<key>` is what the API has always answered. Ward, partner and offer names are
proper names and stay as they are."""

from __future__ import annotations

ALL_WARDS = "Pob ward"
NO_WARD = "(dim ward)"
NOT_GIVEN = "heb ei roi"
NOT_SET = "heb ei osod"

CATEGORIES = {"travel": "teithio", "volunteering": "gwirfoddoli", "health": "iechyd",
              "housing": "tai", "climate": "hinsawdd"}
AGE_BANDS = {"under 18": "dan 18", "75 and over": "75 a throsodd", "not given": NOT_GIVEN}
PHASES = {"before": "cyn", "during": "yn ystod", "after": "ar ôl"}


def category(code: str) -> str:
    """A category code's Welsh name (an unknown code as it is)."""
    return CATEGORIES.get(code, code)


def age_band(band: str) -> str:
    return AGE_BANDS.get(band, band)  # "18-24" reads the same


def phase(value: str) -> str:
    return PHASES.get(value, value)


def next_days(days: int) -> str:
    return f"y {days} diwrnod nesaf"
