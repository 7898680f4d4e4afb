"""Step 2 quicklooks: a JPEG per cell of its visible bands with the mine polygons in translucent red.

Everything is drawn server-side: the composite's B4/B3/B2 through ``Image.visualize``
(reflectance ``vmin``..``vmax``, ``gamma``), the polygons painted (``Image.paint``) and
visualized red, blended at ``opacity`` with their outlines drawn opaque
(``Image.blend``), fetched as a JPEG on the cell's lattice (``image:computePixels``,
``scale`` metres per pixel; 10 m gives 550 x 550 for a 5500 m cell). The same graph is
``ee_scripts/quicklook.js`` for the Code Editor.

Quicklooks of the local engine's simulated world are marked: the word SIMULATED drawn in the image's
corner and a JPEG comment (``stamp_simulated``), decided by one request per run
(``sentinel2.simulated_flag`` over all the run's cells).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ee
from PIL import Image, ImageDraw

from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.schemas import check_rows
from gee_mining.errors import InputError
from gee_mining.steps.labels import polygons_near
from gee_mining.steps.sentinel2 import CompositeSpec, simulated_flag
from gee_mining.steps.sentinel2 import composite as s2_composite


@dataclass(frozen=True)
class QuicklookSpec:
    """How a quicklook looks: reflectance stretch, gamma, polygon colour, fill opacity, outline width."""

    vmin: float = 0.0
    vmax: float = 0.3
    gamma: float = 1.3
    color: str = "ff0000"
    opacity: float = 0.35
    outline: int = 1
    scale: float = 10.0
    quality: int = 90

    def __post_init__(self) -> None:
        if not 0 <= self.opacity <= 1:
            raise InputError(f"opacity {self.opacity}: give a fraction between 0 and 1, e.g. 0.35.")
        if not self.vmax > self.vmin:
            raise InputError(f"vmax {self.vmax} must exceed vmin {self.vmin} (reflectance, e.g. 0 and 0.3).")
        if len(self.color) != 6 or any(c not in "0123456789abcdefABCDEF" for c in self.color):
            raise InputError(f"color {self.color!r}: give a hex RGB colour such as 'ff0000'.")


def quicklook_image(composite: Any, polygons: Any, spec: QuicklookSpec | None = None):
    """The 8-bit RGB ``ee.Image`` of a composite with ``polygons`` overlaid (fill at ``opacity``, outline opaque)."""

    spec = spec or QuicklookSpec()
    rgb = composite.visualize(bands=["B4", "B3", "B2"], min=spec.vmin, max=spec.vmax, gamma=spec.gamma)
    rgb = rgb.unmask(0)  # pixels without a clear observation show black, under the polygons as elsewhere
    fc = polygons if isinstance(polygons, ee.FeatureCollection) else ee.FeatureCollection(polygons)
    fill = ee.Image().byte().paint(fc, 1).visualize(palette=[spec.color], opacity=spec.opacity)
    out = rgb.blend(fill)
    if spec.outline:
        edge = ee.Image().byte().paint(fc, 1, spec.outline).visualize(palette=[spec.color])
        out = out.blend(edge)
    return out.toUint8()  # blend's result type differs between engines; the JPEG wants bytes


def quicklook_bytes(row: dict[str, Any], polygons: Any, spec: QuicklookSpec | None = None,
                    composite_spec: CompositeSpec | None = None, composite: Any = None) -> bytes:  # fmt: skip
    """The JPEG of one cell (computed by the engine)."""

    spec = spec or QuicklookSpec()
    grid = pixel_grid(row, scale=spec.scale)
    near = polygons_near(polygons, grid)  # a global polygon file: only the cell's polygons are projected
    image = quicklook_image(composite if composite is not None else s2_composite(row, composite_spec), near, spec)
    return ee.data.computePixels({"expression": image, "fileFormat": "JPEG", "grid": grid.ee_grid()})


SIMULATED_COMMENT = b"gee-mining: SIMULATED imagery (the local engine's simulated world), not a real observation"


def stamp_simulated(jpeg: bytes, quality: int = 90) -> bytes:
    """The JPEG with SIMULATED written in its top-left corner (white on black) and as its JPEG comment."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((4, 4), "SIMULATED")
    draw.rectangle((0, 0, right + 4, bottom + 4), fill=(0, 0, 0))
    draw.text((4, 4), "SIMULATED", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, comment=SIMULATED_COMMENT)
    return out.getvalue()


def run_is_simulated(rows: Sequence[dict[str, Any]], composite_spec: CompositeSpec | None = None) -> bool:
    """Whether any scene under the cells in the period is simulated: one request, however many cells."""
    rings = [
        [[[w, s], [e, s], [e, n], [w, n], [w, s]]] for row in rows for w, s, e, n in pixel_grid(row).lonlat_boxes()
    ]
    if not rings:
        return False
    region = ee.Geometry.MultiPolygon(rings, "EPSG:4326", False)
    return simulated_flag(region, composite_spec).getInfo() == "true"


def write_quicklooks(
    rows: Sequence[dict[str, Any]],
    polygons: Any,
    out_dir: str | os.PathLike,
    spec: QuicklookSpec | None = None,
    composite_spec: CompositeSpec | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """``<out_dir>/<cell>.jpg`` for each cell; each file appears whole or not at all; SIMULATED ones stamped."""
    rows = check_rows(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    simulated = run_is_simulated(rows, composite_spec)
    for i, row in enumerate(rows):
        try:
            data = quicklook_bytes(row, polygons, spec, composite_spec)
        except ee.EEException as e:
            raise InputError(f"quicklook of cell {row['name']}: {e}") from None
        if simulated:
            data = stamp_simulated(data, (spec or QuicklookSpec()).quality)
        path = out / f"{row['name']}.jpg"
        tmp = path.with_name(f".partial-{path.name}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        paths.append(path)
        if progress:
            progress(f"[quicklooks] {i + 1}/{len(rows)} {path.name}")
    return paths
