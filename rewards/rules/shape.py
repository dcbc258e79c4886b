"""Bounds on an expression's size and shape, checked before zen-engine sees it.

zen-engine parses and evaluates recursively, and iterates what it is given: a deeply
enough nested expression overflows its stack (the process dies, not just the request),
a closure over a range such as `count([0..1000000000], # > 5)` allocates the whole
range (gigabytes, or an abort), and closures nested in closures multiply their
iterations (two over a long list of attributes take seconds per action). So:

- an expression is at most `max_chars` characters (RULE_EXPRESSION_MAX_CHARS);
- brackets, parentheses, braces and template `${}` nest at most MAX_DEPTH deep;
- a range (`[a..b]`, `(a..b)` and mixed) only follows `in` or `not in`, where the
  engine tests membership without building it;
- a closure function (map, filter, count, ...) is not called inside another's
  callback (its array argument may hold one: that runs once);
- counted repetitions (`{n}`, `{n,m}`) in its strings total at most MAX_REPEATS: the
  engine compiles a regular expression (matches, extract) on every call, and
  `.{9999}` takes over 100 ms to compile, so 70 of them took 5 s per action. Counts
  in one string are multiplied (as `(.{30}){30}` repeats 900 times), over the
  expression added up.

A checker that only scans, never evaluates: linear in the expression's length."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

# Deepest nesting of (), [], {} and ${} an expression may have.
MAX_DEPTH = 32
# The default for RULE_EXPRESSION_MAX_CHARS.
DEFAULT_MAX_CHARS = 2000
# zen-engine's functions that call a closure (`#`) once per item of an array.
CLOSURES = frozenset({"all", "some", "none", "one", "filter", "map", "flatMap", "count"})

# What counted repetitions in an expression's strings may total (see above).
MAX_REPEATS = 256
_COUNTED = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")

_OPEN = "([{"
_CLOSE = ")]}"


class ShapeError(ValueError):
    """An expression too long, too deep, or of a shape the engine runs unboundedly."""


def _tokens(text: str) -> Iterator[str]:
    """The tokens that matter here: words, "..", single punctuation, "${" (opens a
    template's code), each string literal with its quotes, and each run of template
    text after a "`"."""
    i, n = 0, len(text)
    # For each open "{" or "${": whether its "}" returns to a template string.
    braces: list[bool] = []
    in_template = False
    while i < n:
        if in_template:
            start = i
            while i < n and text[i] != "`" and not text.startswith("${", i):
                i += 2 if text[i] == "\\" else 1
            if i > start:
                yield "`" + text[start:i]
            if i >= n:
                return
            if text[i] == "`":
                in_template = False
                i += 1
            else:
                braces.append(True)
                in_template = False
                i += 2
                yield "${"
            continue
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "\"'":
            start = i
            i += 1
            while i < n and text[i] != char:
                i += 2 if text[i] == "\\" else 1
            i += 1
            yield text[start:i]
        elif char == "`":
            in_template = True
            i += 1
        elif char.isalnum() or char in "_$#":
            start = i
            while i < n and (text[i].isalnum() or text[i] in "_$#"):
                i += 1
            # A decimal point belongs to a number; ".." never does.
            if text[start].isdigit() and text.startswith(".", i) and not text.startswith(
                    "..", i):
                i += 1
                while i < n and text[i].isalnum():
                    i += 1
            yield text[start:i]
        elif text.startswith("..", i):
            i += 2
            yield ".."
        else:
            i += 1
            if char == "{":
                braces.append(False)
            elif char == "}" and braces:
                if braces.pop():
                    in_template = True
                    yield "}"
                    continue
            yield char


class _Group:
    __slots__ = ("after_in", "argument", "closure")

    def __init__(self, closure: bool, after_in: bool) -> None:
        self.closure = closure  # a closure function's argument list
        self.after_in = after_in  # opened straight after `in`
        self.argument = 0  # which argument (after how many top-level commas)


def check_shape(expression: str, max_chars: int | None = DEFAULT_MAX_CHARS) -> None:
    """Raise ShapeError, saying what to change, if the expression is past a bound
    (with max_chars None, any length: the shape alone is checked)."""
    if max_chars is not None and len(expression) > max_chars:
        raise ShapeError(f"an expression may have at most {max_chars} characters, "
                         f"this has {len(expression)}")
    groups: list[_Group] = []
    repeats = 0
    before = ""  # the previous token
    in_callback = 0  # closure callbacks we are inside
    for token in _tokens(expression):
        if token[0] in "\"'`":
            counts = [max(int(low), int(high or 0))
                      for low, high in _COUNTED.findall(token)]
            repeats += math.prod(counts) if counts else 0
            if repeats > MAX_REPEATS:
                raise ShapeError(f"counted repetitions such as {{9}} in its strings may "
                                 f"total at most {MAX_REPEATS} (they multiply within "
                                 "one string)")
        elif token in _OPEN or token == "${":
            closure = token == "(" and before in CLOSURES
            if closure and in_callback:
                raise ShapeError(f"{before}() inside another closure function's callback "
                                 "repeats for every item of every item: not allowed")
            groups.append(_Group(closure, before == "in"))
            if len(groups) > MAX_DEPTH:
                raise ShapeError(f"brackets and parentheses may nest at most {MAX_DEPTH} "
                                 "deep")
        elif token in _CLOSE:
            if groups:
                group = groups.pop()
                if group.closure and group.argument:
                    in_callback -= 1
        elif token == ",":
            if groups:
                group = groups[-1]
                if group.closure and group.argument == 0:
                    in_callback += 1
                group.argument += 1
        elif token == "..":
            if not groups or groups[-1].closure or not groups[-1].after_in:
                raise ShapeError("a range such as [1..5] may only follow `in` "
                                 "(x in [1..5]); it cannot be listed or iterated")
        before = token
