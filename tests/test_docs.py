"""The documentation: the site builds with `mkdocs build --strict` (a broken link, a missing anchor or a page left out
of the navigation fails it), every command of the CLI has its page, and the README is a short front door whose
links all land on a page (and a heading) that exists."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hms_infer.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 200
LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown links [text](target)


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as CI builds it (`make docs`), into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    done = _build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _page(link: str) -> tuple[str, str]:
    """`page.md#anchor` -> (`page.md`, `anchor`)."""
    path, _, anchor = link.partition("#")
    return path, anchor


def _ids(html: Path) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', html.read_text()))


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in _nav_pages(v)]
    return [p for item in nav for p in _nav_pages(item)]


@pytest.mark.slow
def test_site_builds_strict_with_every_page_and_the_api_reference(site):
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages  # every page is in the navigation, every entry is a page
    for page in pages:
        assert (site / page).with_suffix(".html").is_file(), page
    # the API reference is generated from the docstrings (mkdocstrings), not written by hand
    api = (site / "reference" / "hms_infer.html").read_text()
    for name in ("hms_infer.predict", "hms_infer.evaluate", "hms_infer.RunOptions", "hms_infer.Ensemble",
                 "hms_infer.Manifest", "from_manifest"):
        assert f'id="{name}' in api or f">{name}<" in api, name
    assert "Run the ensemble of" in api  # predict's docstring
    tasks = (site / "reference" / "tasks.html").read_text()
    for module in ("predict", "parity", "fit_weights", "evaluate", "pseudo_labels", "timeline", "report", "bundle"):
        assert f'id="hms_infer.tasks.{module}"' in tasks, module
    assert 'id="hms_infer.tasks.parity.parity"' in tasks


@pytest.mark.slow
def test_strict_build_fails_on_a_broken_link_a_missing_anchor_and_a_page_left_out(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    with open(docs / "layout.md", "a") as f:
        f.write("\nSee [the gone page](gone.md) and [a heading](kaggle.md#no-such-heading).\n")
    (docs / "orphan.md").write_text("# Not in the navigation\n")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    log = done.stdout + done.stderr
    assert done.returncode != 0, log
    assert "contains a link 'gone.md', but the target is not found" in log
    assert "does not contain an anchor '#no-such-heading'" in log
    assert "orphan.md" in log and "not included in the \"nav\" configuration" in log


def _command_mentions(name: str) -> tuple[str, ...]:
    """How a page names command `name`: `python -m hms_infer NAME` (the main command also by its options)."""
    return ("python -m hms_infer --test-dir", "python -m hms_infer predict") if name == "predict" else \
        (f"python -m hms_infer {name}",)


def _names(text: str, mention: str) -> bool:
    """`mention` in `text` as a whole command (`... bench`, not `... benchmark`)."""
    return re.search(re.escape(mention) + r"(?![\w-])", text) is not None


def test_every_cli_command_has_a_readme_row_linking_to_a_page_that_names_it():
    assert len(COMMANDS) >= 14  # the registry read, not an empty dict
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `python -m hms_infer")]
    for name in COMMANDS:
        mention = _command_mentions(name)
        row = [r for r in rows if any(_names(r, f"| `{m}") for m in mention)]
        assert len(row) == 1, f"README's command table: no single row for {name!r}"
        links = [link for link in LINK.findall(row[0]) if link.startswith("docs/")]
        assert links, f"README's row of {name!r} links no docs page"
        page = ROOT / _page(links[0])[0]
        text = page.read_text()
        assert any(_names(text, m) for m in mention), f"{page} does not name {name!r}"
        # and the site's home page lists it too
        assert any(_names((DOCS / "index.md").read_text(), f"| `{m}") for m in mention), name


def test_readme_is_a_short_front_door_whose_links_land(site):
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    # the three uses in the design card's order: the Kaggle notebook, the main command, parity against OOF
    headings = [h for h in re.findall(r"^### (.+)$", text, re.M)]
    assert [h.split(".")[0] for h in headings] == ["1", "2", "3"]
    assert "Kaggle" in headings[0] and "main command" in headings[1] and "Parity" in headings[2]
    assert text.index("make demo") < text.index("### 1.")
    local = [link for link in LINK.findall(text) if not link.startswith(("http://", "https://"))]
    assert len(local) >= 20
    for link in local:
        path, anchor = _page(link)
        assert (ROOT / path).is_file(), link
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            html = (site / path.removeprefix("docs/")).with_suffix(".html")
            assert anchor in _ids(html), f"README links {link}: no such heading in {path}"


def test_docs_use_the_root_kernel_py():
    """kernel.py is at the repository root: only the page that says what moved names kaggle/kernel.py."""
    assert (ROOT / "kernel.py").is_file()
    for page in [README, *DOCS.rglob("*.md")]:
        if page.name != "python-api.md":
            assert "kaggle/kernel.py" not in page.read_text(), page
