"""The README, docs/ and the app's text point only inside the repository: no ``../shared``, no folder of the machine
that built them (its temp folders, its checkout, a home), and every relative link names a file that exists."""

from __future__ import annotations

import ast
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# what a visitor or a reader of a clone cannot follow: the sibling folder this project's data sits in, and absolute
# paths of the machine (temp folders, home folders, this checkout)
OUTSIDE = re.compile(r"\.\./shared|(?<![\w.$}])/(?:tmp|work|root|home|var/folders|private/var)(?=/|\b)")


# and wherever this machine keeps them: its checkout and its temp folder, named as they are here
HERE = {ROOT, Path(tempfile.gettempdir()), Path(tempfile.gettempdir()).resolve()}
MACHINE = re.compile(r"(?<![\w.$}])(?:" + "|".join(re.escape(str(p)) for p in HERE) + r")(?=/|\b)")


def outside(text: str) -> list[str]:
    """The places in ``text`` that point outside the repository, each with a little context."""
    return [text[max(0, m.start() - 40) : m.end() + 40] for p in (OUTSIDE, MACHINE) for m in p.finditer(text)]


def test_outside_finds_machine_paths():
    """The pattern itself: it catches the ways such a path is written and leaves URLs and repo paths alone."""
    for bad in [
        "--data ../shared/data",
        "(default `/tmp/gradio/...`)",
        "see /work/main/x",
        "/root/.cache",
        "~ /home/u",
    ]:
        assert outside(bad), bad
    good = ["--data DATA", "http://localhost:7860/", "/gradio_api/file=x", "assets/replays", "`$GRADIO_TEMP_DIR/x`"]
    good += ["reports/live_default/README.md", "~/.cache/spectral-bias-lab", "a/tmp/b", "src/tmpl"]
    for text in good:
        assert not outside(text), text


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_point_inside_the_repository(doc):
    assert not outside(doc.read_text()), doc.relative_to(ROOT)


def _string_literals(path: Path) -> list[str]:
    """Every string constant in a Python file except docstrings (the text it can show), f-strings' pieces included."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_apps_strings_point_inside_the_repository():
    """The app's own text (demo/ and app.py string literals) and what it shows from assets/ (the replays' JSON)."""
    offenders = []
    for path in [ROOT / "app.py", *sorted((ROOT / "demo").glob("*.py"))]:
        offenders += [f"{path.relative_to(ROOT)}: {hit}" for s in _string_literals(path) for hit in outside(s)]
    for path in sorted((ROOT / "assets").rglob("*")):
        if path.suffix in (".json", ".md"):
            offenders += [f"{path.relative_to(ROOT)}: {hit}" for hit in outside(path.read_text())]
    assert not offenders, "\n".join(offenders)


def _texts(node, key: str = "") -> list[str]:
    """The strings of a Blocks config a visitor can read: files (Gradio's FileData, served by URL) left out."""
    if isinstance(node, dict):
        if "path" in node and ("url" in node or "meta" in node):
            return []
        return [t for k, v in node.items() for t in _texts(v, k)]
    if isinstance(node, list):
        return [t for v in node for t in _texts(v, key)]
    return [node] if isinstance(node, str) and key not in ("root", "path", "url") else []


def test_the_rendered_page_points_inside_the_repository():
    """Every label, note and Markdown of the built page (the replay tab's rebuild command included)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app import make_app

    demo = make_app()
    config = demo.config or demo.get_config_file()
    texts = _texts(config)
    assert any("Rebuilt by" in t for t in texts)  # the replay tab's scale note is in what was read
    assert any("Precomputed at" in t and "benchmarks replays" in t for t in texts)
    offenders = [hit for t in texts for hit in outside(t)]
    assert not offenders, "\n".join(offenders)


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M):
        plain = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", plain)))
    return anchors


def _links(doc: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # code blocks hold no links
    return LINK.findall(text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_names_a_file_in_the_repository(doc):
    broken = []
    for target in _links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto:
            continue
        file, _, anchor = unquote(target).partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no {file}")
        elif ROOT not in path.parents and path != ROOT:
            broken.append(f"{target}: outside the repository")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_readme_is_short_and_shows_the_page():
    """A newcomer's page: the Space's front matter, a screenshot of the app, and the detail in docs/."""
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("---\ntitle: Spectral Bias Lab\n") and "app_file: app.py" in readme.split("---")[1]
    assert len(readme.encode()) < 8_500
    assert "](assets/screenshot.png)" in readme and (ROOT / "assets/screenshot.png").is_file()
    assert (ROOT / "docs/screenshot.py").is_file()  # the script that retakes it
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name}" in readme, f"the README does not link {page.relative_to(ROOT)}"
