"""One-line spec errors that name the key path and say what was expected.

pydantic reports `('balance', 'cap')` and "Input should be a valid integer"; a person wants
`balance.cap: expected a positive integer, got 'fifty'`. The expectation is read from the field's
own declaration (type, bounds, allowed values), so the message and the check never drift apart.
"""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from geosolver_data.errors import UsageError


class SpecError(UsageError, ValueError):
    """The spec is malformed; the message names the key and what is wrong."""


def key_path(loc: tuple[int | str, ...]) -> str:
    """('regions', 0, 'bbox') -> 'regions[0].bbox'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "spec"


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """Strip Annotated and Optional layers, collecting bounds (Ge, Gt, …) along the way."""
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        for item in extra:
            metadata = [*metadata, *(item.metadata if isinstance(item, FieldInfo) else [item])]
    if get_origin(annotation) in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _unwrap(options[0], metadata)
    return annotation, metadata


def _child(annotation: Any, part: int | str) -> tuple[Any, list[Any]] | None:
    """The declaration one step down: a model's field, a sequence's element or a mapping's value."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return None if field is None else (field.annotation, list(field.metadata))
    args = get_args(annotation)
    if get_origin(annotation) is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0], []
        return (args[part], []) if isinstance(part, int) and part < len(args) else None
    if get_origin(annotation) in (list, set, frozenset) and args:
        return args[0], []
    if get_origin(annotation) is dict and args:
        return (args[0], []) if part == "[key]" else (args[1], [])
    return None


def declaration(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[Any, list[Any]] | None:
    annotation, metadata = model, []
    for part in loc:
        step = _child(_unwrap(annotation, metadata)[0], part)
        if step is None:
            return None
        annotation, metadata = step
    return _unwrap(annotation, metadata)


def _bounds(metadata: list[Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for item in metadata:
        for name in ("gt", "ge", "lt", "le"):
            value = getattr(item, name, None)  # annotated_types' Gt(gt=0), Ge(ge=1), …
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[name] = value
    return found


def _number(noun: str, metadata: list[Any]) -> str:
    b = _bounds(metadata)
    if b in ({"gt": 0}, {"ge": 1}) and noun == "integer":
        return "a positive integer"
    if b == {"gt": 0}:
        return f"a positive {noun}"
    if "ge" in b and "le" in b:
        return f"a{'n' if noun == 'integer' else ''} {noun} in {b['ge']:g}..{b['le']:g}"
    limits = [f"{sign} {b[name]:g}" for name, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
              if name in b]
    article = "an" if noun == "integer" else "a"
    return f"{article} {noun}" + (f" {' and '.join(limits)}" if limits else "")


def expected(annotation: Any, metadata: list[Any]) -> str:
    """What a value of this declaration looks like, in words."""
    origin = get_origin(annotation)
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return _number("integer", metadata)
    if annotation is float:
        return _number("number", metadata)
    if annotation is str:
        pattern = next((m.pattern for m in metadata if getattr(m, "pattern", None)), None)
        if pattern is None:
            return "a string"
        if "Gi" in pattern:
            return "a Kubernetes quantity such as `64Gi` or `8` (or nothing)"
        return "a name of letters, digits, '-' and '_'" if "A-Za-z0-9" in pattern else f"a string matching {pattern}"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        item = _plural(expected(*_unwrap(args[0], []))) if args else "values"
        fixed = origin is tuple and len(args) > 1
        return f"a list of {len(args)} {item}" if fixed else f"a list of {item}"
    if origin is dict or (inspect.isclass(annotation) and issubclass(annotation, BaseModel)):
        return "a mapping"
    return "a valid value"


def _plural(phrase: str) -> str:
    """'an integer in 0..15' -> 'integers in 0..15'."""
    words = phrase.split(" ")
    if words[0] in ("a", "an"):
        words = words[1:]
    for i, word in enumerate(words):
        if word in ("integer", "number", "string", "name", "mapping"):
            words[i] = word + "s"
            break
    return " ".join(words)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_error(error: dict, model: type[BaseModel]) -> str:
    loc, kind = tuple(error["loc"]), error["type"]
    if kind == "missing" and loc and isinstance(loc[-1], int):
        loc, kind = loc[:-1], "too_short"  # a fixed-length list (a bbox) with too few items
    if loc and loc[-1] == "[key]":  # a mapping's key that is not allowed: (..., 'splits', 'exam', '[key]')
        found = declaration(model, (*loc[:-2], "[key]"))
        what = expected(*found) if found else "a known key"
        return f"{key_path(loc[:-2])}: unknown key {_shown(error.get('input'))}, expected {what}"
    path = key_path(loc)
    if kind == "extra_forbidden":
        parent = declaration(model, loc[:-1])
        known = sorted(parent[0].model_fields) if parent and inspect.isclass(parent[0]) else []
        return f"{path}: unknown key" + (f" (known keys here: {', '.join(known)})" if known else "")
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind in ("value_error", "assertion_error"):
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return f"{path}: {message}" if loc else message
    found = declaration(model, loc)
    if found is None:
        return f"{path}: {error['msg']}, got {_shown(error.get('input'))}"
    what = expected(*found)
    if kind == "too_short" and what.startswith("a list of ") and not what[10].isdigit():
        what = what.replace("a list", "a non-empty list", 1)
    return f"{path}: expected {what}, got {_shown(error.get('input'))}"


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first problem on one line, and how many more there are. An error about a list that only
    echoes a failure inside one of its items (pydantic then also finds the list too short) is left out."""
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    errors = [e for e, loc in zip(errors, locs, strict=True)
              if not any(other[:len(loc)] == loc and len(other) > len(loc) for other in locs)]
    more = len(errors) - 1
    return describe_error(errors[0], model) + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
