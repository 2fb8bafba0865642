"""The README and the docs site as a reader meets them: every shell and Python snippet runs, in
order, one page at a time; every relative link resolves; the README stays a front door."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import typer.main
import yaml

from pallet.cli import app
from tests.docs.session import BIN, ROOT, PageSession
from tests.docs.snippets import SnippetError, parse, relative_links

pytestmark = pytest.mark.e2e

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """A store as `make run` leaves it: `pallet demo`, once for every page."""
    home = tmp_path_factory.mktemp("demo") / "pallet-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")} | {"PALLET_HOME": str(home)}
    done = subprocess.run([str(BIN / "pallet"), "demo"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return home


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_snippet_of_the_page_runs_in_order(page, demo_home, tmp_path):
    session = PageSession(page, tmp_path / "work", demo_home)
    assert any(s.runs for s in session.snippets()), f"{_name(page)} has no snippet to run"
    session.run()


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_resolves(page):
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{_name(page)} links to files that do not exist: {missing}"


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the manual belongs in docs/"
    text = "\n".join(lines)
    assert "docs/assets/parts.svg" in text
    assert re.search(r"docs/screenshots/[\w-]+\.png", text)


def _table_after(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append(line.split("|")[1].strip())
    return rows[1:]  # the header row


def test_the_command_table_lists_every_top_level_command_once():
    registered = sorted(typer.main.get_command(app).commands)
    cells = _table_after((ROOT / "README.md").read_text(), "## Which command for which job")
    named = [m[1] for cell in cells for m in [re.match(r"`pallet ([a-z-]+)", cell)] if m]
    assert sorted(named) == registered, (
        f"listed twice: {sorted({n for n in named if named.count(n) > 1})}; "
        f"missing: {sorted(set(registered) - set(named))}; unknown: {sorted(set(named) - set(registered))}")


def test_the_site_navigation_holds_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav) -> list[str]:
        found = []
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found += pages(value) if isinstance(value, list) else [value]
        return found

    assert sorted(pages(config["nav"])) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert config["theme"]["name"] == "material"
    assert "search" in config["plugins"]


def test_snippet_marks_and_languages_are_checked(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- snippet: background port=8000 -->\n```bash\npallet serve iris --port 8000\n```\n"
                    "```text\nout\n```\n```python\nprint(1)\n```\n")
    background, shown, python = parse(page)
    assert background.marks == {"background": "", "port": "8000"} and background.ports() == [8000]
    assert (background.runs, shown.runs, python.runs) == (True, False, True)
    page.write_text("<!-- snippet: fails expect=\"no version '9'\" timeout=5 -->\n```bash\npallet models show iris:9\n```\n")
    [failing] = parse(page)
    assert failing.marks == {"fails": "", "expect": "no version '9'", "timeout": "5"}
    for bad in ("```\nls\n```\n", "```ruby\nputs 1\n```\n", "<!-- snippet: sometimes -->\n```bash\nls\n```\n",
                "```bash\nls\n",
                "<!-- snippet: fails -->\n```bash\nfalse\n```\n",  # a failure must name its message
                "<!-- snippet: fails expect=\"\" -->\n```bash\nfalse\n```\n",
                "<!-- snippet: expect=\"no version\" -->\n```bash\ntrue\n```\n",  # expect without fails
                "<!-- snippet: fails expect=\"unclosed -->\n```bash\nfalse\n```\n"):
        page.write_text(bad)
        with pytest.raises(SnippetError):
            parse(page)


def _run_page(tmp_path, text: str) -> None:
    tmp_path.mkdir()
    page = tmp_path / "page.md"
    page.write_text(text)
    demo = tmp_path / "demo"
    demo.mkdir()
    PageSession(page, tmp_path / "work", demo).run()


def test_a_failing_snippet_must_print_the_expected_message(tmp_path):
    fails = "<!-- snippet: fails expect=\"no version '9'\" -->\n```bash\n{}\n```\n"
    _run_page(tmp_path / "right", fails.format("echo \"error: iris has no version '9'\" >&2; exit 1"))
    _run_page(tmp_path / "wrapped", fails.format("printf 'error: iris has no\\n  version  %s\\n' \"'9'\" >&2; exit 1"))
    with pytest.raises(AssertionError, match="without printing \"no version '9'\""):
        _run_page(tmp_path / "wrong", fails.format("echo 'bash: palet: command not found' >&2; exit 127"))
    with pytest.raises(AssertionError, match="expected to fail"):
        _run_page(tmp_path / "passes", fails.format("echo \"no version '9'\""))
