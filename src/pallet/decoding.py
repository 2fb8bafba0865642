"""Typed decoding of what users send (request bodies, configuration files) into msgspec structs, with
errors that name the field, the row and what was expected.

A field says what it expects in its schema: `Meta(extra={"expected": "a non-empty list of ..."})`
(else its type does: "a string", "a number"). A struct that is one element of a list may name
itself by its `name` field (`label = "input"` gives "input 'x'"); `noun` names its keys in the
message for an unknown one ("parameter 'y' is not supported"), or `unknown` words that message
whole ("unknown key(s) {keys}; it takes {known}", listing every unknown key found there).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import inspect

from pallet.errors import InvalidInput

AT = re.compile(r"^(?P<message>.*?)(?: - at (?:`key` in )?`\$(?P<path>.*)`)?$", re.S)  # a key: its object
SEGMENT = re.compile(r"\.(\w+)|\[(\d+|\.\.\.)\]")
TYPE_PHRASES = {inspect.StrType: "a string", inspect.IntType: "a whole number", inspect.FloatType: "a number",
                inspect.BoolType: "true or false", inspect.ListType: "a list", inspect.DictType: "an object",
                inspect.StructType: "an object", inspect.LiteralType: "one of the listed values"}


def expects(expected: str, description: str | None = None, **constraints: Any) -> msgspec.Meta:
    """A field's schema: what a valid value is, in words used by the error message, and its constraints."""
    return msgspec.Meta(description=description or expected, extra={"expected": expected}, **constraints)


class Decoder:
    """Decodes JSON bytes (or already parsed data) into `kind`, refusing what does not fit with
    `InvalidInput`; `what` names the whole document and `expected` says what it must be, `quote`
    wraps field names in messages. With `needs`, a required field at the top of the document that
    is missing or wrong reads "<what> needs 'field': <expected>"."""

    def __init__(self, kind: type, what: str = "request body", expected: str = "a JSON object",
                 quote: str = "'", needs: bool = False) -> None:
        self.kind, self.what, self.expected, self.quote, self.needs = kind, what, expected, quote, needs
        self._json = msgspec.json.Decoder(kind)

    def json(self, body: bytes) -> Any:
        if not body.strip():
            raise InvalidInput(f"{self.what} is empty; send a JSON object")
        try:
            return self._json.decode(body)
        except msgspec.ValidationError as e:
            raise InvalidInput(self.explain(str(e), _untyped(body))) from None
        except msgspec.DecodeError as e:
            raise InvalidInput(f"{self.what} is not valid JSON: {e}") from None
        except RecursionError:
            raise InvalidInput(f"{self.what} is nested too deeply") from None

    def convert(self, data: Any) -> Any:
        try:
            return msgspec.convert(data, self.kind)
        except msgspec.ValidationError as e:
            raise InvalidInput(self.explain(str(e), data)) from None
        except RecursionError:
            raise InvalidInput(f"{self.what} is nested too deeply") from None

    def explain(self, error: str, document: Any) -> str:
        """msgspec's `Expected `str`, got `int` - at `$.inputs[0].name`` in words a user acts on."""
        match = AT.match(error)
        message, path = match["message"], _segments(match["path"] or "")
        missing = re.match(r"Object missing required field `(.+)`", message)
        if missing or (path and message.endswith("got `null`")):
            if missing:
                path = [*path, missing[1]]
            return self._missing(path, document)
        unknown = re.match(r"Object contains unknown field `(.+)`", message)
        if unknown:
            return self._unknown(path, unknown[1], document)
        return self._invalid(path, document)

    def _unknown(self, path: list, key: str, document: Any) -> str:
        owner, _ = self._owner([*path, key], document)
        info = _struct(self._type_at(path))
        known = ", ".join(f.encode_name for f in info.fields)
        template = getattr(info.cls, "unknown", None)
        if template is None:
            return f"{owner}{getattr(info.cls, 'noun', 'key')} {self._q(key)} is not supported (only {known})"
        found = _at(document, path)
        keys = sorted(map(str, set(found) - {f.encode_name for f in info.fields})) if isinstance(found, dict) else []
        return owner + template.format(keys=", ".join(keys or [key]), known=known)

    def _missing(self, path: list, document: Any) -> str:
        owner_path, field = path[:-1], path[-1]
        info = self._type_at(owner_path)
        if isinstance(info, inspect.StructType) and _name(document, owner_path) is None and owner_path \
                and isinstance(owner_path[-1], int) and field == "name":
            return self._invalid(owner_path, document)  # an element that cannot even be named
        expected = _expected(self._type_at(path))
        if self._needed(path):
            return f"{self.what} needs {self._q(field)}" + (f": {expected}" if expected else "")
        owner, _ = self._owner(path, document)
        if owner_path and isinstance(info, inspect.StructType) and _name(document, owner_path) is not None:
            return f"{owner}missing {self._q(field)}" + (f" ({expected})" if expected else "")
        if expected:
            return f"{owner}{self._q(field)} must be {expected}"
        return f"{owner}{self._q(field)} is required"

    def _invalid(self, path: list, document: Any) -> str:
        while path and not _is_field(path[-1]) and _struct(self._type_at(path)) is None:
            path = path[:-1]  # a value inside a list or object: name the field that holds it
        if not path:
            return f"{self.what} must be {self.expected}"
        info = self._type_at(path)
        if self._needed(path):
            return f"{self.what} needs {self._q(path[-1])}: {_expected(info) or _phrase(info)}"
        if not _is_field(path[-1]):
            return f"{_words(path, self.quote)} must be {getattr(_struct(info).cls, 'expected', 'an object')}"
        owner, _ = self._owner(path, document)
        return f"{owner}{self._q(path[-1])} must be {_expected(info) or _phrase(info)}"

    def _owner(self, path: list, document: Any) -> tuple[str, Any]:
        """How the object holding the last field of `path` is named ("input 'x': ", "" at the top)."""
        owner = path[:-1]
        while owner and _is_field(owner[-1]) and _name(document, owner) is None:
            owner = owner[:-1]  # a nested object: name the element (or document) it belongs to
        info = _unwrap(self._type_at(path[:-1]))
        if not owner and len(path) > 1:
            return f"{_words(path[:-1], self.quote)}: ", info  # an object in a field at the top
        if not owner:
            return "", info
        label = getattr(_unwrap(self._type_at(owner)), "cls", None)
        name = _name(document, owner)
        if name is not None and getattr(label, "label", None):
            return f"{label.label} '{name}': ", info
        return f"{_words(owner, self.quote)}: ", info

    def _needed(self, path: list) -> bool:
        """Whether `path` is a required field at the top of the document, worded with "needs"."""
        if not self.needs or len(path) != 1 or not _is_field(path[0]):
            return False
        info = _struct(inspect.type_info(self.kind))
        return any(f.encode_name == path[0] and f.required for f in info.fields) if info else False

    def _type_at(self, path: list) -> Any:
        info = inspect.type_info(self.kind)
        for segment in path:
            info = _unwrap(info)
            if isinstance(info, inspect.UnionType):
                info = next((t for t in map(_unwrap, info.types)
                             if isinstance(t, inspect.StructType if isinstance(segment, str) else
                                           (inspect.ListType, inspect.DictType))), info)
            if isinstance(info, inspect.StructType) and isinstance(segment, str):
                info = next((f.type for f in info.fields if f.encode_name == segment), inspect.AnyType())
            elif isinstance(info, (inspect.ListType, inspect.DictType)):
                info = info.item_type if isinstance(info, inspect.ListType) else info.value_type
            else:
                return inspect.AnyType()
        return info

    def _q(self, name: str) -> str:
        return f"{self.quote}{name}{self.quote}"


def _segments(path: str) -> list:
    return [int(index) if index and index.isdigit() else (field or "...")
            for field, index in SEGMENT.findall(path)]


def _is_field(segment: Any) -> bool:
    return isinstance(segment, str) and segment != "..."


def _words(path: list, quote: str) -> str:
    """`inputs[0]`, `outputs[2].parameters`: where a value is, as written in the document."""
    text = ""
    for segment in path:
        text += f"[{segment}]" if isinstance(segment, int) else ("[...]" if segment == "..." else f".{segment}")
    text = text.lstrip(".")
    return text if "[" in text or "." in text else f"{quote}{text}{quote}"


def _unwrap(info: Any) -> Any:
    return info.type if isinstance(info, inspect.Metadata) else info


def _expected(info: Any) -> str | None:
    if isinstance(info, inspect.UnionType):
        return next(filter(None, map(_expected, info.types)), None)
    return (info.extra or {}).get("expected") if isinstance(info, inspect.Metadata) else None


def _struct(info: Any) -> Any:
    """The struct a value at some place must be (inside a union with null, say), or None."""
    info = _unwrap(info)
    if isinstance(info, inspect.UnionType):
        return next((t for t in map(_unwrap, info.types) if isinstance(t, inspect.StructType)), None)
    return info if isinstance(info, inspect.StructType) else None


def _phrase(info: Any) -> str:
    info = _unwrap(info)
    if isinstance(info, inspect.UnionType):
        kinds = [t for t in map(_unwrap, info.types) if not isinstance(t, inspect.NoneType)]
        return " or ".join(dict.fromkeys(TYPE_PHRASES.get(type(t), "a value") for t in kinds))
    if isinstance(info, inspect.LiteralType):
        return ", ".join(repr(v) for v in info.values)
    return TYPE_PHRASES.get(type(info), "a value")


def _name(document: Any, path: list) -> str | None:
    """The `name` of the element of a list at `path` in the raw document, when it has a usable one."""
    if not path or not isinstance(path[-1], int):
        return None
    value = _at(document, path)
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) else None


def _at(document: Any, path: list) -> Any:
    """The value at `path` in the raw document, or None where there is none."""
    value = document
    for segment in path:
        try:
            value = value[segment]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _untyped(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
