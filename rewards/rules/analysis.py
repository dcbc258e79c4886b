"""What an expression reads from the context, so the engine can hand zen-engine only
that (converting a Python dict into the engine's values is most of the cost of an
evaluation), and which expressions are plain literals (worth no call at all).

The analysis is conservative: anything it does not fully understand (template
strings, escapes, `$root`) means "the whole context"."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ROOTS = frozenset({"action", "member", "now"})

# true, false, or a plain number: the value never depends on the context.
_LITERAL = re.compile(r"\s*(?:true|false|-?\d+(?:\.\d+)?)\s*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PROPERTY = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")

# Needs: for each root, the keys read under it, or None for the whole value.
Needs = dict[str, frozenset[str] | None]


def is_literal(expression: str) -> bool:
    return _LITERAL.fullmatch(expression) is not None


def _without_strings(expression: str) -> str | None:
    """The expression with the insides of string literals blanked, or None when it has
    anything that makes that unsafe to do simply (template strings, escapes, `$`)."""
    if any(mark in expression for mark in ("`", "\\", "$")):
        return None
    out: list[str] = []
    quote: str | None = None
    for char in expression:
        if quote is not None:
            if char == quote:
                quote = None
                out.append(char)
            else:
                out.append(" ")
        else:
            if char in "\"'":
                quote = char
            out.append(char)
    return None if quote is not None else "".join(out)


def _root_reads(text: str) -> Iterator[tuple[re.Match[str], re.Match[str] | None]]:
    """Each place `text` (string literals blanked) reads a root: the root's match, and
    the `.prop` read under it, or None where the root is read whole (bare, indexed with
    [], a range, or `now`)."""
    for match in _IDENTIFIER.finditer(text):
        if match.group() not in ROOTS:
            continue
        before = text[: match.start()].rstrip()
        if before.endswith(".") and not before.endswith(".."):
            continue  # a property of something else (x.action), not the root
        prop = _PROPERTY.match(text, match.end())
        after = text[match.end():].lstrip()
        if match.group() == "now" or prop is None or after.startswith(".."):
            yield match, None
        else:
            yield match, prop


def needs_of(expression: str) -> Needs | None:
    """The parts of the context an expression reads; None if unknown (use all of it)."""
    text = _without_strings(expression)
    if text is None:
        return None
    needs: dict[str, set[str] | None] = {}
    for match, prop in _root_reads(text):
        name = match.group()
        if prop is None:
            needs[name] = None
        elif needs.get(name, set()) is not None:
            needs.setdefault(name, set()).add(prop.group(1))  # type: ignore[union-attr]
    return {root: (None if keys is None else frozenset(keys)) for root, keys in needs.items()}


def merge(all_needs: Iterable[Needs | None]) -> Needs | None:
    merged: dict[str, frozenset[str] | None] = {}
    for needs in all_needs:
        if needs is None:
            return None
        for root, keys in needs.items():
            if root in merged and merged[root] is None:
                continue
            if keys is None:
                merged[root] = None
            else:
                merged[root] = (merged.get(root) or frozenset()) | keys
    return merged


def picker(needs: Needs | None) -> Callable[[Mapping[str, Any]], Any]:
    """A function giving the part of a context that `needs` reads. Keys it reads but the
    context lacks are left out, so they read as null either way."""
    if needs is None:
        return lambda context: context
    whole = tuple(root for root, keys in needs.items() if keys is None)
    parts = tuple((root, tuple(sorted(keys))) for root, keys in needs.items()
                  if keys is not None)

    def pick(context: Mapping[str, Any]) -> dict[str, Any]:
        picked = {root: context[root] for root in whole if root in context}
        for root, keys in parts:
            if root not in context:
                continue
            value = context[root]
            if isinstance(value, dict):
                picked[root] = {key: value[key] for key in keys if key in value}
            else:
                picked[root] = value
        return picked

    return pick


@dataclass(frozen=True)
class Flat:
    """An expression rewritten to read `root.prop` as one flat name `root__prop`, so
    the engine is handed a one-level dict (zen-engine converts nested dicts far more
    slowly). `props` are the (root, prop) pairs read that way, `wholes` the roots
    still read whole (bare, indexed with [], or `now`)."""

    text: str
    props: frozenset[tuple[str, str]]
    wholes: frozenset[str]


def flat_name(root: str, prop: str) -> str:
    return f"{root}__{prop}"


def flatten(expression: str) -> Flat | None:
    """The flat form of an expression, or None if it cannot be rewritten safely
    (anything needs_of does not understand, or names with "__" of its own)."""
    text = _without_strings(expression)
    if text is None or "__" in text:
        return None
    out: list[str] = []
    done = 0
    props: set[tuple[str, str]] = set()
    wholes: set[str] = set()
    for match, prop in _root_reads(text):
        name = match.group()
        if prop is None:
            wholes.add(name)
            continue
        out.append(expression[done : match.start()])
        out.append(flat_name(name, prop.group(1)))
        done = prop.end()
        props.add((name, prop.group(1)))
    out.append(expression[done:])
    return Flat("".join(out), frozenset(props), frozenset(wholes))


def flat_picker(flats: Iterable[Flat]) -> Callable[[Mapping[str, Any]], dict[str, Any] | None]:
    """A function giving the flat context the flattened expressions read, or None when
    the context is not shaped as build_context makes it (a root that is not a dict)."""
    grouped: dict[str, set[str]] = {}
    wholes: set[str] = set()
    for flat in flats:
        for root, prop in flat.props:
            grouped.setdefault(root, set()).add(prop)
        wholes |= flat.wholes
    groups = tuple((root, tuple((key, flat_name(root, key)) for key in sorted(keys)))
                   for root, keys in sorted(grouped.items()))
    whole = tuple(sorted(wholes))

    def pick(context: Mapping[str, Any]) -> dict[str, Any] | None:
        picked: dict[str, Any] = {}
        for root, items in groups:
            value = context.get(root)
            if type(value) is not dict:
                if value is None:
                    continue  # absent or null: every root.prop reads null either way
                return None
            for key, name in items:
                if key in value:
                    picked[name] = value[key]
        for root in whole:
            if root in context:
                picked[root] = context[root]
        return picked

    return pick
