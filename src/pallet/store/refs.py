"""Model references: `name` (newest version), `name:3` (a version), `name@production` (an alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pallet.errors import InvalidReference

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
VERSION = re.compile(r"[0-9]{1,9}")
LATEST = "latest"  # `name@latest` is the same as `name`
RESERVED = ("stats", "config")  # words of Triton's routes (/v2/models/stats, .../config): never model names


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str | ModelRef) -> ModelRef:
        if isinstance(text, ModelRef):
            return text
        text = str(text).strip(" ")  # spaces around a typed reference; a newline or control character is refused
        name, version, alias = text, None, None
        if "@" in text:
            name, alias = text.split("@", 1)
            if not ALIAS.fullmatch(alias):
                raise InvalidReference(f"bad alias in '{text}': an alias is a word of letters, digits, '-' or '_'")
            if alias == LATEST:
                alias = None
        elif ":" in text:
            name, number = text.split(":", 1)
            if not VERSION.fullmatch(number) or int(number) < 1:
                raise InvalidReference(f"bad version in '{text}': a version is a whole number from 1, as in {name}:3")
            version = int(number)
        check_name(name, text)
        return cls(name, version, alias)

    def __repr__(self) -> str:
        return f"ModelRef({str(self)!r})"

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def check_name(name: str, text: str | None = None) -> str:
    if not NAME.fullmatch(name):
        raise InvalidReference(
            f"bad model name '{name}'" + (f" in '{text}'" if text and text != name else "")
            + ": use letters, digits, '.', '-' or '_' (up to 128), starting with a letter or digit"
        )
    if name in RESERVED:
        raise InvalidReference(f"'{name}' cannot be a model name: {' and '.join(repr(w) for w in RESERVED)} are "
                               f"reserved by the inference protocol (GET /v2/models/stats, .../config); "
                               f"choose another name, e.g. '{name}-model'")
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias) or alias == LATEST:
        raise InvalidReference(f"bad alias '{alias}': use a word of letters, digits, '-' or '_' "
                               f"starting with a letter ('{LATEST}' is reserved for the newest version)")
    return alias
