"""The user's documentation: the algorithm list equals the engine's registry, the site builds, the notebooks run.

The notebooks run in a Jupyter kernel (a subprocess, via nbclient) with the same network guard as the
tests: a ``sitecustomize`` module on the kernel's path refuses every non-loopback connection and logs
each attempt, and the test asserts the log holds none.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_algorithm_page_lists_exactly_the_registry():
    from gee_mining.contracts.signatures import signatures
    from gee_mining.local.core.registry import implemented

    text = (DOCS / "algorithms.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))
    missing_lines = re.findall(r"^Not implemented \(\d+\): (.*)$", text, flags=re.M)
    not_listed = {n for line in missing_lines for n in re.findall(r"`([^`]+)`", line)}
    done = set(implemented())
    hint = "regenerate it: gee-mining algorithms --markdown > docs/algorithms.md (or make docs)"
    assert listed == done, f"docs/algorithms.md differs from the registry ({hint}): " + (
        f"missing {sorted(done - listed)[:10]}, extra {sorted(listed - done)[:10]}"
    )
    assert not (not_listed & done) and not_listed <= set(signatures()), hint
    counts = re.search(r"evaluates \*\*(\d+) of the (\d+)\*\*", text)
    assert counts and int(counts[1]) == len(done), hint
    # the unimplemented names depend on the installed client's signature list, which may be newer than the page


def test_the_cli_regenerates_the_algorithm_page():
    """`gee-mining algorithms --markdown` (what `make docs` runs) writes the checked-in page, byte for byte."""
    done = subprocess.run(
        [sys.executable, "-m", "gee_mining.cli", "algorithms", "--markdown"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == (DOCS / "algorithms.md").read_text()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The documentation site, built as `make docs` builds it."""
    site = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return site


def test_site_builds_strict_and_offline(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 20
    for page in pages:  # the built-in theme, with nothing fetched from a CDN
        assert not re.search(r'(src|href)="https?://(cdn|fonts|ajax)', page.read_text()), page
    assert (site / "notebooks" / "tour.ipynb").is_file()
    assert "Image.normalizedDifference" in (site / "algorithms.html").read_text()
    for step in ("study", "classify", "pyramid"):  # a page of its own, or a placeholder until it lands
        assert (site / f"{step}.html").is_file()


def test_site_works_from_disk_in_a_browser(site, tmp_path):
    """Issue 27 item 3: opened from file://, the nav links land on pages, not on folder listings.

    A real headless Chromium clicks two nav links; the reference is the page's own title and address."""
    from browser import Browser

    from gee_mining.tools.report import find_chromium

    if find_chromium() is None:
        pytest.skip("Chromium not found (apt-get install chromium): cannot click through the site")
    with Browser() as browser:
        browser.open((site / "index.html").as_uri())
        for link, title in (("Install", "Install"), ("1. Grids", "1. Grids")):
            url = browser.click_link(link)
            assert url.startswith("file://") and url.endswith(".html"), url
            assert browser.evaluate("document.title").startswith(title)
            assert browser.evaluate("document.querySelectorAll('.navbar a').length") > 10  # the site, not a listing
        shot = browser.screenshot(tmp_path / "grid.png")
    assert shot.stat().st_size > 20_000


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in (DOCS / "notebooks").glob("*.ipynb")))
def test_notebook_runs_offline(name, executed_notebook):
    """Executed as `make docs` does (conftest's ``executed_notebook``: once a session, shared with the tour's
    page test), under a network guard in the kernel."""
    import nbformat

    run = executed_notebook(name)
    nb = nbformat.read(run.executed, as_version=4)
    lines = run.net_log
    assert lines and lines[0].startswith("guard "), "the network guard did not load in the kernel"
    assert not [line for line in lines if line.startswith("refused")], lines
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    if name == "tour.ipynb":
        data = [o.get("data", {}) for o in outputs]
        assert any("eerepr" in d.get("text/html", "") or "ee-" in d.get("text/html", "") for d in data)
        assert any("application/vnd.jupyter.widget-view+json" in d for d in data)  # the geemap map
        text = "".join(o.get("text", "") for o in outputs)
        assert "gee-mining local engine" in text and "ee.Image" in text  # the engine and the JavaScript
