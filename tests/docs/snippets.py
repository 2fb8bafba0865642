"""The fenced code blocks of a Markdown page, and what to do with each.

```bash, ```sh, ```shell and ```python blocks are run; ```text, ```console-output, ```yaml (and the
other languages in SHOWN) are output or file contents and are not. An HTML comment on the line
before a block changes how it runs:

    <!-- snippet: background port=8000 -->   run it in the background; wait until the port answers
    <!-- snippet: fails expect="no version '9'" -->
                                              it must exit non-zero and print that text (on stdout or
                                              stderr; runs of spaces and line breaks count as one space)
    <!-- snippet: file=centroids.py -->       write the block to that file (in the page's folder)
    <!-- snippet: timeout=300 -->             seconds it may take (default 180)

Marks combine (`<!-- snippet: background port=8000 grpc-port=8001 -->`): every `*port` value is
replaced by a free port in all of the page's blocks; the first one is waited for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SHELL = {"bash", "sh", "shell"}
RUN = SHELL | {"python"}
SHOWN = {"text", "console-output", "yaml", "json", "html", "toml", "dockerfile", "nginx", "ini"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_MARK = re.compile(r"^\s*<!--\s*snippet:(?P<marks>.*?)-->\s*$")
_WORD = re.compile(r'(?P<key>[^\s=]+)(?:=(?:"(?P<quoted>[^"]*)"|(?P<value>[^\s"]*)))?(?=\s|$)')
MARKS = {"background", "expect", "fails", "file", "timeout", "port", "ready"}


@dataclass
class Snippet:
    page: Path
    line: int  # where the opening fence is, 1-based
    lang: str
    code: str
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def runs(self) -> bool:
        return self.lang in RUN and "file" not in self.marks

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"

    def ports(self) -> list[int]:
        return [int(value) for key, value in self.marks.items() if key.endswith("port")]


class SnippetError(ValueError):
    """A page whose blocks cannot be read as snippets: an unclosed fence, a block without a
    language, a language neither run nor shown, a mark nobody understands."""


def _marks(text: str, where: str) -> dict[str, str]:
    marks, end = {}, 0
    for word in _WORD.finditer(text):
        if text[end:word.start()].strip():
            break
        key, end = word["key"], word.end()
        if key not in MARKS and not key.endswith("port"):
            raise SnippetError(f"{where}: unknown snippet mark {key!r} (known: {', '.join(sorted(MARKS))}, *port)")
        marks[key] = word["quoted"] if word["quoted"] is not None else word["value"] or ""
    if text[end:].strip():
        raise SnippetError(f"{where}: cannot read the snippet marks from {text[end:].strip()!r} "
                           f'(write key=value, or key="value with spaces")')
    if ("fails" in marks) != bool(marks.get("expect")):
        raise SnippetError(f"{where}: a failing snippet names what it prints: "
                           f'<!-- snippet: fails expect="the error message" -->')
    return marks


def parse(page: Path) -> list[Snippet]:
    """Every fenced block of `page`, in order, with the marks of the comment before it."""
    lines = page.read_text().splitlines()
    snippets: list[Snippet] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        where = f"{page.name}:{i + 1}"
        lang, indent, fence = opening["lang"].lower(), opening["indent"], opening["fence"]
        if not lang:
            raise SnippetError(f"{where}: a code block needs a language (bash, python, text, yaml ...)")
        if lang not in RUN | SHOWN:
            raise SnippetError(f"{where}: code blocks in {lang!r} are neither run nor shown; use one of "
                               f"{', '.join(sorted(RUN | SHOWN))}")
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = _MARK.match(before)
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise SnippetError(f"{where}: the code block is never closed")
        snippets.append(Snippet(page, i + 1, lang, "\n".join(body) + "\n", _marks(mark["marks"], where) if mark else {}))
        i = j + 1
    return snippets


_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\((?P<image>[^)\s]+)\)"
                   r"|<img [^>]*src=\"(?P<img>[^\"]+)\"")


def relative_links(page: Path) -> list[str]:
    """The link and image targets of `page` that point into the repository (no scheme, no pure anchor),
    outside code blocks."""
    text, inside, kept = page.read_text().splitlines(), None, []
    for line in text:
        opening = _FENCE.match(line)
        if opening and inside is None:
            inside = opening["fence"]
            continue
        if inside is not None:
            if line.strip().startswith(inside):
                inside = None
            continue
        kept.append(line)
    targets = []
    for found in _LINK.finditer("\n".join(kept)):
        target = found["target"] or found["image"] or found["img"]
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#"):
            targets.append(target)
    return targets
