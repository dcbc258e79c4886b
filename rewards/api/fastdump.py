"""Answers of the hottest reads dumped by their marshmallow schema's declared fields,
without marshmallow's per-field machinery.

A page of twenty actions with their awards costs marshmallow about 200 field
`serialize` calls and more Python than the rest of the request (bench/README.md, "api.py").
`plain_dumper(Schema)` reads the schema once and writes a function doing the same dump
(one line of Python a field, compiled once): the schema stays the single description of the
answer (and of the OpenAPI document), and `tests/test_fastdump.py` holds the two dumps
equal. Field kinds it does not know are dumped by the field itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import orjson
from flask import Response, current_app
from marshmallow import Schema, fields
from marshmallow.utils import missing as _MARSHMALLOW_MISSING

Dump = Callable[[Any], dict[str, Any]]


# What each simple field kind dumps for a value `v`, as an expression (marshmallow's
# own `_serialize` for that kind, with its shortcut for a value already of the type).
_EXPRESSIONS: dict[type, str] = {
    fields.String: "v if v is None or type(v) is str else str(v)",
    fields.Url: "v if v is None or type(v) is str else str(v)",
    fields.Email: "v if v is None or type(v) is str else str(v)",
    fields.UUID: "None if v is None else str(v)",
    fields.Boolean: "v",  # marshmallow dumps these as they are
    fields.Raw: "v",
    fields.DateTime: "None if v is None else v.isoformat()",
    fields.AwareDateTime: "None if v is None else v.isoformat()",
    fields.NaiveDateTime: "None if v is None else v.isoformat()",
}


def _expression(field: fields.Field, name: str, helpers: dict[str, Any]) -> str | None:
    """A Python expression of `v` giving what `field` dumps, or None if not known here
    (helpers it calls are added to `helpers` under `name`)."""
    kind = type(field)
    if kind in (fields.DateTime, fields.AwareDateTime, fields.NaiveDateTime) \
            and field.format not in (None, "iso"):
        return None
    if kind in _EXPRESSIONS:
        return _EXPRESSIONS[kind]
    if kind is fields.Integer and not field.as_string:
        return "v if v is None or type(v) is int else int(v)"
    if kind is fields.Dict and field.key_field is None and field.value_field is None:
        return "None if v is None else dict(v)"
    if kind is fields.Nested and isinstance(field.nested, type | Schema):
        helpers[name] = plain_dumper(field.nested if isinstance(field.nested, type)
                                     else type(field.nested))
        if field.many:
            return f"None if v is None else [{name}(each) for each in v]"
        return f"None if v is None else {name}(v)"
    if kind is fields.List:
        inner = _expression(field.inner, name + "_each", helpers)
        if inner is not None:
            helpers[name + "_one"] = eval(f"lambda v: {inner}", helpers)  # noqa: S307
            return f"None if v is None else [{name}_one(each) for each in v]"
    return None


_MISSING = object()


@cache
def plain_dumper(schema_class: type[Schema]) -> Dump:
    """A function dumping one object as `schema_class().dump(obj)` does: Python source
    written from the schema's fields once (one line a field, a branch for dicts and
    one for objects), compiled, and kept."""
    schema = schema_class()
    helpers: dict[str, Any] = {"M": _MISSING, "MM": _MARSHMALLOW_MISSING}
    for_dict: list[str] = []
    for_object: list[str] = []
    for number, (name, field) in enumerate(schema.dump_fields.items()):
        key = repr(field.data_key or name)
        attribute = field.attribute or name
        helper = f"h{number}"
        if type(field) is fields.Function:
            helpers[helper] = field.serialize_func
            for_dict.append(f"out[{key}] = {helper}(obj)")
            for_object.append(f"out[{key}] = {helper}(obj)")
            continue
        expression = None if "." in attribute else _expression(field, helper, helpers)
        if expression is None:  # the field dumps it itself
            helpers[helper + "_field"] = field
            helpers[helper + "_get"] = schema.get_attribute
            line = (f"v = {helper}_field.serialize({name!r}, obj, accessor={helper}_get)\n"
                    f"if v is not MM: out[{key}] = v")
            for_dict.append(line)
            for_object.append(line)
            continue
        for_dict.append(f"v = get({attribute!r}, M)\nif v is not M: out[{key}] = {expression}")
        for_object.append(f"v = getattr(obj, {attribute!r}, M)\n"
                          f"if v is not M: out[{key}] = {expression}")

    def block(lines: list[str]) -> str:
        return "\n".join("        " + part for line in lines for part in line.split("\n"))

    source = ("def dump(obj):\n    out = {}\n    if isinstance(obj, dict):\n"
              "        get = obj.get\n" + block(for_dict) + "\n    else:\n"
              + block(for_object) + "\n    return out\n")
    exec(compile(source, f"<plain dump of {schema_class.__name__}>", "exec"),  # noqa: S102
         helpers)
    return helpers["dump"]


def json_answer(schema_class: type[Schema], items: Iterable[Any] | Any, *,
                many: bool = True) -> Response:
    """The JSON response flask-smorest would make for `items` with `schema_class`
    (return it from a view decorated with `@blp.response`: a Response passes through,
    with the view's status and headers)."""
    dump = plain_dumper(schema_class)
    return json_body([dump(item) for item in items] if many else dump(items))


def json_body(body: Any) -> Response:
    """`body` (a schema's dump) as the JSON response flask-smorest would make of it."""
    try:
        # orjson writes the same JSON as Flask's provider (sorted keys, compact, a
        # closing newline) several times faster; characters beyond ASCII go as UTF-8
        # rather than \u escapes, which any JSON reader reads alike.
        data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a value orjson does not write (a Decimal): Flask's way
        return current_app.json.response(body)
    return current_app.response_class(data, mimetype=current_app.json.mimetype)

