"""The documentation holds together: every relative link and anchor resolves, the README
stays a first-time user's page that links every page of docs/, and the places the code
sends users to exist.  No backend needed: the files are read as text."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *PAGES, ROOT / "weights" / "README.md", ROOT / "benchmarks" / "RESULTS.md"]
README_MAX_LINES = 400

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target), link text with one level of brackets inside.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (hyphens and
    underscores kept), each space a hyphen; a link's text stands for the link."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(c for c in text if c in "-_ " or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file: its headings (repeats numbered -1, -2, ... as
    GitHub numbers them) and explicit HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    return [
        target
        for line in prose_lines(path.read_text(encoding="utf-8"))
        for target in LINK.findall(line)
        if not EXTERNAL.match(target)
    ]


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken(path: Path, target: str) -> str | None:
    """Why a relative link of `path` does not resolve, or None when it does."""
    file_part, _, anchor = target.partition("#")
    destination = (path.parent / file_part).resolve() if file_part else path
    if not destination.exists():
        return f"{target}: no file {shown(destination)}"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"{target}: no heading with anchor #{anchor} in {shown(destination)}"
    return None


def test_slugs_follow_github():
    assert slug("Several GPUs: `--distribute`") == "several-gpus---distribute"
    assert slug("Validation set: the paper's way and a held-out split") == (
        "validation-set-the-papers-way-and-a-held-out-split")
    assert slug("Saving and evaluating: `-s` and `-l`") == "saving-and-evaluating--s-and--l"
    assert slug("The `RunConfig` [record](x.md)") == "the-runconfig-record"


def test_anchors_number_repeated_headings(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A\n\n## Notes\n\n```\n# not a heading\n```\n\n## Notes\n")
    assert anchors(page) == {"a", "notes", "notes-1"}


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Here\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#here) [no file](missing.md) [no anchor](other.md#there) "
        "[web](https://example.org/x.md)\n\n```\n[in code](nowhere.md)\n```\n"
    )
    assert relative_links(page) == ["other.md#here", "missing.md", "other.md#there"]
    assert broken(page, "other.md#here") is None
    assert broken(page, "missing.md") is not None
    assert broken(page, "other.md#there") is not None


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path):
    problems = [problem for target in relative_links(path) if (problem := broken(path, target))]
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_readme_is_a_first_time_users_page():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, (
        f"README.md has {lines} lines: move reference material to docs/ and link it")


def test_readme_links_every_page_of_docs():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in relative_links(README)}
    unlinked = [page.name for page in PAGES if page.resolve() not in linked]
    assert not unlinked, f"README.md links no {', '.join(unlinked)}"


def test_the_docs_pages_the_code_names_exist():
    named = {
        match
        for module in (ROOT / "brainprop").rglob("*.py")
        for match in re.findall(r"docs/[\w.-]+\.md(?:#[\w-]+)?", module.read_text(encoding="utf-8"))
    }
    assert named, "the command-line help names docs pages; the pattern should find them"
    problems = [problem for target in sorted(named) if (problem := broken(README, target))]
    assert not problems, "; ".join(problems)


def test_the_readme_section_the_chance_note_names_exists():
    source = (ROOT / "brainprop" / "train" / "console.py").read_text(encoding="utf-8")
    section = re.search(r'^README_SECTION = "([^"]+)"', source, re.MULTILINE).group(1)
    assert slug(section) in anchors(README)
