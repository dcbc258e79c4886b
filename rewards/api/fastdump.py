"""Answers of the hottest reads dumped by their marshmallow schema's declared fields,
without marshmallow's per-field machinery.

A page of twenty actions with their awards costs marshmallow about 200 field
`serialize` calls and more Python than the rest of the request (bench/README.md, "api.py").
`plain_dumper(Schema)` reads the schema once and returns a function doing the same dump
with one plain converter per field: the schema stays the single description of the
answer (and of the OpenAPI document), and `tests/test_fastdump.py` holds the two dumps
equal. Field kinds it does not know are dumped by the field itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from functools import cache
from typing import Any

from flask import Response, current_app
from marshmallow import Schema, fields
from marshmallow.utils import get_value
from marshmallow.utils import missing as _MARSHMALLOW_MISSING

Dump = Callable[[Any], dict[str, Any]]


def _none_or(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _same(value: Any) -> Any:
    return value


def _value_converter(field: fields.Field) -> Callable[[Any], Any] | None:
    """A plain function giving what `field` dumps for a value, or None if unknown."""
    if type(field) in (fields.String, fields.UUID, fields.Url, fields.Email):
        return _none_or(str)
    if type(field) is fields.Integer and not field.as_string:
        return _none_or(int)
    if type(field) in (fields.Boolean, fields.Raw):
        return _same  # marshmallow dumps these as they are
    if (type(field) in (fields.DateTime, fields.AwareDateTime, fields.NaiveDateTime)
            and field.format in (None, "iso")):
        return _none_or(datetime.isoformat)
    if type(field) is fields.Dict and field.key_field is None and field.value_field is None:
        return _none_or(dict)
    if type(field) is fields.Nested and isinstance(field.nested, type | Schema):
        inner = plain_dumper(field.nested if isinstance(field.nested, type)
                             else type(field.nested))
        if field.many:
            return _none_or(lambda values: [inner(value) for value in values])
        return _none_or(inner)
    if type(field) is fields.List:
        each = _value_converter(field.inner)
        if each is not None:
            return _none_or(lambda values: [each(value) for value in values])
    return None


def _getter(attribute: str) -> Callable[[Any], Any]:
    """The value marshmallow would read: a key of a dict, else an attribute; dotted
    paths through marshmallow's own reader."""
    if "." in attribute:
        return lambda obj: get_value(obj, attribute)
    marker = _MISSING

    def read(obj: Any) -> Any:
        if isinstance(obj, dict):
            return obj.get(attribute, marker)
        return getattr(obj, attribute, marker)

    return read


_MISSING = object()


@cache
def plain_dumper(schema_class: type[Schema]) -> Dump:
    """A function dumping one object as `schema_class().dump(obj)` does."""
    schema = schema_class()
    steps: list[Callable[[Any, dict[str, Any]], None]] = []
    for name, field in schema.dump_fields.items():
        key = field.data_key or name
        if type(field) is fields.Function:
            function = field.serialize_func

            def step(obj: Any, out: dict[str, Any], key: str = key,
                     function: Any = function) -> None:
                out[key] = function(obj)
        else:
            read = _getter(field.attribute or name)
            convert = _value_converter(field)
            if convert is None:
                def step(obj: Any, out: dict[str, Any], key: str = key, name: str = name,
                         field: fields.Field = field) -> None:
                    value = field.serialize(name, obj, accessor=schema.get_attribute)
                    if value is not _MARSHMALLOW_MISSING:
                        out[key] = value
            else:
                def step(obj: Any, out: dict[str, Any], key: str = key, read: Any = read,
                         convert: Any = convert) -> None:
                    value = read(obj)
                    if value is not _MISSING:
                        out[key] = convert(value)
        steps.append(step)

    def dump(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for step in steps:
            step(obj, out)
        return out

    return dump


def json_answer(schema_class: type[Schema], items: Iterable[Any] | Any, *,
                many: bool = True) -> Response:
    """The JSON response flask-smorest would make for `items` with `schema_class`
    (return it from a view decorated with `@blp.response`: a Response passes through,
    with the view's status and headers)."""
    dump = plain_dumper(schema_class)
    body = [dump(item) for item in items] if many else dump(items)
    return current_app.json.response(body)

