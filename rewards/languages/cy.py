"""Welsh. The texts live beside their English (rewards/reasons_cy.py, notice_text.py,
statement_text.py, i18n.py STAFF_TEXT), where each new English text gets its Welsh."""

from __future__ import annotations

from ..i18n import STAFF_TEXT
from ..notice_text import TEXTS, WELSH_MONTHS
from ..reasons_cy import WELSH
from ..statement_text import NOW_SPENDABLE as _NOW_SPENDABLE
from ..statement_text import WELSH as _STATEMENT

NAME = "Cymraeg"
DIRECTION = "ltr"
REASONS = WELSH
NOTICES = {name: versions["cy"] for name, versions in TEXTS.items() if "cy" in versions}
MONTHS = WELSH_MONTHS
STATEMENT = {pattern.pattern: welsh for pattern, welsh in _STATEMENT}
NOW_SPENDABLE = _NOW_SPENDABLE[1]
STAFF = {key: welsh for key, (_, welsh) in STAFF_TEXT.items()}
