"""The configuration reference, generated from the spec's pydantic models: each key's type, bounds and
default as declared, and its description from the field's docstring. One source of truth: the page is
never edited by hand, and a test fails when it is stale.

    python -m geosolver_data.spec_reference > docs/reference/configuration.md   (or `make docs`)
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from geosolver_data.model_spec import Spec
from geosolver_data.spec import HttpSettings


def section_type(annotation: object) -> tuple[type[BaseModel], bool] | None:
    """(the section's model, whether the key holds a list of them) when a key is a section; else None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return section_type(args[0])
    if origin in (tuple, list) and args:
        inner = section_type(args[0])
        return (inner[0], True) if inner else None
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:  # an optional section
        return section_type(next(a for a in args if a is not type(None)))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None


def sections(model: type[BaseModel] = Spec, prefix: str = "",
             about: str = "The top level of the spec file.") -> list[tuple[str, type[BaseModel], str]]:
    """Every section of the spec, found from the models themselves (a new one cannot be left out):
    (key prefix, its model, what it is, from the field's description)."""
    found = [(prefix, model, about)]
    for name, field in model.model_fields.items():
        inner = section_type(field.annotation)
        if inner is not None:
            key = f"{prefix}.{name}" if prefix else name
            found += sections(inner[0], key + ("[]" if inner[1] else ""), _sentence(field.description or ""))
    return found


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return (text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def _bounds(field: FieldInfo) -> str:
    signs = {annotated_types.Ge: ("≥", "ge"), annotated_types.Gt: (">", "gt"), annotated_types.Le: ("≤", "le"),
             annotated_types.Lt: ("<", "lt")}
    parts = []
    for item in field.metadata:
        for kind, (sign, attr) in signs.items():
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, annotated_types.Interval):
            parts += [f"{sign} {getattr(item, attr)}" for sign, attr in signs.values()
                      if getattr(item, attr) is not None]
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"at least {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"at most {item.max_length} long")
    return ", ".join(parts)


def type_text(annotation: object) -> str:
    """A type as a spec writer reads it: integer, number, text, one of `a`, `b`, a list of ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (tuple, list):
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return f"list of {type_text(args[0])}"
        return f"[{', '.join(type_text(a) for a in args)}]"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in args)
    names = {int: "integer", float: "number", str: "text", bool: "true/false", type(None): "null"}
    if annotation in names:
        return names[annotation]  # type: ignore[index]
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "—"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _fields_own_first(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """A section's keys in declaration order, the HTTP settings a source shares with the fetcher last."""
    shared = HttpSettings.model_fields if model is not HttpSettings else {}
    return sorted(model.model_fields.items(), key=lambda item: item[0] in shared)


def rows(prefix: str, model: type[BaseModel]) -> Iterator[tuple[str, str, str, str]]:
    for name, field in _fields_own_first(model):
        key = f"{prefix}.{name}" if prefix else name
        bounds = _bounds(field)
        kind = type_text(field.annotation) + (f" ({bounds})" if bounds else "")
        inner = section_type(field.annotation)
        if inner is not None:
            kind = "list of sections" if inner[1] else "section"
        # Our own Markdown (code spans, links): kept, made one table cell
        yield f"`{key}`", kind, _default(field), " ".join((field.description or "").split()).replace("|", "\\|")


def render() -> str:
    lines = ["# Configuration reference", "",
             "Generated from the spec's pydantic models by `python -m geosolver_data.spec_reference` "
             "(`make docs` runs it): do not edit by hand. Every key is strict (`'50'` is not a number), "
             "unknown keys are errors, and a bad value stops with one line naming the key path.", ""]
    for prefix, model, about in sections():
        lines += [f"## {f'`{prefix}`' if prefix else 'Top level'}", "", about, "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows(prefix, model)]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
