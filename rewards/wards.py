"""Wards: the list the council loads (`rewards wards load`), the postcode lookup
(`rewards wards postcodes`), and finding a member's ward from either."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .models.ward import Ward, WardPostcode

# Any council's postcodes: 3 to 8 letters and digits with at least one digit, once spaces
# and hyphens are left out (LS6 3QS, 40121, 018956, 6100000). The lookup the council
# loads says which are real; this only keeps junk out of it.
_POSTCODE = re.compile(r"(?=.*[0-9])[A-Z0-9]{3,8}")


def normalise_postcode(text: str) -> str | None:
    """`ls6 3qs` -> `LS63QS`, `40121` -> `40121`; None if it is not shaped like a postcode."""
    postcode = "".join(text.replace("-", " ").split()).upper()
    return postcode if _POSTCODE.fullmatch(postcode) else None


def all_wards(session: Session) -> list[Ward]:
    return list(session.scalars(select(Ward).order_by(Ward.name)))


def ward_named(session: Session, text: str) -> Ward | None:
    """The ward with this code or name (case and spacing aside)."""
    wanted = " ".join(text.split())
    return session.scalar(select(Ward).where(
        (Ward.code == wanted) | (func.lower(Ward.name) == wanted.lower())))


def ward_names(session: Session, texts: Iterable[str]) -> tuple[list[str], list[str]]:
    """The wards' names for these codes or names, in order and without repeats, and the
    texts that name no ward."""
    names: list[str] = []
    unknown: list[str] = []
    for text in texts:
        ward = ward_named(session, text)
        if ward is None:
            unknown.append(text)
        elif ward.name not in names:
            names.append(ward.name)
    return names, unknown


def ward_for_postcode(session: Session, text: str) -> Ward | None:
    postcode = normalise_postcode(text)
    if postcode is None:
        return None
    return session.scalar(select(Ward).join(WardPostcode, WardPostcode.ward_code == Ward.code)
                          .where(WardPostcode.postcode == postcode))


def load_wards(session: Session, rows: Iterable[tuple[str, str]]) -> int:
    """Add or rename wards by code; returns how many rows were read. Wards are not
    removed: members may be in them."""
    count = 0
    for code, name in rows:
        ward = session.get(Ward, code.strip())
        if ward is None:
            session.add(Ward(code=code.strip(), name=" ".join(name.split())))
        else:
            ward.name = " ".join(name.split())
        count += 1
    session.flush()
    return count


def load_postcodes(session: Session, rows: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """Replace the postcode lookup: (postcodes loaded, rows skipped as not postcodes or
    naming no known ward)."""
    known = set(session.scalars(select(Ward.code)))
    session.execute(delete(WardPostcode))
    loaded = skipped = 0
    seen: set[str] = set()
    for text, code in rows:
        postcode = normalise_postcode(text)
        if postcode is None or code.strip() not in known or postcode in seen:
            skipped += 1
            continue
        seen.add(postcode)
        session.add(WardPostcode(postcode=postcode, ward_code=code.strip()))
        loaded += 1
    session.flush()
    return loaded, skipped
