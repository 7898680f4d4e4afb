"""The run report's polish (issue 27 items 8 and 11): SIMULATED sections say so, one number format per column,
skipped parts not drawn as 0 s bars, and no heading left alone at the foot of a PDF page (Chromium prints the
PDF; pypdfium2 reads each page's text back)."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

from gee_mining.demo.imagery import _distributions_figure
from gee_mining.tools.report import Report, build_report, find_chromium

matplotlib.use("Agg")


def test_a_simulated_section_says_so_in_its_title_once():
    report = Report("t")
    assert report.section("Grids", simulated=True).title == "SIMULATED · Grids"
    assert report.section("SIMULATED · Pixel study", simulated=True).title == "SIMULATED · Pixel study"
    assert report.section("A real scene").title == "A real scene"
    page = report.render({"simulated": True})
    assert re.search(r"<h2[^>]*>SIMULATED · Grids</h2>", page)


def test_a_column_has_one_number_format():
    report = Report("t")
    s = report.section("numbers")
    Report.table(s, ["area", "count", "label"], [(0.125, 1200, "a"), (12.5, 3, "b"), (1500.0, 45000, "c")])
    page = report.render({})
    cells = re.findall(r'<td class="num">([^<]*)</td>', page)
    # the smallest non-zero area (0.125) needs 2 decimals for 2 significant digits: every area gets 2
    assert cells == ["0.12", "1,200", "12.50", "3", "1,500.00", "45,000"]
    assert [f"{v:,.2f}" for v in (0.125, 12.5, 1500.0)] == [cells[0], cells[2], cells[4]]
    Report.table(s, ["seconds"], [(70.3,), (0.5,), (382.4,)])  # rounded to 0.1: no digits invented
    assert re.findall(r'<td class="num">([^<]*)</td>', report.render({}))[-3:] == ["70.3", "0.5", "382.4"]


def test_parts_that_took_no_time_are_named_not_drawn():
    page = Report("t").render({"timings_s": {"grid": 12.04, "detect (skipped)": 0.0147, "exports": 3.5}})
    timings = page.split('id="timings"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr><td[^>]*>([^<]*)</td>", timings)
    assert rows == ["grid", "exports"]
    assert "Not run, or under 50 ms: detect (skipped)." in timings
    assert "15.5 s in all" in timings
    assert re.findall(r'<td class="num">([^<]*)</td>', timings) == ["12.0", "3.5"]  # seconds to 0.1 s, alike


def test_every_heading_is_kept_with_what_follows_it():
    report = Report("t")
    for k in range(3):
        Report.text(report.section(f"part {k}"), f"text {k}")
    page = report.render({"timings_s": {"a": 1.0}})
    for title in ("Warnings", "part 0", "part 1", "part 2", "Timings"):
        assert re.search(rf'<div class="keep"><h2 id="[^"]+">{title}</h2><(p|figure|table)', page), title


def _pages_text(pdf_path) -> list[list[str]]:
    pdfium = pytest.importorskip("pypdfium2")
    doc = pdfium.PdfDocument(str(pdf_path))
    pages = []
    for page in doc:
        text = page.get_textpage().get_text_range()
        pages.append([line.strip() for line in text.splitlines() if line.strip()])
    return pages


@pytest.mark.slow  # a site build / Chromium / every pixel of a collection: more than a few seconds
def test_no_heading_is_orphaned_at_the_foot_of_a_pdf_page(tmp_path):
    if find_chromium() is None:
        pytest.skip("Chromium not found (apt-get install chromium): cannot print the PDF")
    import matplotlib.pyplot as plt

    report = Report("orphans")
    titles = []
    for k in range(8):  # sections of a figure each: some heading falls near a page foot unless kept with it
        title = f"Section number {k}"
        titles.append(title)
        s = report.section(title)
        Report.text(s, f"Introduction {k}.")
        fig, ax = plt.subplots(figsize=(8, 2.2 + 0.9 * (k % 3)))
        ax.plot([0, 1], [k, k + 1])
        Report.figure(s, fig, f"figure {k}")
    report.save(tmp_path)
    files = build_report(tmp_path, pdf=True)
    pages = _pages_text(files.pdf)
    assert len(pages) >= 3
    seen = [t for lines in pages for t in titles if t in lines]
    assert sorted(seen) == titles  # every heading printed once
    intros = {f"Introduction {k}." for k in range(8)}
    for n, lines in enumerate(pages[:-1]):
        assert lines[-1] not in titles, f"page {n + 1} ends with the heading {lines[-1]!r}"
        assert lines[-1] not in intros, f"page {n + 1} ends with a heading and its introduction {lines[-1]!r}"


def test_the_pixel_distributions_have_labelled_axes():
    """The demo's pixel-table histograms say what each axis is (the distance in metres, its sign)."""
    rng = np.random.default_rng(0)
    pixels = pd.DataFrame({"NDVI": rng.normal(size=200), "NBR2": rng.normal(size=200),
                           "distance": rng.normal(size=200) * 100})  # fmt: skip
    fig = _distributions_figure(pixels, pixels["distance"] < 0)
    assert [ax.get_xlabel() for ax in fig.axes] == ["NDVI", "NBR2",
                                                    "signed distance to the nearest mine edge, m (< 0 inside)"]  # fmt: skip
    assert fig.axes[0].get_ylabel().startswith("density")
