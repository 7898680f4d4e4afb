"""The run report: rebuilt from a run folder, self-contained, and looked at in a real browser.

The browser test opens the report of the session's demo run (conftest's ``demo_run``) in headless
Chromium: it takes a screenshot, asks the page itself whether every image decoded, and checks every
link against the page's ids and the run folder's files. Images are decoded independently with Pillow.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gee_mining.cli.main import main
from gee_mining.errors import InputError
from gee_mining.tools.report import Report, build_report, find_chromium, run_chromium


class _Page(HTMLParser):
    """The ids, links and image sources of an HTML page, and the text of the element ``#gm-check``."""

    def __init__(self):
        super().__init__()
        self.ids, self.hrefs, self.srcs, self.check, self._in_check = set(), [], [], "", False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        self._in_check = a.get("id") == "gm-check"

    def handle_data(self, data):
        if self._in_check:
            self.check += data

    def handle_endtag(self, tag):
        self._in_check = False


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def broken_links(page: _Page, base: Path) -> list[str]:
    """Links that point nowhere: an anchor with no such id, a relative file or folder that does not exist."""
    bad = []
    for href in page.hrefs:
        if href.startswith("#"):
            if href[1:] not in page.ids:
                bad.append(href)
        elif re.match(r"^[a-z]+:", href):
            bad.append(href)  # the report links to nothing outside its run folder
        elif not (base / href.split("#")[0]).exists():
            bad.append(href)
    return bad


def decoded_images(page: _Page) -> list:
    from PIL import Image

    out = []
    for src in page.srcs:
        m = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", src)
        assert m, f"an image that is not an embedded PNG/JPEG: {src[:80]}"
        img = Image.open(io.BytesIO(base64.b64decode(m.group(2))))
        img.load()
        out.append(img)
    return out


@pytest.fixture
def small_run(tmp_path):
    """A run folder as a step writes it: sections with text, a table, a figure and a picture; a summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    report = Report("a small run", "two steps")
    s = report.section("SIMULATED · Step 1: cells")
    Report.text(s, "SIMULATED cells.", "warn")
    Report.table(s, ["zoom", "positives", "mean overlap"], [(14, 3, 0.25), (16, 15, 0.031)])
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    Report.figure(s, fig, "A line.")
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 30)).save(jpeg, format="JPEG")
    Report.image(report.section("Step 2: a quicklook"), jpeg.getvalue(), "A red quicklook.")
    report.warn("1 invalid polygon(s) in mines.gpkg were repaired (shapely.make_valid).", step="grid")
    report.save(tmp_path)
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "grid_z14.csv").write_text("name\n")
    summary = {
        "engine": "gee-mining local engine (in-process)",
        "parameters": {"command": "gee-mining demo", "grid levels (m)": "5500, 1375"},
        "simulated": True,
        "warnings": [{"step": "exports", "message": "cell a: FAILED (User memory limit exceeded)"}],
        "imagery": {"warnings": ["2 scenes fully masked by Cloud Score+"]},
        "timings_s": {"grid": 1.5, "imagery": 4.0},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    return tmp_path


def test_report_is_rebuilt_from_the_run_folder(small_run):
    files = build_report(small_run)
    html = files.html.read_text()
    page = parse(html)
    images = decoded_images(page)
    # the line figure, the JPEG quicklook and the timings chart, each a real picture
    assert len(images) == 3
    assert images[1].size == (16, 8) and images[1].getpixel((8, 4))[0] > 150
    # parameters and engine first, then the warnings, then the steps, then the timings
    order = [
        html.index(t) for t in ("gee-mining local engine (in-process)", ">Warnings<", "Step 1: cells", ">Timings<")
    ]
    assert order == sorted(order)
    assert "SIMULATED inputs" in html
    for message in ("were repaired", "User memory limit exceeded", "2 scenes fully masked"):
        assert message in html
    assert "3 warning(s)" in html
    assert not broken_links(page, small_run)
    assert any(h == "grid/" for h in page.hrefs) and any(h == "summary.json" for h in page.hrefs)
    assert not re.search(r'(src|href)="https?:', html)


def test_report_written_elsewhere_links_back_to_the_run(small_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("weekly") / "report.html"
    assert main(["report", str(small_run), "--out", str(out)]) == 0
    page = parse(out.read_text())
    assert "../" in "".join(page.hrefs) and not broken_links(page, out.parent)


def test_report_of_a_summary_only_run(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"engine": "e", "grid": {"z14": {"positives": 3}}}))
    html = build_report(tmp_path).html.read_text()
    assert "grid" in html and "z14.positives" in html and "No warnings" in html
    assert build_report(tmp_path).html.read_text().count("z14.positives") == 1  # rebuilt in place
    # a report an older run wrote itself (no report.json) is not silently replaced by this poorer one
    (tmp_path / "report.html").write_text("<html><body><img src='data:image/png;base64,AAAA'></body></html>")
    with pytest.raises(InputError, match="would replace its figures"):
        build_report(tmp_path)
    assert build_report(tmp_path, out=tmp_path / "again.html").html.is_file()


def test_report_command_refuses_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a run directory" in err and "summary.json" in err
    assert not (tmp_path / "report.html").exists()


def test_pdf_without_chromium_says_how_to_get_it(small_run, monkeypatch, capsys):
    monkeypatch.setenv("GEE_MINING_CHROMIUM", str(small_run / "no-such-chromium"))
    assert main(["report", str(small_run), "--pdf"]) == 2
    assert "apt-get install chromium" in capsys.readouterr().err
    assert (small_run / "report.html").is_file()  # the HTML report stands on its own
    assert not list(small_run.glob("*.pdf")) and not list(small_run.glob(".report-*"))


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        pytest.skip("Chromium not found (apt-get install chromium, or set GEE_MINING_CHROMIUM): cannot open the report")
    return exe


_CHECK = """<script>window.addEventListener('load', function () {
  var images = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, ok: i.complete && i.naturalWidth > 0, width: i.naturalWidth, height: i.naturalHeight};
  });
  var out = document.createElement('pre'); out.id = 'gm-check';
  out.textContent = JSON.stringify({images: images, height: document.body.scrollHeight});
  document.body.appendChild(out);
});</script></body>"""


def open_in_chromium(html_path: Path, screenshot: Path) -> dict:
    """Load the page in headless Chromium: a screenshot, and what the page says of its own images."""
    probe = html_path.with_name(".probe-" + html_path.name)
    probe.write_text(html_path.read_text().replace("</body>", _CHECK))
    try:
        shot = run_chromium(["--window-size=1280,2400", f"--screenshot={screenshot}", html_path.resolve().as_uri()])
        assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
        dom = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri()])
        assert dom.returncode == 0, dom.stderr[-2000:]
    finally:
        probe.unlink(missing_ok=True)
    page = parse(dom.stdout)
    assert page.check, "the page's check script did not run"
    return {"page": page, **json.loads(page.check)}


@pytest.mark.slow
def test_demo_report_opens_in_chromium(demo_run, chromium, tmp_path, capsys):
    """The report of ``make demo``, rebuilt by `gee-mining report --pdf`, in a real browser."""
    run = demo_run.out_dir
    assert main(["report", str(run), "--pdf"]) == 0
    assert "report:" in capsys.readouterr().out
    html_path, pdf_path = run / "report.html", run / "report.pdf"
    pdf = pdf_path.read_bytes()
    assert pdf[:5] == b"%PDF-" and len(pdf) > 50_000
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 3  # the whole report, not one page

    screenshot = tmp_path / "report.png"
    seen = open_in_chromium(html_path, screenshot)
    images = seen["images"]
    assert len(images) >= 6, images  # the demo's maps, quicklooks and plots, and the timings chart
    assert all(i["ok"] and i["width"] > 50 for i in images), [i for i in images if not i["ok"]]
    page = parse(html_path.read_text())
    assert len(decoded_images(page)) == len(images)
    assert not broken_links(page, run)
    assert len(page.hrefs) > len(page.ids) // 2  # a table of contents and the files section were checked
    summary = json.loads((run / "summary.json").read_text())
    assert summary["engine"] in html_path.read_text()

    from PIL import Image

    shot = Image.open(screenshot).convert("RGB")
    assert shot.size == (1280, 2400)
    colours = shot.resize((64, 120)).getcolors(64 * 120)
    assert colours is not None and len(colours) > 50  # a rendered page, not a blank one
    keep = os.environ.get("GEE_MINING_KEEP_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, keep)
