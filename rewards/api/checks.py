"""Field checks for text the database must be able to store: PostgreSQL takes no NUL
character in text or JSON, and no UTF-16 surrogate half (JSON can escape one alone).
And bounds on how much a body may hold, checked before its values are read."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields, validate

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
TEXT_PROBLEM = "Must not contain NUL characters or half of a UTF-16 surrogate pair."


def storable_text(value: Any) -> None:
    """A marshmallow validator for strings."""
    if isinstance(value, str) and _UNSTORABLE.search(value):
        raise ValidationError(TEXT_PROBLEM)


def storable_json(value: Any) -> None:
    """A marshmallow validator for JSON objects: every key and string storable, every
    number finite."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, inner in item.items():
                storable_text(key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValidationError("Numbers must be finite.")
        else:
            storable_text(item)


def clean_text(value: str) -> str:
    """Text from a file (a CSV's refs, an upload's name) made storable as it is shown."""
    return _UNSTORABLE.sub("\ufffd", value)


class MemberEmail(fields.Email):
    """A resident's email address, at most 254 characters in the spelling the scheme
    keeps it under (`members.normalise_email`): lower case and NFKC can lengthen an
    address ("İ" is two characters in lower case), and the column holds 254."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        from ..members import normalise_email

        address = super()._deserialize(value, attr, data, **kwargs)
        if len(normalise_email(address)) > EMAIL_MAX:
            raise ValidationError(f"Longer than maximum length {EMAIL_MAX}.")
        return address


EMAIL_MAX = 254


class List(fields.List):
    """A list whose Length validator (its most items) is checked before any item is
    read. marshmallow reads every item first and only then validates the length: an
    array of 300,000 empty objects in a 1 MB body cost seconds and answered tens of MB
    of errors, one per item, to be told the list was too long."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list | tuple):
            for validator in self.validators:
                most = getattr(validator, "max", None)
                if isinstance(validator, validate.Length) and most is not None \
                        and len(value) > most:
                    raise ValidationError(f"At most {most} items.")
        return super()._deserialize(value, attr, data, **kwargs)


class Dict(fields.Dict):
    """A JSON object of at most `most` keys, counted before any key or value is read
    (as List above); the spec says it as maxProperties."""

    def __init__(self, *args: Any, most: int, **kwargs: Any) -> None:
        kwargs["metadata"] = {**kwargs.get("metadata", {}), "maxProperties": most}
        super().__init__(*args, **kwargs)
        self.most = most

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, Mapping) and len(value) > self.most:
            raise ValidationError(f"At most {self.most} entries.")
        return super()._deserialize(value, attr, data, **kwargs)



def more_values_than(value: Any, most: int) -> bool:
    """Whether a parsed JSON body holds more than `most` values (each key, item and
    scalar counts), found without walking past that many."""
    seen, stack = 0, [value]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > most:
            return True
        if isinstance(item, Mapping):
            seen += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# Unknown fields named one by one in a refusal, at most; past that one error says how many.
UNKNOWN_NAMED = 20


def unknown_fields(schema: Any, data: Any, rule: str | None) -> list[str]:
    """The top-level names of `data` the schema does not take, where they are refused
    (`rule`, the location's handling of unknown fields: None for the schema's own)."""
    from marshmallow import RAISE

    if not isinstance(data, Mapping) or (rule or getattr(schema, "unknown", RAISE)) != RAISE:
        return []
    known = {field.data_key or name for name, field in schema.load_fields.items()}
    return [name for name in data if name not in known]
