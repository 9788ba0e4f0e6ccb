"""Validation errors in plain words: what was wrong and what was expected.

pydantic's own messages are written for programmers ("Extra inputs are not permitted",
"mean.2: Field required", "Input should be less than or equal to 1" for a NaN). Settings,
pipeline files, cards and job payloads all go through ``plain`` instead, which reads the
error's type and context and says it the way a user would: ``unknown key 'colour_order'
(did you mean 'color_order'?)``, ``mean: expected 3 numbers, got 2``.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["did_you_mean", "plain", "plural", "redact", "tuple_length"]


def redact(url: str) -> str:
    """The URL without its secrets: user info becomes ``***`` and query values ``***``
    (camera APIs put tokens there too).

    Done by hand rather than with ``urllib.parse``: cameras' passwords often hold unescaped
    ``#``, ``/`` or ``?``, which end a URL's authority early and would leave the password in
    what looks like the host or path. Everything up to the last ``@`` goes instead (hiding
    too much beats showing a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at >= 0:
        rest = "***@" + rest[at + 1 :]
    rest = rest.split("#", 1)[0]
    path, q, query = rest.partition("?")
    if q:
        parts = [p.split("=", 1)[0] + "=***" if "=" in p else "***" for p in query.split("&")]
        path += "?" + "&".join(parts)
    return f"{scheme}{sep}{path}"


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 packet``, ``2 packets``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a known word is close, else the empty string."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def tuple_length(annotation: Any) -> int | None:
    """How many items a fixed-length tuple annotation holds (``tuple[float, float, float]``:
    3), looking through ``X | None``; None for anything else."""
    for arg in (annotation, *typing.get_args(annotation)):
        origin = typing.get_origin(arg)
        if origin is tuple:
            args = typing.get_args(arg)
            if args and args[-1] is not Ellipsis:
                return len(args)
        if origin in (typing.Union, types.UnionType):
            continue
    return None


def _bound(ctx: Mapping[str, Any]) -> str:
    words = {"gt": "above", "ge": "at least", "lt": "below", "le": "at most"}
    return " and ".join(f"{words[k]} {ctx[k]}" for k in ("gt", "ge", "lt", "le") if k in ctx)


_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
#: Error kinds said in one sentence each; ``{got}`` is ", got <value>", the rest the error's
#: context.
_SAID: tuple[tuple[tuple[str, ...], str], ...] = (
    (("missing",), "is required"),
    (("literal_error",), "expected {expected}{got}"),
    (("finite_number",), "expected a finite number{got}"),
    (("int_parsing", "int_type", "int_from_float"), "expected a whole number{got}"),
    (("float_parsing", "float_type"), "expected a number{got}"),
    (("bool_parsing", "bool_type"), "expected true or false{got}"),
    (("string_type",), "expected text{got}"),
    (("list_type", "tuple_type"), "expected a list{got}"),
    (
        ("dict_type", "model_type", "model_attributes_type"),
        "expected a table of keys and values{got}",
    ),
    (("json_invalid", "json_type"), "expected JSON ({error})"),
    (("string_pattern_mismatch",), "{value} does not have the expected form ({pattern})"),
    (("string_too_long",), "expected at most {max_length} characters"),
    (("string_too_short",), "expected at least {min_length} characters"),
)


_DEFAULTS = {"expected": "one of the listed values", "error": "not valid JSON", "pattern": None}


def plain(
    err: Mapping[str, Any],
    *,
    known: Iterable[str] = (),
    lengths: Mapping[str, int] | None = None,
) -> tuple[str, str]:
    """(where, what) for one pydantic error: ``where`` is the dotted key (``card.mean``),
    ``what`` says what was wrong in plain words.

    ``known``: the valid keys, for "did you mean"; ``lengths``: fixed tuple lengths per field,
    so a short list reads "expected 3 numbers, got 2" instead of "field 2 is required".
    """
    loc = [str(p) for p in err.get("loc", ())]
    kind = str(err.get("type", ""))
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    # A tuple index at the end ("mean.2") is the field's problem, said about the field.
    index = None
    if len(loc) > 1 and loc[-1].isdigit() and lengths and loc[-2] in lengths:
        index = int(loc[-1])
        loc = loc[:-1]
    where = ".".join(loc)
    got = f", got {_shown(value)}"

    if kind == "extra_forbidden":
        return where, f"unknown key '{loc[-1] if loc else where}'{did_you_mean(loc[-1], known)}"
    if index is not None and lengths is not None and kind == "missing":
        return where, f"expected {lengths[loc[-1]]} values, got {index}"
    if index is not None:
        where = f"{where} (value {index + 1})"  # what is wrong is that value, said below
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        exact = lengths.get(loc[-1]) if lengths and loc else None
        need = f"{exact}" if exact else f"at least {n}" if kind == "too_short" else f"at most {n}"
        return where, f"expected {need} values, got {ctx.get('actual_length', '?')}"
    if kind in _BOUNDS:
        if isinstance(value, float) and math.isnan(value):
            return where, "expected a number, got nan"
        return where, f"expected a number {_bound(ctx)}{got}"
    if kind == "value_error":
        return where, str(err.get("msg", "")).removeprefix("Value error, ")
    for kinds, text in _SAID:
        if kind in kinds:
            return where, text.format_map({**_DEFAULTS, **ctx, "got": got, "value": _shown(value)})
    msg = str(err.get("msg", "invalid value"))
    return where, msg[:1].lower() + msg[1:] + got
