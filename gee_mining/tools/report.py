"""The report of a run: one self-contained HTML file (and a PDF copy on request), rebuilt from what the run wrote.

A run (``gee-mining demo``, or any pipeline code) fills a :class:`Report` with
sections of text, tables and figures, and saves it into its run directory
(:meth:`Report.save`): ``report.json`` (the sections) and ``report_figures/*.png``.
Beside it the run writes ``summary.json`` (its numbers: ``engine``, ``parameters``,
``timings_s``, ``warnings`` and one entry per step). :func:`build_report` turns a
run directory into ``report.html`` — the run's parameters and engine at the top,
a table of contents, the warnings, the steps' sections, the timings and the files
written — with every figure embedded as a data URI, so the file opens anywhere,
offline. ``gee-mining report RUN_DIR [--pdf]`` runs it again at any time; the PDF
is printed by headless Chromium.

Warnings gathered into the report's "Warnings" section: ``summary["warnings"]``
(``{"step", "message"}`` items or strings), any ``"warnings"`` list inside a
step's summary, and Python warnings the run recorded there (repaired polygons,
masked scenes, failed exports...).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt

from gee_mining.errors import InputError

REPORT_JSON = "report.json"
SUMMARY_JSON = "summary.json"
FIGURES_DIR = "report_figures"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
SIMULATED = "SIMULATED"
MIN_TIMING_S = 0.05  # parts that took less (skipped, or nothing to do) are named, not drawn as 0 s bars

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #b33; padding-bottom: .2em; }
h2 { margin-top: 2em; color: #822; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4eeee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.short { white-space: nowrap; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .88em; color: #555; }
.note { background: #fff8e5; border-left: 4px solid #e0a800; padding: .5em .8em; }
.warn { background: #fdecea; border-left: 4px solid #c62828; padding: .5em .8em; }
.ok { background: #eaf6ec; border-left: 4px solid #2e7d32; padding: .5em .8em; }
.meta { color: #666; font-size: .9em; }
nav.toc ol { columns: 2; font-size: .92em; }
table.params td:first-child { font-weight: 600; white-space: nowrap; }
h2, h3, caption { break-after: avoid; page-break-after: avoid; }
.keep { break-inside: avoid; page-break-inside: avoid; }
.print-only { display: none; }
@media print { body { max-width: none; margin: 0; } figure, table { break-inside: avoid; } nav.toc { display: none; }
  figure.page iframe { display: none; } .print-only { display: block; } }
"""


@dataclass
class Section:
    """A titled part of the report. ``parts`` holds typed items (dicts with a ``kind``); a str is raw HTML."""

    title: str
    parts: list[Any] = field(default_factory=list)


@dataclass
class Report:
    """A report being written: sections of text, tables and figures, and warnings."""

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)

    def section(self, title: str, simulated: bool = False) -> Section:
        """A new section. ``simulated``: it shows simulated imagery or polygons, and its title says SIMULATED
        (prefixed when the title does not already say so), as every such section must."""
        if simulated and SIMULATED not in title:
            title = f"{SIMULATED} · {title}"
        s = Section(title)
        self.sections.append(s)
        return s

    def warn(self, message: str, step: str = "") -> None:
        """Record a warning for the report's "Warnings" section (a repaired polygon, a failed export...)."""
        self.warnings.append({"step": step, "message": message})

    @staticmethod
    def text(section: Section, text: str, css_class: str | None = None) -> None:
        section.parts.append({"kind": "text", "text": str(text), "class": css_class})

    @staticmethod
    def table(section: Section, header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> None:
        section.parts.append(
            {
                "kind": "table",
                "header": [str(h) for h in header],
                "rows": [[_plain(v) for v in row] for row in rows],
                "caption": caption,
            }
        )

    @staticmethod
    def figure(section: Section, fig: Any, caption: str, alt: str | None = None) -> None:
        """A matplotlib figure, kept as PNG (and closed)."""

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        Report.image(section, buf.getvalue(), caption, alt)

    @staticmethod
    def image(section: Section, data: bytes | str | os.PathLike, caption: str, alt: str | None = None) -> None:
        """A PNG or JPEG picture (bytes or a file), e.g. a quicklook an export step wrote."""
        if not isinstance(data, bytes):
            data = Path(data).read_bytes()
        section.parts.append({"kind": "figure", "data": data, "caption": caption, "alt": alt or caption})

    @staticmethod
    def page(section: Section, src: str, page_html: str, caption: str) -> None:
        """An HTML page a step wrote in the run's folder (``src``, relative to it), embedded whole in the report
        (so the report stays self-contained) and linked; saved as its path, read back from the run's folder."""
        section.parts.append({"kind": "page", "src": Path(src).as_posix(), "html": page_html, "caption": caption})

    # -- a run directory -------------------------------------------------------------------------------------------

    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write ``report.json`` and its figures under ``run_dir`` (what :func:`build_report` reads back)."""
        run_dir = Path(run_dir)
        figures = run_dir / FIGURES_DIR
        if figures.exists():
            shutil.rmtree(figures)
        sections, n = [], 0
        for s in self.sections:
            parts = []
            for p in s.parts:
                if isinstance(p, dict) and p.get("kind") == "figure" and "data" in p:
                    n += 1
                    figures.mkdir(parents=True, exist_ok=True)  # only a report with figures has the folder
                    name = f"{FIGURES_DIR}/{n:03d}-{_slug(s.title)[:40]}.{_image_type(p['data'])}"
                    (run_dir / name).write_bytes(p["data"])
                    p = {"kind": "figure", "src": name, "caption": p["caption"], "alt": p["alt"]}
                elif isinstance(p, str):
                    p = {"kind": "html", "html": p}
                elif isinstance(p, dict) and p.get("kind") == "page":
                    p = {k: v for k, v in p.items() if k != "html"}  # the page is in the run's folder
                parts.append(p)
            sections.append({"title": s.title, "parts": parts})
        doc = {"title": self.title, "subtitle": self.subtitle, "sections": sections, "warnings": self.warnings}
        return _atomic_write(run_dir / REPORT_JSON, json.dumps(doc, indent=1))

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> Report:
        """The report a run saved, its figures read back from their files."""
        run_dir = Path(run_dir)
        doc = json.loads((run_dir / REPORT_JSON).read_text())
        report = cls(doc.get("title", "gee-mining run report"), doc.get("subtitle", ""))
        report.warnings = list(doc.get("warnings", []))
        for s in doc.get("sections", []):
            section = report.section(s["title"])
            for p in s.get("parts", []):
                if p.get("kind") == "figure" and "src" in p:
                    path = run_dir / p["src"]
                    if not path.is_file():
                        report.warn(f"figure {p['src']} is missing from the run directory", s["title"])
                        continue
                    p = {"kind": "figure", "data": path.read_bytes(), "caption": p["caption"], "alt": p.get("alt")}
                elif p.get("kind") == "page":
                    path = run_dir / p["src"]
                    if not path.is_file():
                        report.warn(f"page {p['src']} is missing from the run directory", s["title"])
                        continue
                    p = {**p, "html": path.read_text()}
                section.parts.append(p)
        return report

    # -- HTML ------------------------------------------------------------------------------------------------------

    def render(
        self,
        summary: Mapping | None = None,
        run_dir: str | os.PathLike | None = None,
        html_dir: str | os.PathLike | None = None,
    ) -> str:
        """The self-contained HTML page: parameters, contents, warnings, sections, timings, files.

        ``run_dir``: the run's folder, whose files the page lists with links relative to ``html_dir``
        (where the page will be written; default ``run_dir``)."""
        summary = dict(summary or {})
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        head = [f"<h1>{html.escape(self.title)}</h1>"]
        meta = " — ".join(x for x in (self.subtitle, f"report written {now}") if x)
        head.append(f'<p class="meta">{html.escape(meta)}</p>')
        head.append(_run_box(summary, run_dir))

        sections = list(self.sections)
        warnings = self.warnings + collect_warnings(summary)
        titles = ["Warnings"] + [s.title for s in sections]
        timings = summary.get("timings_s") or {}
        if timings:
            titles.append("Timings")
        if run_dir is not None:
            titles.append("Files written by this run")
        anchors = _anchors(titles)
        toc = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for t, a in zip(titles, anchors, strict=True))
        body = head + [f'<nav class="toc"><h2>Contents</h2><ol>{toc}</ol></nav>']

        body.append(_kept(_h2("Warnings", anchors[0]), [_warnings_html(warnings)]))
        for s, a in zip(sections, anchors[1:], strict=False):
            body.append(_kept(_h2(s.title, a), [_part_html(p) for p in s.parts], _lead(s.parts)))
        k = 1 + len(sections)
        if timings:
            body.append(_kept(_h2("Timings", anchors[k]), [_timings_html(timings)]))
            k += 1
        if run_dir is not None:
            files = _files_html(Path(run_dir), Path(html_dir) if html_dir is not None else Path(run_dir))
            body.append(_kept(_h2("Files written by this run", anchors[k]), [files]))
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body)
            + "</body></html>"
        )

    def write(self, path: str | os.PathLike, summary: Mapping | None = None) -> Path:
        """Write the HTML page atomically: a reader never sees half a report."""
        path = Path(path)
        return _atomic_write(path, self.render(summary, None))


@dataclass
class ReportFiles:
    html: Path
    pdf: Path | None = None


def build_report(
    run_dir: str | os.PathLike, out: str | os.PathLike | None = None, pdf: bool | str | os.PathLike = False
) -> ReportFiles:
    """(Re)write the HTML report of a run from its ``report.json``, ``summary.json`` and figures.

    ``out`` defaults to ``RUN_DIR/report.html``; ``pdf`` (True or a path) also prints it to PDF with
    headless Chromium (``RUN_DIR/report.pdf`` by default). A run that saved only ``summary.json``
    gets a report of its numbers.
    """
    run_dir = Path(run_dir)
    has_report, has_summary = (run_dir / REPORT_JSON).is_file(), (run_dir / SUMMARY_JSON).is_file()
    if not run_dir.is_dir() or not (has_report or has_summary):
        raise InputError(
            f"{run_dir} is not a run directory: it has neither {REPORT_JSON} nor {SUMMARY_JSON}. "
            "Give the folder a run wrote (e.g. `gee-mining report runs/demo` after `gee-mining demo --out runs/demo`)."
        )
    try:
        summary = json.loads((run_dir / SUMMARY_JSON).read_text()) if has_summary else {}
    except json.JSONDecodeError as e:
        raise InputError(f"{run_dir / SUMMARY_JSON} is not valid JSON ({e}); rerun the step that wrote it.") from e
    html_path = Path(out) if out is not None else run_dir / REPORT_HTML
    if has_report:
        report = Report.load(run_dir)
    elif html_path.exists() and _SUMMARY_ONLY not in html_path.read_text(errors="replace")[:4000]:
        raise InputError(
            f"{run_dir} has no {REPORT_JSON} (a run of an older gee-mining?): rebuilding {html_path} from "
            f"{SUMMARY_JSON} alone would replace its figures. Give --out NEW.html to write the summary's report elsewhere."
        )
    else:
        report = Report("gee-mining run report", f"run {run_dir.name}")
        s = report.section("Summary")
        for key, value in summary.items():
            if key not in ("engine", "parameters", "timings_s", "warnings"):
                Report.table(s, ["field", "value"], _flatten(value), caption=key)
    page = report.render(summary, run_dir, html_path.parent)
    if not has_report:
        page = page.replace('<meta charset="utf-8">', '<meta charset="utf-8">' + _SUMMARY_ONLY, 1)
    _atomic_write(html_path, page)
    pdf_path = None
    if pdf:
        pdf_path = Path(pdf) if not isinstance(pdf, bool) else html_path.with_suffix(".pdf")
        print_pdf(html_path, pdf_path)
    return ReportFiles(html_path, pdf_path)


# -- Chromium ---------------------------------------------------------------------------------------------------------

_SUMMARY_ONLY = '<meta name="gee-mining-report" content="summary-only">'

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Chromium's executable: ``$GEE_MINING_CHROMIUM``, else the first of :data:`CHROMIUM_NAMES` on PATH."""
    given = os.environ.get("GEE_MINING_CHROMIUM")
    if given:
        return given if Path(given).is_file() else shutil.which(given)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with a fresh profile and no background networking; ``args`` end with the URL."""
    exe = find_chromium()
    if exe is None:
        raise InputError(
            "Chromium was not found: install it (`apt-get install chromium` on Debian) or set GEE_MINING_CHROMIUM "
            "to its executable."
        )
    with tempfile.TemporaryDirectory(prefix="gee-mining-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def print_pdf(html_path: str | os.PathLike, pdf_path: str | os.PathLike) -> Path:
    """Print an HTML file to PDF with headless Chromium (written atomically)."""
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=pdf_path.parent, prefix=".report-", suffix=".pdf")
    os.close(fd)
    try:
        done = run_chromium(["--no-pdf-header-footer", f"--print-to-pdf={tmp}", html_path.as_uri()])
        if done.returncode != 0 or Path(tmp).stat().st_size == 0:
            raise InputError(f"Chromium could not print {html_path} to PDF: {done.stderr.strip()[-500:]}")
        _readable(tmp)
        os.replace(tmp, pdf_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return pdf_path


# -- helpers ----------------------------------------------------------------------------------------------------------


def collect_warnings(summary: Mapping) -> list[dict]:
    """Every warning a run recorded in its summary: ``summary["warnings"]`` and each step's ``warnings`` list."""
    found: list[dict] = []

    def visit(value: Any, step: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                if k == "warnings" and isinstance(v, list):
                    for w in v:
                        if isinstance(w, Mapping):
                            found.append({"step": str(w.get("step") or step), "message": str(w.get("message", w))})
                        else:
                            found.append({"step": step, "message": str(w)})
                else:
                    visit(v, step or str(k))

    visit(summary, "")
    return found


def _run_box(summary: Mapping, run_dir: str | os.PathLike | None) -> str:
    rows = []
    if summary.get("engine"):
        rows.append(("engine", summary["engine"]))
    for k, v in (summary.get("parameters") or {}).items():
        rows.append((k, v if isinstance(v, str) else json.dumps(v)))
    if run_dir is not None:
        rows.append(("run directory", str(Path(run_dir).resolve())))
    out = []
    if summary.get("simulated"):
        out.append(
            '<p class="warn"><b>SIMULATED inputs.</b> Sections marked SIMULATED show imagery and polygons generated '
            "by <code>gee-mining world</code>, not real Sentinel-2 scenes or real mines.</p>"
        )
    if rows:
        trs = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        out.append(f'<table class="params"><caption>Parameters and engine of this run</caption>{trs}</table>')
    return "".join(out)


def _warnings_html(warnings: list[dict]) -> str:
    if not warnings:
        return (
            '<p class="ok">No warnings were recorded by this run (repaired polygons, masked scenes, failed exports '
            "and other problems a step reports would be listed here).</p>"
        )
    rows = "".join(
        f"<tr><td>{html.escape(w.get('step', ''))}</td><td>{html.escape(w.get('message', ''))}</td></tr>"
        for w in warnings
    )
    return (
        f'<p class="warn">{len(warnings)} warning(s) recorded by this run.</p>'
        f"<table><tr><th>step</th><th>warning</th></tr>{rows}</table>"
    )


def _timings_html(timings: Mapping[str, float]) -> str:
    """A bar per part that took time, the table of them, and the parts that took none (skipped) by name."""

    matplotlib.use("Agg")

    all_items = [(str(k), float(v)) for k, v in timings.items()]
    items = [(k, v) for k, v in all_items if v >= MIN_TIMING_S]
    idle = [k for k, v in all_items if v < MIN_TIMING_S]
    total = sum(v for _, v in items)
    section = Section("Timings")
    if items:
        fig, ax = plt.subplots(figsize=(10, 0.3 * len(items) + 1))
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#b33")
        ax.set_xlabel("seconds (wall clock)")
        ax.tick_params(axis="y", labelsize=8)
        Report.figure(section, fig, f"Wall-clock time of each part of the run ({total:,.1f} s in all).")
        Report.table(section, ["part", "seconds", "share"], [(k, round(v, 1), f"{v / total:.0%}") for k, v in items])
    if idle:
        Report.text(section, f"Not run, or under {MIN_TIMING_S * 1000:g} ms: {', '.join(idle)}.", "meta")
    return "".join(_part_html(p) for p in section.parts)


def _files_html(run_dir: Path, html_dir: Path) -> str:
    rows = []
    for entry in sorted(run_dir.iterdir()):
        if entry.name.startswith(".") or entry.name in (REPORT_HTML, REPORT_PDF):
            continue
        if entry.is_dir():
            files = [p for p in entry.rglob("*") if p.is_file()]
            what = f"{len(files)} files, {_size(sum(p.stat().st_size for p in files))}"
            href = _relative(entry, html_dir) + "/"
        else:
            what, href = _size(entry.stat().st_size), _relative(entry, html_dir)
        rows.append(f'<tr><td><a href="{html.escape(href)}">{html.escape(entry.name)}</a></td><td>{what}</td></tr>')
    return (
        '<p class="meta">Links are relative: they work while the report stays where it was written.</p>'
        f"<table><tr><th>file or folder</th><th>contents</th></tr>{''.join(rows)}</table>"
    )


def _part_html(p: Any) -> str:
    if isinstance(p, str):
        return p
    kind = p.get("kind")
    if kind == "html":
        return p["html"]
    if kind == "text":
        cls = f' class="{html.escape(p["class"])}"' if p.get("class") else ""
        return f"<p{cls}>{html.escape(p['text'])}</p>"
    if kind == "table":
        out = ["<table>"]
        if p.get("caption"):
            out.append(f"<caption>{html.escape(p['caption'])}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in p["header"]) + "</tr>")
        formats = [_column_format([row[i] for row in p["rows"] if i < len(row)]) for i in range(len(p["header"]))]
        for row in p["rows"]:
            cells = []
            for v, fmt in zip(row, formats, strict=False):
                if _is_number(v):
                    cells.append(f'<td class="num">{fmt(v)}</td>')
                else:
                    short = ' class="short"' if len(str(v)) <= 12 else ""  # "5500 m" on one line
                    cells.append(f"<td{short}>{html.escape(str(v))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        return "".join(out)
    if kind == "figure":
        data = p["data"]
        b64 = base64.b64encode(data).decode()
        return (
            f'<figure><img alt="{html.escape(p.get("alt") or p["caption"])}" '
            f'src="data:image/{_image_type(data)};base64,{b64}">'
            f"<figcaption>{html.escape(p['caption'])}</figcaption></figure>"
        )
    if kind == "page":
        src = html.escape(p["src"])
        return (
            f'<figure class="page"><iframe title="{html.escape(p["caption"])}" srcdoc="{html.escape(p["html"])}" '
            'style="width:100%;height:720px;border:1px solid #ddd"></iframe>'
            f'<p class="print-only note">An interactive page, not printed (its frame would cut it off): open '
            f"{src} beside this report.</p>"
            f'<figcaption>{html.escape(p["caption"])} (<a href="{src}">{src}</a>, beside this report)</figcaption>'
            "</figure>"
        )
    raise ValueError(f"unknown report part kind {kind!r}")


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _h2(title: str, anchor: str) -> str:
    return f'<h2 id="{anchor}">{html.escape(title)}</h2>'


def _anchors(titles: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for t in titles:
        a = _slug(t) or "section"
        seen[a] = seen.get(a, 0) + 1
        out.append(a if seen[a] == 1 else f"{a}-{seen[a]}")
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _image_type(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    raise InputError("a report image must be PNG or JPEG data.")


def _plain(v: Any) -> Any:
    """A table cell as a JSON value: numpy scalars become Python numbers, anything else not JSON a string."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if hasattr(v, "item"):
        try:
            return _plain(v.item())
        except (TypeError, ValueError):
            pass
    return str(v)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        rows = []
        for k, v in value.items():
            rows.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return rows
    if isinstance(value, list) and len(value) > 8:
        return [(prefix, f"[{len(value)} items]")]
    return [(prefix or "value", value if isinstance(value, int | float) else json.dumps(value))]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        _readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _readable(path: str | os.PathLike) -> None:
    """The permissions of a file created normally (mkstemp makes it private): a report is meant to be shared."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _column_format(values: Sequence[Any]):
    """One number format for a table column: integers with thousands separators; floats with the same decimals
    down the column, enough for two significant digits of its smallest non-zero value (at most 4, and never more
    than the values hold: seconds rounded to 0.1 s show one decimal)."""
    numbers = [v for v in values if _is_number(v)]
    floats = [abs(v) for v in numbers if isinstance(v, float) and math.isfinite(v)]
    if not any(isinstance(v, float) for v in numbers):
        return lambda v: f"{v:,}"
    nonzero = [v for v in floats if v > 0]
    decimals = 0 if not nonzero else max(0, min(4, 1 - math.floor(math.log10(min(nonzero)))))
    decimals = min(decimals, max(_decimals_held(v) for v in floats))  # never more digits than the values hold

    def fmt(v: float) -> str:
        if isinstance(v, float) and not math.isfinite(v):
            return "n/a" if v != v else ("∞" if v > 0 else "-∞")
        return f"{v:,.{decimals}f}"

    return fmt


def _lead(parts: Sequence[Any]) -> int:
    """How many parts open a section: its leading paragraphs and the first table or figure after them."""
    n = 0
    while n < len(parts) and isinstance(parts[n], dict) and parts[n].get("kind") == "text":
        n += 1
    return min(n + 1, len(parts))


def _decimals_held(v: float) -> int:
    """The decimals of a float's shortest repr: 12.5 holds 1, 0.125 holds 3, 1e-05 holds 5."""
    text = repr(v)
    if "e" in text:
        mantissa, exponent = text.split("e")
        return max(0, len(mantissa.split(".")[1]) if "." in mantissa else 0) - int(exponent)
    return len(text.split(".")[1]) if "." in text else 0


def _kept(heading: str, parts: Sequence[str], lead: int = 1) -> str:
    """A section: its heading kept on one page with its first ``lead`` parts (the opening paragraphs and the first
    table or figure), so that no heading, or heading and introduction, is left at the foot of a page."""
    first = "".join(parts[:lead])
    rest = "".join(parts[lead:])
    return f'<section><div class="keep">{heading}{first}</div>{rest}</section>'
