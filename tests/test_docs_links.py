"""Every relative link and image in README.md and docs/ (the how-tos, results.md and the committed reports) points
at a file or folder that exists, so deleting a superseded report or moving a page cannot leave a dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target) and ![alt](target)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def relative_links(text: str) -> list[str]:
    """Targets of the Markdown links outside code (fenced blocks and `spans`) that name a path in this repository."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = (m.group(1).split("#", 1)[0] for m in LINK.finditer(prose))
    return [t for t in targets if t and not EXTERNAL.match(t)]


def test_the_link_finder_sees_links_and_images_but_not_code_or_urls():
    text = ("[a](docs/a.md) ![b](img/b.png) [c](https://x.org/c) [d](#anchor) [e](e.md#part) `[f](f.md)`\n"
            "```\n[g](g.md)\n```\n")
    assert relative_links(text) == ["docs/a.md", "img/b.png", "e.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path):
    dead = [t for t in relative_links(page.read_text(encoding="utf-8")) if not (page.parent / t).exists()]
    assert not dead, f"{page.relative_to(REPO)} links to paths that do not exist: {dead}"
