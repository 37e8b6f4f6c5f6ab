"""The documentation: every relative link and image in README.md and docs/*.md resolves.

A link to a file must name an existing file (relative to the page that holds it); a `#anchor`,
on its own or after a link to a .md file, must match a heading of that page, slugged as GitHub
slugs headings. Links inside code (fenced blocks and `inline code`) are not links and are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("reproduce", "differences", "demos", "faults", "performance", "synthetic", "configuration",
         "features", "testing")

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).*?\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans removed."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        marker = re.match(r"\s*(```|~~~)", line)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
            continue
        if fence is None:
            out.append((number, CODE_SPAN.sub("", line)))
    return out


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than '-' and '_' dropped,
    spaces to hyphens (markdown emphasis and backticks are punctuation, so they go too)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)       # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def broken_links(path: Path) -> list[str]:
    """'FILE:LINE: target (why)' for each relative link or image in `path` that does not resolve."""
    problems = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):        # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            where = f"{path.name}:{number}: {target}"
            linked = (path.parent / unquote(file_part)).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{where} (no such file: {linked})")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{where} (no heading of {linked.name} has the anchor #{anchor}; "
                                f"its anchors: {sorted(anchors(linked))})")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_image_resolves(path):
    assert broken_links(path) == []


def test_the_pages_exist_and_say_what_they_are_for():
    for name in PAGES:
        page = ROOT / "docs" / f"{name}.md"
        assert page.is_file(), page
        lines = page.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# "), f"{page}: first line {lines[0]!r} is not a title"
        assert lines[1] == "" and lines[2].startswith("This page "), \
            f"{page}: the paragraph after the title does not say what the page is for: {lines[2]!r}"


def test_readme_links_every_page_and_stays_short():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200, "README.md is the front door: move detail into docs/"
    for name in PAGES:
        assert f"](docs/{name}.md" in readme, f"README.md does not link docs/{name}.md"


@pytest.mark.parametrize("heading, slug", [
    ("The learning demo: 3 seeds of random init, IC only and full TCLR",
     "the-learning-demo-3-seeds-of-random-init-ic-only-and-full-tclr"),
    ("What did not work (measured)", "what-did-not-work-measured"),
    ("4. Reproduce the paper's tables", "4-reproduce-the-papers-tables"),
    ("Quick start (CPU, about 5 minutes)", "quick-start-cpu-about-5-minutes"),
    ("The `--select` option_name", "the---select-option_name"),
])
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def test_the_checker_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section: here\n", encoding="utf-8")
    (tmp_path / "pic.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "# Page", "",
        "[ok](other.md) [ok](other.md#a-section-here) ![ok](pic.png) [ok](#page) "
        "[web](https://x.y/z)",
        "[missing file](nowhere.md) ![missing image](gone.png)",
        "[bad anchor](other.md#no-such-section) [bad own anchor](#nothing)",
        "`[in code](not-checked.md)`",
        "```", "[in a fence](not-checked-either.md)", "```",
    ]), encoding="utf-8")
    problems = broken_links(page)
    assert [p.split(" (")[0] for p in problems] == [
        "page.md:4: nowhere.md", "page.md:4: gone.png",
        "page.md:5: other.md#no-such-section", "page.md:5: #nothing"]
    assert "its anchors: ['a-section-here', 'other-page']" in problems[2]
