"""The review page of a monitoring run, and the verdicts a reviewer records on it.

``review.html`` (self-contained: images inline, no network) shows a map of the candidates over the known mines
(SVG), a table that sorts on any column, each candidate's quicklooks in its first and last year (the composite's
B4/B3/B2 with the candidate outlined, computed by the engine: two ``computePixels`` per candidate, for at most
``max_quicklooks`` candidates, best scores first), and three buttons per candidate: mine, not mine, unsure.
The page keeps the verdicts in the browser and "Save verdicts" downloads ``verdicts.json``: each verdict with
the candidate's outline (WKT, EPSG:4326), so a later run (whose candidates are numbered afresh) can use it.
:func:`read_verdicts` reads that file back; ``gee-mining monitor --verdicts FILE`` trains the next run's model
with confirmed candidates as mine pixels and rejected ones as hard negatives
(:func:`gee_mining.monitor.core.sample_by_land_cover`).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ee
import shapely
from pyproj import Transformer

from gee_mining.contracts.datasets import WORLDCOVER_CLASSES
from gee_mining.errors import InputError
from gee_mining.monitor.core import VERDICTS, Candidate, MonitorRegion, Verdict
from gee_mining.steps.quicklooks import QuicklookSpec, quicklook_image, stamp_simulated

QUICKLOOK_PX = 128  # a quicklook's side in 10 m pixels


def read_verdicts(path: str | Path) -> list[Verdict]:
    """The verdicts of a ``verdicts.json`` the review page saved; a clear error on anything else."""
    try:
        data = json.loads(Path(path).read_text())
        items = data["verdicts"]
        out = [Verdict(int(v["candidate_id"]), str(v["verdict"]), shapely.from_wkt(v["geometry_wkt"])) for v in items]
    except (OSError, ValueError, KeyError, TypeError, shapely.errors.GEOSException) as exc:
        raise InputError(f"--verdicts {path}: not a verdicts file saved by the review page ({exc}).") from None
    bad = sorted({v.verdict for v in out} - set(VERDICTS))
    if bad:
        raise InputError(f"--verdicts {path}: unknown verdict(s) {bad}; use {', '.join(VERDICTS)}.")
    return out


def _grid(geom, region: MonitorRegion, size_px: int) -> dict:
    """A ``size_px`` square 10 m grid centred on ``geom`` (EPSG:4326), on the region's lattice."""
    tf = Transformer.from_crs(4326, region.epsg, always_xy=True)
    c = geom.centroid
    x, y = tf.transform(c.x, c.y)
    x0 = math.floor((x - size_px * 5) / 10) * 10
    y0 = math.floor((y + size_px * 5) / 10) * 10
    return {"dimensions": {"width": size_px, "height": size_px}, "crsCode": f"EPSG:{region.epsg}",
            "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": x0, "shearY": 0, "scaleY": -10,
                                "translateY": y0}}  # fmt: skip


def quicklooks(candidates: Sequence[Candidate], composites: dict[int, Any], region: MonitorRegion,
               simulated: bool, max_quicklooks: int = 50, size_px: int = QUICKLOOK_PX) -> dict[int, dict[int, bytes]]:  # fmt: skip
    """JPEGs of the first and last year around the best ``max_quicklooks`` candidates: {candidate: {year: jpeg}}."""
    years = (min(composites), max(composites))
    spec = QuicklookSpec(opacity=0.0, color="ffff00")
    out: dict[int, dict[int, bytes]] = {}
    for c in sorted(candidates, key=lambda c: -c.score)[:max_quicklooks]:
        fc = ee.FeatureCollection([ee.Feature(ee.Geometry(shapely.geometry.mapping(c.geometry)))])
        grid = _grid(c.geometry, region, size_px)
        out[c.id] = {}
        for y in years:
            image = quicklook_image(ee.Image(composites[y]), fc, spec)
            jpeg = ee.data.computePixels({"expression": image, "fileFormat": "JPEG", "grid": grid})
            out[c.id][y] = stamp_simulated(jpeg) if simulated else jpeg
    return out


_SCRIPT = """
const verdicts = {};
function pick(btn) {
  const row = btn.closest('tr');
  verdicts[row.dataset.id] = {candidate_id: Number(row.dataset.id), verdict: btn.dataset.verdict,
                              geometry_wkt: row.dataset.wkt};
  row.querySelectorAll('button.v').forEach(b => b.classList.toggle('on', b === btn));
  row.dataset.verdict = btn.dataset.verdict;
  document.getElementById('count').textContent = Object.keys(verdicts).length;
}
function verdictsJSON() {
  const previous = JSON.parse(document.getElementById('previous').textContent);
  return JSON.stringify({run: document.body.dataset.run, SIMULATED: document.body.dataset.simulated === 'true',
                         verdicts: previous.concat(Object.values(verdicts))}, null, 1);
}
function save() {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([verdictsJSON()], {type: 'application/json'}));
  a.download = 'verdicts.json';
  a.click();
}
function sortBy(th) {
  const table = th.closest('table'), body = table.tBodies[0], k = th.cellIndex;
  const asc = th.dataset.asc !== 'true';
  th.dataset.asc = asc;
  const key = r => { const t = r.cells[k].dataset.v ?? r.cells[k].textContent; const n = Number(t);
                     return t !== '' && !isNaN(n) ? n : t; };
  [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1))
    .forEach(r => body.appendChild(r));
}
"""

_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:3px 6px;font-size:13px}th{cursor:pointer;background:#eee}button.v.on{background:#2a7;color:#fff}
.sim{background:#b00;color:#fff;padding:2px 8px;font-weight:bold}img{width:128px;height:128px}svg{border:1px solid #999}"""


def _svg(candidates: Sequence[Candidate], known: Sequence[Any], bounds: tuple[float, float, float, float],
         size: int = 480) -> str:  # fmt: skip
    """The map: known mines (grey) and candidates (red, numbered) in lon/lat, north up."""
    w, s, e, n = bounds
    k = size / max(e - w, n - s)

    def path(g) -> str:
        parts = g.geoms if hasattr(g, "geoms") else [g]
        rings = [r for p in parts if p.geom_type == "Polygon" for r in [p.exterior, *p.interiors]]
        return " ".join(
            "M" + " L".join(f"{(x - w) * k:.1f},{(n - y) * k:.1f}" for x, y in r.coords) + "Z" for r in rings
        )

    items = [f'<path d="{path(g)}" fill="#999" stroke="#555"/>' for g in known]
    for c in candidates:
        p = c.geometry.representative_point()
        items.append(f'<path d="{path(c.geometry)}" fill="#e22" stroke="#900"><title>candidate {c.id}</title></path>')
        items.append(f'<text x="{(p.x - w) * k + 4:.1f}" y="{(n - p.y) * k:.1f}" font-size="11">{c.id}</text>')
    return f'<svg id="map" width="{size}" height="{size}" viewBox="0 0 {size} {size}">{"".join(items)}</svg>'


def _img(jpeg: bytes | None, alt: str) -> str:
    if jpeg is None:
        return "<td>-</td>"
    return f'<td><img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}"></td>'


def _land_cover(code: Any) -> str:
    """A WorldCover class as its code and name (``60 bare / sparse vegetation``), or blank when there is none."""
    if code is None:
        return ""
    name = WORLDCOVER_CLASSES.get(int(code))
    return f"{int(code)} {name}" if name else str(code)


def _row(c: Candidate, looks: dict[int, bytes], years: tuple[int, int]) -> str:
    a = c.attributes
    cells = [str(c.id), f"{c.score:.3f}", f"{c.area_m2:.0f}", str(c.first_year), str(c.years_seen),
             str(a.get("nearest_mine") or ""), "" if a.get("distance_m") is None else f"{a['distance_m']:.0f}",
             html.escape(str(a.get("country") or "")), _land_cover(a.get("land_cover"))]  # fmt: skip
    buttons = "".join(f'<button class="v" data-verdict="{v}" onclick="pick(this)">{v.replace("_", " ")}</button>'
                      for v in VERDICTS)  # fmt: skip
    return (f'<tr data-id="{c.id}" data-wkt="{html.escape(c.geometry.wkt)}">' + "".join(f"<td>{x}</td>" for x in cells)
            + _img(looks.get(years[0]), f"candidate {c.id} in {years[0]}")
            + _img(looks.get(years[1]), f"candidate {c.id} in {years[1]}") + f"<td>{buttons}</td></tr>")  # fmt: skip


def _previous(previous: Sequence[Verdict], candidates: Sequence[Candidate]) -> tuple[str, str]:
    """The earlier verdicts as the page's JSON block (saved again with the new ones, so verdicts accumulate run
    after run) and a sentence on the candidates they hide."""
    items = [{"candidate_id": v.candidate_id, "verdict": v.verdict, "geometry_wkt": v.geometry.wkt} for v in previous]
    block = json.dumps(items).replace("</", "<\\/")
    hidden = [c.previous_verdict for c in candidates if c.previous_verdict is not None]
    counts = ", ".join(f"{v.replace('_', ' ')}: {hidden.count(v)}" for v in VERDICTS if hidden.count(v))
    note = f" {len(hidden)} candidate(s) reviewed before are not shown again ({counts})." if hidden else ""
    return f"<script type='application/json' id='previous'>{block}</script>", note


def review_html(candidates: Sequence[Candidate], known: Sequence[Any], bounds: tuple[float, float, float, float],
                years: tuple[int, int], looks: dict[int, dict[int, bytes]], run: str, simulated: bool,
                previous: Sequence[Verdict] = ()) -> str:  # fmt: skip
    """The review page (see the module docstring): the candidates no earlier verdict covers; ``previous``, the
    verdicts this run was given, are kept in the page and saved again with the new ones."""
    block, note = _previous(previous, candidates)
    candidates = [c for c in candidates if c.previous_verdict is None]
    header = ["id", "score", "area m2", "first year", "years seen", "nearest mine", "distance m", "country",
              "land cover", f"{years[0]}", f"{years[1]}", "verdict"]  # fmt: skip
    ths = "".join(f'<th onclick="sortBy(this)">{h}</th>' for h in header)
    rows = "".join(_row(c, looks.get(c.id, {}), years) for c in candidates)
    sim = '<span class="sim">SIMULATED</span> ' if simulated else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Monitoring review</title><style>{_STYLE}</style>"
            f"</head><body data-run='{html.escape(run)}' data-simulated='{str(simulated).lower()}'>"
            f"<h1>{sim}Candidates for review, {years[0]}-{years[1]}</h1>"
            f"<p>{len(candidates)} new candidate(s) outside the known mines.{note} Record a verdict per candidate, then "
            f"<button id='save' onclick='save()'>Save verdicts</button> (<span id='count'>0</span> recorded) and "
            f"pass the file to the next run: <code>gee-mining monitor ... --verdicts verdicts.json</code>.</p>"
            f"{_svg(candidates, known, bounds)}<p>The region, north up: known mines grey, candidates red (numbered "
            "by id). Quicklooks: natural colour (B4, B3, B2) of the first and last year, the candidate outlined in "
            "yellow.</p>"
            f"<table id='candidates'><thead><tr>{ths}</tr></thead>"
            f"<tbody>{rows}</tbody></table>{block}<script>{_SCRIPT}</script></body></html>")  # fmt: skip


def write_review(out: Path, candidates: Sequence[Candidate], region: MonitorRegion, composites: dict[int, Any],
                 known: Sequence[Any], simulated: bool, max_quicklooks: int = 50,
                 previous: Sequence[Verdict] = ()) -> Path:  # fmt: skip
    """``review.html`` in ``out`` (written beside, then renamed); its path. Quicklooks of new candidates only."""
    tf = Transformer.from_crs(region.epsg, 4326, always_xy=True)
    xs, ys = tf.transform([region.bounds[0], region.bounds[2]], [region.bounds[1], region.bounds[3]])
    new = [c for c in candidates if c.previous_verdict is None]
    looks = quicklooks(new, composites, region, simulated, max_quicklooks)
    page = review_html(candidates, known, (xs[0], ys[0], xs[1], ys[1]), (min(composites), max(composites)), looks,
                       str(out), simulated, previous)  # fmt: skip
    path = out / "review.html"
    tmp = out / ".partial-review.html"
    tmp.write_text(page)
    tmp.replace(path)
    return path
