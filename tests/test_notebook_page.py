"""The tour notebook in the documentation site, with its outputs (issue 27 item 9).

The renderer is checked on a small notebook whose outputs are known (nbformat builds it: the reference),
the mkdocs hook on a site built with an executed copy beside it, and, in the slow test, the real tour
executed offline and opened from file:// in headless Chromium.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from gee_mining.tools.notebook_doc import SOURCE_HASH, executed_copy, notebook_markdown, source_hash

ROOT = Path(__file__).resolve().parents[1]


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _notebook(tmp_path: Path) -> Path:
    nb = new_notebook(
        cells=[
            new_markdown_cell("# A small notebook\n\nIt prints, shows HTML, a picture and a widget."),
            new_code_cell(
                "print('hello <world>')",
                outputs=[new_output("stream", name="stdout", text="hello <world>\n\x1b[31mred\x1b[0m\n")],
            ),
            new_code_cell(
                "ee_object",
                outputs=[
                    new_output(
                        "execute_result",
                        execution_count=2,
                        data={
                            "text/html": "<div class='ee'>\n<details><summary>Image</summary>\n\n"
                            "<ul><li>B4</li></ul></details>\n</div>",
                            "text/plain": "<ee.Image>",
                        },
                    ),  # fmt: skip
                ],
            ),
            new_code_cell("figure", outputs=[new_output("display_data", data={"image/png": _png()})]),
            new_code_cell(
                "m",
                outputs=[
                    new_output(
                        "display_data", data={"application/vnd.jupyter.widget-view+json": {}, "text/plain": "Map(...)"}
                    )
                ],
            ),
        ]
    )
    path = tmp_path / "small.ipynb"
    nbformat.write(nb, path)
    return path


def test_every_kind_of_output_is_on_the_page(tmp_path):
    page = notebook_markdown(_notebook(tmp_path), raw_link="small.ipynb", executed=True)
    assert page.startswith("# A small notebook")
    assert "```python\nprint('hello <world>')\n```" in page
    assert "hello &lt;world&gt;\nred</pre>" in page  # escaped, ANSI colours gone
    html_line = next(line for line in page.splitlines() if "class='ee'" in line)
    assert "<details><summary>Image</summary> <ul><li>B4</li></ul></details>" in html_line  # one line, intact
    assert f'src="data:image/png;base64,{_png()}"' in page
    assert "interactive map" in page and "Map(...)" not in page
    assert "Executed offline" in page and "Outputs not included" not in page


def test_an_executed_copy_counts_only_for_the_source_it_ran(tmp_path):
    source = _notebook(tmp_path)
    copy = tmp_path / "executed.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.metadata[SOURCE_HASH] = source_hash(source)
    nbformat.write(nb, copy)
    assert executed_copy(source, copy) == copy
    edited = nbformat.read(source, as_version=4)
    edited.cells[1].source = "print('changed')"
    nbformat.write(edited, source)
    assert executed_copy(source, copy) is None  # the notebook changed since: its old outputs are not shown
    assert executed_copy(source, tmp_path / "absent.ipynb") is None
    page = notebook_markdown(source, raw_link="small.ipynb", executed=False)
    assert "Outputs not included" in page and "make docs" in page


def _build_site(root: Path, site: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f",
                           str(root / "mkdocs.yml"), "-d", str(site)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow  # a site build / Chromium / every pixel of a collection: more than a few seconds
def test_the_site_shows_the_executed_tour(tmp_path):
    """A copy of the docs with an executed tour beside it (its outputs written here, not run): the built page
    carries them, and `mkdocs build --strict` passes offline."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", root / "docs")
    shutil.copy(ROOT / "mkdocs.yml", root / "mkdocs.yml")
    source = root / "docs" / "notebooks" / "tour.ipynb"
    nb = nbformat.read(source, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[0].outputs = [new_output("stream", name="stdout", text="MARKER-STREAM gee-mining local engine\n")]
    code[1].outputs = [new_output("execute_result", execution_count=1, data={"text/html": "<div>MARKER-HTML</div>"})]
    nb.metadata[SOURCE_HASH] = source_hash(source)
    (root / "runs" / "notebooks").mkdir(parents=True)
    nbformat.write(nb, root / "runs" / "notebooks" / "tour.ipynb")
    _build_site(root, tmp_path / "site")
    page = (tmp_path / "site" / "tour.html").read_text()
    assert "MARKER-STREAM gee-mining local engine" in page and "<div>MARKER-HTML</div>" in page
    assert "Executed offline" in page and 'href="notebooks/tour.ipynb"' in page
    assert 'href="tour.html"' in (tmp_path / "site" / "index.html").read_text()  # in the nav


@pytest.mark.slow
def test_the_real_tour_executes_and_its_page_opens_from_disk(executed_notebook, tmp_path):
    """`make docs`: the tour executed offline (conftest's ``executed_notebook``, its step's ``main``, once a
    session), the site built, the page opened from file:// in Chromium."""
    from browser import Browser

    from gee_mining.tools.report import find_chromium

    run = executed_notebook("tour.ipynb")
    assert executed_copy(run.source, run.executed) == run.executed  # the copy the site build picks up
    root = tmp_path / "repo"
    shutil.copytree(run.root, root)  # the site is built here: the shared copy stays as it ran
    _build_site(root, tmp_path / "site")
    page = (tmp_path / "site" / "tour.html").read_text()
    assert "gee-mining local engine" in page  # the connection the first cell printed
    assert "positive and" in page and "negative cells" in page  # the grid's counts
    assert "ee.Image.load" in page or "ee.Image(" in page  # the Code Editor JavaScript
    if find_chromium() is None:
        pytest.skip("Chromium not found: the page was built but not opened")
    with Browser() as browser:
        browser.open((tmp_path / "site" / "tour.html").as_uri())
        assert browser.evaluate("document.querySelectorAll('pre.nb-output').length") >= 3
        shot = browser.screenshot(tmp_path / "tour.png")
    assert shot.stat().st_size > 20_000
