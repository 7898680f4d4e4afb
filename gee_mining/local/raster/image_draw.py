"""Vectors onto pixels, and distances: Image.paint, Collection.draw, Collection.distance, Image.distance,
Image.fastDistanceTransform.

``paint`` burns each feature's geometry, in collection order (later features
over earlier ones), into the request grid: a polygon takes the pixels whose
centre lies inside it, a line or point the pixels it passes through (GDAL's
rasteriser, as the region rule of ``reduceRegion``); with a ``width`` the
outlines are painted ``width`` pixels wide (the boundary buffered by half the
width). Painted pixels take the colour and become valid; others keep the
image. Which pixels Earth Engine paints along edges is not documented; this
is the centre rule.

``Collection.draw`` paints filled polygons, lines ``strokeWidth`` pixels wide
and points as disks of ``pointRadius`` pixels in one RGB colour (bands
``vis-red``, ``vis-green``, ``vis-blue``, uint8), masked elsewhere; Earth
Engine's exact stroke rendering is not reproduced.

Distances are exact on the pixel lattice of the request grid, computed on the
grid widened by the search radius (two passes: distance along columns, then
the lower envelope along rows). ``fastDistanceTransform`` returns squared
pixel distances by default (its reference says so) and is masked where no
non-zero pixel lies within ``neighborhood`` pixels; ``distance`` returns
distances in the kernel's units (pixels, or metres for a metre kernel) and is
masked beyond the kernel's radius.

``Collection.distance`` (``ee.FeatureCollection.distance``) is exact, not a
raster approximation: each pixel centre's distance to the nearest point, line
or polygon *boundary* (also inside polygons, as its reference says) is
computed with shapely in the request grid's CRS, the geometries reprojected
there within ``min(maxError, pixel / 20)``. Earth Engine measures on a sphere;
here the distance is planar in the grid's projected CRS (for UTM grids the
two differ by the projection's scale factor, under 0.1 %). Geographic
(degree) grids are refused: reproject to a metre grid. Pixels farther than
``searchRadius`` metres from every geometry are masked, as on Earth Engine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from rasterio.features import rasterize

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.raster.grid import grid_projection
from gee_mining.local.raster.image import Band, Image, as_image
from gee_mining.local.raster.pixeltype import PixelType, widest
from gee_mining.local.values.feature import Feature
from gee_mining.local.values.geometry import Geometry, in_crs
from gee_mining.local.values.kernel import Kernel
from gee_mining.local.values.projection import Projection, crs_object, is_geographic

_DEGREE = Projection("EPSG:4326", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0))


def _shapes_in(features: list[Feature], crs: str, pixel_m: float) -> list[shapely.Geometry | None]:
    out = []
    for f in features:
        g = f.geometry
        if not isinstance(g, Geometry):
            out.append(None)
            continue
        out.append(in_crs(g, crs, max(pixel_m / 20.0, 0.01)))
    return out


def _burn(pairs: list[tuple[shapely.Geometry, float]], grid: PixelGrid) -> np.ndarray:
    """Values burnt in order (NaN where nothing is painted)."""
    geoms = [(shapely.geometry.mapping(s), v) for s, v in pairs if s is not None and not s.is_empty]
    if not geoms:
        return np.full(grid.shape, np.nan)
    return rasterize(
        geoms, out_shape=grid.shape, transform=grid.affine, fill=np.nan, all_touched=False, dtype="float64"
    )


def _number(name: str, f: Feature, spec: Any, what: str) -> float:
    if isinstance(spec, str):
        v = f.properties.get(spec)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise EngineError(f"{name}: Feature '{f.id}' has no numeric property '{spec}' for the {what}.")
        return float(v)
    if isinstance(spec, bool) or not isinstance(spec, int | float):
        raise EngineError(f"{name}: The {what} must be a number or a property name.")
    return float(spec)


def _outline(shape: shapely.Geometry, half_width: float) -> shapely.Geometry:
    parts = []
    for p in shapely.get_parts(shape):
        if p.geom_type in ("Polygon", "MultiPolygon"):
            parts.append(p.boundary.buffer(half_width))
        elif p.geom_type in ("LineString", "LinearRing", "MultiLineString"):
            parts.append(p.buffer(half_width))
        else:
            parts.append(p)
    return shapely.union_all(parts) if parts else shape


class _Painted:
    """The features of one ``paint``, in each grid's CRS (reprojected once per CRS and tolerance, not per tile),
    with an STRtree: a tile burns only the features that meet it, in collection order, and a tile no feature
    meets is known to get no paint without rasterising (the probes of :class:`~.band.Band`)."""

    def __init__(self, features: list[Feature], colours: list[float], widths: list[float] | None):
        self.features, self.colours, self.widths = features, colours, widths
        self._by_crs: dict[tuple[str, float], tuple[list, shapely.STRtree]] = {}

    def _shapes(self, grid: PixelGrid) -> tuple[list, shapely.STRtree]:
        key = (grid.crs, grid_projection(grid).nominal_scale())
        if key not in self._by_crs:
            shapes = _shapes_in(self.features, grid.crs, key[1])
            if self.widths is not None:
                pixel = abs(grid.transform[0])
                shapes = [None if s is None else _outline(s, w * pixel / 2.0) for s, w in zip(shapes, self.widths,
                                                                                             strict=True)]  # fmt: skip
            self._by_crs[key] = (shapes, shapely.STRtree([shapely.Point() if s is None else s for s in shapes]))
        return self._by_crs[key]

    def _hits(self, grid: PixelGrid) -> np.ndarray:
        """The indices, in order, of the features whose shape's box meets the box of the grid's pixel centres
        (the centre rule: no other feature paints a pixel of it); a rotated grid's whole box, widened a pixel."""
        shapes, tree = self._shapes(grid)
        x0, y0, x1, y1 = grid.bounds
        a, b, _, d, e, _ = grid.transform
        if b == 0 and d == 0:  # a little less than half a pixel in: the centres, and a margin for rounding
            px, py = 0.45 * abs(a), 0.45 * abs(e)
        else:
            px = py = -(abs(a) + abs(b) + abs(d) + abs(e))
        return np.sort(tree.query(shapely.box(x0 + px, y0 + py, x1 - px, y1 - py)))

    def misses(self, grid: PixelGrid) -> bool:
        """True when no feature meets the grid: paint leaves every pixel of it as it was."""
        return len(self._hits(grid)) == 0

    def burn(self, grid: PixelGrid) -> np.ndarray:
        shapes, _ = self._shapes(grid)
        return _burn([(shapes[k], self.colours[k]) for k in self._hits(grid) if shapes[k] is not None], grid)


@algorithm("Image.paint")
def paint(image, featureCollection, color, width):  # noqa: N803
    name = "Image.paint"
    img = as_image(name, image)
    features = [f for f in featureCollection.features if isinstance(f, Feature)]
    colours = [_number(name, f, color, "color") for f in features]
    widths = None if width is None else [_number(name, f, width, "width") for f in features]
    if colours and all(float(c).is_integer() for c in colours):
        ctype = PixelType.int_range(min(colours), max(colours))
    else:
        ctype = PixelType("double") if colours else PixelType.int_range(0, 0)
    painted = _Painted(features, colours, widths)
    token = object()

    def burnt(grid: PixelGrid, ctx: Any) -> np.ndarray:
        cache = getattr(ctx, "pixels", None)
        if cache is None:
            return painted.burn(grid)
        key = (token, grid)
        if key not in cache:
            cache[key] = painted.burn(grid)
        return cache[key]

    out = []
    for b in img.bands:

        def compute(grid: PixelGrid, ctx: Any, b: Band = b) -> np.ma.MaskedArray:
            x = b.compute(grid, ctx)
            paint_ = burnt(grid, ctx)
            hit = ~np.isnan(paint_)
            return np.ma.MaskedArray(np.where(hit, paint_, x.data), np.ma.getmaskarray(x) & ~hit)

        out.append(b.replace(compute=compute, pixel_type=widest(b.pixel_type, ctype),
                             masked_on=lambda g, b=b: b.surely_masked(g) and painted.misses(g),
                             zero_on=lambda g, b=b: b.surely_zero(g) and painted.misses(g)))  # fmt: skip
    return img.with_bands(out)


_CSS = {
    "black": "000000", "white": "FFFFFF", "red": "FF0000", "green": "008000", "lime": "00FF00", "blue": "0000FF",
    "yellow": "FFFF00", "cyan": "00FFFF", "magenta": "FF00FF", "orange": "FFA500", "purple": "800080",
    "gray": "808080", "grey": "808080",
}  # fmt: skip


def _rgb(name: str, color: str) -> tuple[int, int, int]:
    text = _CSS.get(str(color).lower(), str(color)).lstrip("#")
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    if len(text) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        raise EngineError(f"{name}: Invalid color '{color}'.")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


@algorithm("Collection.draw")
def draw(collection, color, pointRadius, strokeWidth):  # noqa: N803
    name = "Collection.draw"
    rgb = _rgb(name, color)
    features = [f for f in collection.features if isinstance(f, Feature)]
    radius, stroke = float(pointRadius), float(strokeWidth)

    def coverage(grid: PixelGrid, ctx: Any) -> np.ndarray:
        pixel = abs(grid.transform[0])
        pairs = []
        for s in _shapes_in(features, grid.crs, grid_projection(grid).nominal_scale()):
            if s is None:
                continue
            for p in shapely.get_parts(s):
                if p.geom_type in ("Polygon", "MultiPolygon"):
                    pairs.append((shapely.union(p, p.boundary.buffer(stroke * pixel / 2.0)), 1.0))
                elif p.geom_type in ("Point", "MultiPoint"):
                    pairs.append((p.buffer(radius * pixel), 1.0))
                else:
                    pairs.append((p.buffer(stroke * pixel / 2.0), 1.0))
        return ~np.isnan(_burn(pairs, grid))

    token = object()
    bands = []
    for band_name, level in zip(("vis-red", "vis-green", "vis-blue"), rgb, strict=True):

        def compute(grid: PixelGrid, ctx: Any, level: int = level) -> np.ma.MaskedArray:
            cache = getattr(ctx, "pixels", None)
            key = (token, grid)
            hit = cache.get(key) if cache is not None else None
            if hit is None:
                hit = coverage(grid, ctx)
                if cache is not None:
                    cache[key] = hit
            return np.ma.MaskedArray(np.where(hit, float(level), 0.0), ~hit)

        bands.append(Band(band_name, PixelType.int_range(0, 255), _DEGREE, None, compute))
    return Image(bands)


# -- distances -------------------------------------------------------------------------------


def _edges(shape: shapely.Geometry) -> list[shapely.Geometry]:
    """Points and lines as they are; polygons as their boundaries (outer and inner rings)."""
    out = []
    for p in shapely.get_parts(shape):
        e = p.boundary if p.geom_type == "Polygon" else p
        if not e.is_empty:
            out.append(e)
    return out


@algorithm("Collection.distance")
def collection_distance(features, searchRadius, maxError):  # noqa: N803
    name = "Collection.distance"
    feats = [f for f in features.features if isinstance(f, Feature)]
    radius = float(searchRadius)
    if not radius > 0:
        raise EngineError(f"{name}: searchRadius must be positive, got {searchRadius}.")

    def compute(grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
        if is_geographic(grid.crs):
            raise EngineError(
                f"{name}: the local engine measures distances on projected (metre) grids only, not on "
                f"'{grid.crs}': reproject the result to a UTM grid (image.reproject(crs, crsTransform))."
            )
        unit = float(crs_object(grid.crs).axis_info[0].unit_conversion_factor)  # metres per CRS unit
        tol = max(min(float(maxError), grid_projection(grid).nominal_scale() / 20.0), 0.01)
        edges = []
        for f in feats:
            if isinstance(f.geometry, Geometry):
                edges.extend(_edges(in_crs(f.geometry, grid.crs, tol)))
        d = np.full(grid.size, np.inf)
        if edges:
            xx, yy = grid.pixel_centers()
            pts = shapely.points(xx.ravel(), yy.ravel())
            (i_pt, _), dist = shapely.STRtree(edges).query_nearest(
                pts, max_distance=radius / unit, return_distance=True, all_matches=False
            )
            d[i_pt] = dist * unit
        d = d.reshape(grid.shape)
        mask = ~(d <= radius)
        return np.ma.MaskedArray(np.where(mask, 0.0, d), mask)

    return Image([Band("distance", PixelType("double"), _DEGREE, None, compute)])


def distance_transform(target: np.ndarray, limit: int, metric: str) -> np.ndarray:
    """Distance (squared for 'squared_euclidean') from each pixel to the nearest True pixel, in pixels.

    Exact for every pixel whose nearest target lies within ``limit`` rows;
    ``inf`` where none does.
    """
    h, w = target.shape
    rows = np.arange(h)[:, None]
    big = h + limit + 1
    above = np.maximum.accumulate(np.where(target, rows, -big), axis=0)
    below = np.minimum.accumulate(np.where(target, rows, 2 * big)[::-1], axis=0)[::-1]
    g = np.minimum(rows - above, below - rows).astype(np.float64)
    g[g > limit] = np.inf
    if metric in ("squared_euclidean", "euclidean"):
        g = g * g
    best = g.copy()
    for dk in range(1, min(limit, w - 1) + 1):
        if metric in ("squared_euclidean", "euclidean"):
            step = float(dk * dk)
        else:
            step = float(dk)
        finite = best[np.isfinite(best)]
        if finite.size == best.size and step >= finite.max():
            break
        for src, dst in ((slice(dk, None), slice(None, w - dk)), (slice(None, w - dk), slice(dk, None))):
            cand = g[:, src] + step if metric != "chebyshev" else np.maximum(g[:, src], step)
            np.minimum(best[:, dst], cand, out=best[:, dst])
    if metric == "euclidean":
        best = np.sqrt(best)
    return best


def _target(x: np.ma.MaskedArray) -> np.ndarray:
    return ~np.ma.getmaskarray(x) & (x.data != 0)


def _distance_band(band: Band, name: str, margin_of: Any, finish: Any, skip_masked: bool, ptype: PixelType) -> Band:
    def compute(grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
        margin, limit_px, metric = margin_of(grid)
        wide = grid.window(-margin, -margin, grid.width + 2 * margin, grid.height + 2 * margin)
        src = band.compute(wide, ctx)
        d = distance_transform(_target(src), margin, metric)
        d = d[margin : margin + grid.height, margin : margin + grid.width]
        value, out_mask = finish(d, grid, limit_px)
        if skip_masked:
            out_mask = out_mask | np.ma.getmaskarray(src)[margin : margin + grid.height, margin : margin + grid.width]
        return np.ma.MaskedArray(np.where(out_mask, 0.0, value), out_mask)

    return band.replace(name=name, compute=compute, pixel_type=ptype)


@algorithm("Image.fastDistanceTransform")
def fast_distance_transform(image, neighborhood, units, metric):
    name = "Image.fastDistanceTransform"
    img = as_image(name, image)
    if units != "pixels":
        raise EngineError(f"{name}: Only 'pixels' units are supported.")
    if metric not in ("squared_euclidean", "manhattan", "chebyshev"):
        raise EngineError(f"{name}: Unknown metric '{metric}'. Use 'squared_euclidean', 'manhattan' or 'chebyshev'.")
    n = int(neighborhood)
    if n < 1:
        raise EngineError(f"{name}: The neighborhood must be at least 1 pixel.")

    def finish(d, grid, limit_px):
        return d, ~np.isfinite(d)

    return img.with_bands(
        _distance_band(b, b.name, lambda grid: (n, n, metric), finish, False, PixelType("double")) for b in img.bands
    )


@algorithm("Image.distance")
def distance(image, kernel, skipMasked):  # noqa: N803
    name = "Image.distance"
    img = as_image(name, image)
    if kernel is None:
        raise EngineError(f"{name}: The local engine needs an explicit distance kernel (ee.Kernel.euclidean, ...).")
    if not isinstance(kernel, Kernel) or kernel.distance is None or kernel.radius is None:
        raise EngineError(f"{name}: The kernel must be a distance kernel: chebyshev, euclidean or manhattan.")
    metric = kernel.distance

    def margin_of(grid: PixelGrid):
        pixel_m = grid_projection(grid).nominal_scale()
        r_px = kernel.radius / pixel_m if kernel.units == "meters" else kernel.radius
        return int(math.ceil(r_px)), r_px, metric

    def finish(d, grid, r_px):
        unit = grid_projection(grid).nominal_scale() if kernel.units == "meters" else 1.0
        out_mask = ~np.isfinite(d) | (d > r_px + 1e-9)
        return d * unit, out_mask

    return img.with_bands(
        _distance_band(b, b.name, margin_of, finish, bool(skipMasked), PixelType("double")) for b in img.bands
    )
