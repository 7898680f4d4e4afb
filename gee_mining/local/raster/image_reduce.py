"""Image reductions: regions, samples, neighbourhoods, resolution and bands.

Regions (guide "Reducing an Image Region", "Weighted Reductions"): the work
grid is ``crs`` (default: the image's first band's projection) at ``scale``
(default: that projection's own scale) or ``crsTransform``. Unweighted
reducers (``count``, ``median``, ``x.unweighted()``...) take the pixels whose
centre lies in the region, with weight 1; weighted reducers (``mean``,
``sum``, ``frequencyHistogram``...) take every pixel the region covers,
weighted by the covered fraction quantised to 8 bits as the guide says
(``floor(fraction * 256)`` capped at 255, over 255: the exact rounding is not
confirmed). Points and lines take the pixels they touch. Masked pixels are
left out (masks are binary here, so a pixel's weight is its coverage).
``maxPixels`` counts the pixels a reduction takes (those with a weight or a
centre inside); ``bestEffort`` doubles the scale until they fit (Earth
Engine's choice of the larger scale is not documented). The region is cut to
the image's footprint first, so pixels outside a bounded image neither count
nor cost.

Samples (``sample``, ``sampleRegions``, ``stratifiedSample``) take pixel
centres in the region; random choices are seeded and deterministic but are
not Earth Engine's: the same seed picks other pixels. ``factor`` keeps
``round(factor * n)`` pixels and ``numPixels`` keeps ``min(numPixels, n)``
(Earth Engine's counts are approximate); nulls are dropped afterwards.
``stratifiedSample`` leaves masked pixels out before choosing, so each class
gets ``min(numPoints, available)`` points, as documented. Sample geometries
are the pixel centres in EPSG:4326.

Neighbourhoods (``reduceNeighborhood``, ``focal*``) compute the input on the
request grid widened by the kernel, then reduce the stack of shifted copies;
``reduceResolution`` reduces the native pixels under each output pixel,
weighted by the fraction of the output pixel they cover (same CRS only);
``Image.reduce`` reduces across bands. These per-pixel reductions are
vectorised for count, sum, mean, min, max, minMax, median, percentile, mode,
stdDev and variance (and their ``unweighted`` forms); other reducers run pixel
by pixel on small grids and are refused on large ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import shapely
from rasterio.features import rasterize

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.raster.band import own_pixels
from gee_mining.local.raster.grid import grid_covering, grid_projection
from gee_mining.local.raster.image import Band, Image, _projection_from, as_image
from gee_mining.local.raster.pixeltype import PixelType, widest
from gee_mining.local.values import reducer as reducers
from gee_mining.local.values.feature import Feature
from gee_mining.local.values.featurecollection import FeatureCollection
from gee_mining.local.values.geometry import Geometry, in_crs
from gee_mining.local.values.kernel import Kernel, named
from gee_mining.local.values.projection import Projection, meters_per_unit, transformer
from gee_mining.local.values.reducer import Reducer, reduce_region_rows

RASTER_LIMIT = 1 << 27  # a region grid larger than this is counted from its area, not rasterised
STACK_FALLBACK_LIMIT = 40_000  # pixels a non-vectorised reducer may reduce one by one


# -- regions ----------------------------------------------------------------------------


def work_projection(name: str, image: Image, crs: Any, crsTransform: Any, scale: Any) -> Projection:  # noqa: N803
    """The projection a region request works in (guide "Scale", ``reduceRegion`` reference)."""
    if crs is None and crsTransform is None and scale is None:
        return image.default_projection()
    base = image.default_projection() if crs is None else Projection.coerce(crs)
    if crsTransform is not None:
        if scale is not None:
            raise EngineError(f"{name}: Cannot specify both crsTransform and scale.")
        return Projection.from_crs(base.crs, crsTransform)
    if scale is not None:
        if float(scale) <= 0:
            raise EngineError(f"{name}: The scale must be positive.")
        return _projection_from(base, None, float(scale), name)
    return base


def region_geometry(name: str, image: Image, geometry: Any) -> Geometry:
    """The region argument as a Geometry; by default the footprint of the first band."""
    if geometry is None:
        fp = image.bands[0].footprint if image.bands else None
        if fp is None:
            raise EngineError(f"{name}: Provide 'geometry' parameter when aggregating over an unbounded image.")
        return Geometry(fp)
    geom = geometry.geometry if isinstance(geometry, Feature) else geometry
    if not isinstance(geom, Geometry):
        raise EngineError(f"{name}: expected a Geometry, got {getattr(geometry, 'ee_type', type(geometry).__name__)}.")
    return geom


def _shape_in(geom: Geometry, proj: Projection) -> shapely.Geometry:
    pixel_m = proj.nominal_scale()
    return in_crs(geom, proj.crs, max(pixel_m / 20.0, 0.01))


def _cut_to_footprint(shape: shapely.Geometry, image: Image, crs: str, pixel_m: float) -> shapely.Geometry:
    fp = image.footprint()
    if fp is None or shape.is_empty:
        return shape
    # Meet in longitude/latitude first: a footprint far from the region (another UTM zone, another
    # continent) cannot be projected into the region's CRS, and need not be.
    region_ll = in_crs(Geometry(shape, Projection.from_crs(crs), geodesic=False), "EPSG:4326", max(pixel_m, 1.0))
    pad = 0.01 + 4 * pixel_m / 111_000.0
    fp = fp.intersection(shapely.box(*region_ll.bounds).buffer(pad))
    if fp.is_empty:
        return shapely.Polygon()
    fp_crs = in_crs(Geometry(fp), crs, max(pixel_m / 20.0, 0.01))
    # keep a pixel of margin so edge pixels keep their full coverage
    return shape.intersection(fp_crs.buffer(2 * pixel_m / max(1e-12, _meters_per_unit(crs))))


def _meters_per_unit(crs: str) -> float:
    return meters_per_unit(crs)


def _rasterize(shapes: Sequence[shapely.Geometry], grid: PixelGrid, all_touched: bool) -> np.ndarray:
    geoms = [shapely.geometry.mapping(s) for s in shapes if not s.is_empty]
    if not geoms:
        return np.zeros(grid.shape, dtype=bool)
    out = rasterize(
        [(g, 1) for g in geoms], out_shape=grid.shape, transform=grid.affine, all_touched=all_touched, dtype="uint8"
    )
    return out.astype(bool)


def _split(shape: shapely.Geometry) -> tuple[shapely.Geometry, shapely.Geometry]:
    """(polygonal part, the rest: points and lines)."""
    parts = shapely.get_parts(shapely.get_parts(shape))  # flatten nested collections
    polys = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    rest = [p for p in parts if p.geom_type not in ("Polygon", "MultiPolygon") and not p.is_empty]
    return (shapely.union_all(polys) if polys else shapely.Polygon()), (
        shapely.union_all(rest) if rest else shapely.Point()
    )


def region_pixels(shape: shapely.Geometry, grid: PixelGrid, fractional: bool) -> tuple[np.ndarray, np.ndarray]:
    """(coverage weights in [0, 1], pixel-centre-inside mask) of ``shape`` (in the grid's CRS) on ``grid``."""
    poly, rest = _split(shape)
    centre = _rasterize([poly], grid, False) if not poly.is_empty else np.zeros(grid.shape, bool)
    touched = _rasterize([rest], grid, True) if not rest.is_empty else np.zeros(grid.shape, bool)
    weights = centre.astype(np.float64)
    if fractional and not poly.is_empty:
        edge = _rasterize([poly.boundary], grid, True)
        rows, cols = np.nonzero(edge)
        if len(rows):
            a, _, c, _, e, f = grid.transform
            x0, x1 = c + a * cols, c + a * (cols + 1)
            y0, y1 = f + e * rows, f + e * (rows + 1)
            boxes = shapely.box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1))
            shapely.prepare(poly)
            frac = shapely.area(shapely.intersection(boxes, poly)) / abs(a * e)
            levels = np.minimum(np.floor(np.clip(frac, 0.0, 1.0) * 256.0), 255.0)
            weights[rows, cols] = levels / 255.0
    weights = np.where(touched, 1.0, weights)
    return weights, centre | touched


def _column(arr: np.ma.MaskedArray, idx: np.ndarray, ptype: PixelType) -> np.ma.MaskedArray:
    data = arr.data.reshape(-1)[idx]
    mask = np.ma.getmaskarray(arr).reshape(-1)[idx]
    if ptype.is_int:
        data = np.round(data).astype(np.int64)
    return np.ma.MaskedArray(data, mask)


def _output_keys(
    name: str, reducer: Reducer, bands: Sequence[str], direct_first: bool
) -> list[tuple[list[int], list[str]]]:
    """[(input band indices, output keys)] per reducer application.

    ``direct_first``: a reducer with as many inputs as bands uses its output
    names (``reduceRegions`` of a one-band image gives 'mean'); otherwise a
    one-input reducer repeats per band, named like ``Reducer.forEach``.
    """
    n = len(bands)
    if direct_first and reducer.input_count == n:
        return [(list(range(n)), list(reducer.output_names))]
    if reducer.input_count == 1:
        out = []
        for i, b in enumerate(bands):
            if len(reducer.output_names) == 1:
                out.append(([i], [b]))
            else:
                out.append(([i], [f"{b}_{o}" for o in reducer.output_names]))
        return out
    if reducer.input_count == n:
        return [(list(range(n)), list(reducer.output_names))]
    raise EngineError(
        f"{name}: The reducer needs {reducer.input_count} inputs but the image has {n} bands; "
        "use a reducer with one input or with one input per band."
    )


def _count_or_raise(name: str, count: int, max_pixels: float | None) -> None:
    if max_pixels is not None and count > max_pixels:
        raise EngineError(
            f"{name}: Too many pixels in the region. Found {count}, but maxPixels allows only {int(max_pixels)}."
        )


def reduce_over(
    name: str,
    image: Image,
    reducer: Reducer,
    geom: Geometry,
    proj: Projection,
    ctx: Any,
    max_pixels: float | None,
    best_effort: bool,
    direct_first: bool,
) -> dict[str, Any]:
    """The reducer's outputs over ``geom`` on ``proj``'s lattice (the core of reduceRegion(s))."""
    if not isinstance(reducer, Reducer):
        raise EngineError(f"{name}: expected a Reducer, got {getattr(reducer, 'ee_type', type(reducer).__name__)}.")
    plan = _output_keys(name, reducer, image.band_names, direct_first)
    if not image.bands:
        return {}
    for _ in range(64):
        pixel_m = proj.nominal_scale()
        shape = _cut_to_footprint(_shape_in(geom, proj), image, proj.crs, pixel_m)
        if shape.is_empty:
            return {k: v for _, keys in plan for k, v in zip(keys, _empty(reducer), strict=True)}
        grid = grid_covering(proj, shape.bounds)
        if grid.size > RASTER_LIMIT:
            count = int(round(shape.area / abs(grid.transform[0] * grid.transform[4])))
            weights = centre = None
        else:
            weights, centre = region_pixels(shape, grid, reducer.weighted)
            count = int(np.count_nonzero((weights > 0) | centre))
        if max_pixels is None or count <= max_pixels:
            break
        if not best_effort:
            _count_or_raise(name, count, max_pixels)
        proj = proj.scaled(2.0, 2.0)
    if weights is None:
        _count_or_raise(name, count, max_pixels)
        raise EngineError(
            f"{name}: The region needs {count:,} pixels; the local engine reduces at most {RASTER_LIMIT:,}."
        )
    idx = np.flatnonzero(((weights > 0) | centre).reshape(-1))
    w = weights.reshape(-1)[idx]
    c = centre.reshape(-1)[idx]
    out: dict[str, Any] = {}
    for band_idx, keys in plan:
        cols = [_column(image.bands[i].compute(grid, ctx), idx, image.bands[i].pixel_type) for i in band_idx]
        values = reduce_region_rows(reducer, cols, w, c)
        out.update(zip(keys, values.values(), strict=True))
    return out


def _empty(reducer: Reducer) -> list[Any]:
    return list(reducer.reduce([[] for _ in range(reducer.input_count)]).values())


@algorithm("Image.reduceRegion", context=True)
def reduce_region(ctx, image, reducer, geometry, scale, crs, crsTransform, bestEffort, maxPixels, tileScale):  # noqa: N803
    name = "Image.reduceRegion"
    img = as_image(name, image)
    proj = work_projection(name, img, crs, crsTransform, scale)
    geom = region_geometry(name, img, geometry)
    return reduce_over(name, img, reducer, geom, proj, ctx, maxPixels, bool(bestEffort), direct_first=False)


@algorithm("Image.reduceRegions", context=True)
def reduce_regions(ctx, image, collection, reducer, scale, crs, crsTransform, tileScale, maxPixelsPerRegion):  # noqa: N803
    """Each feature gets the reducer's outputs as properties (band names for multi-band images)."""
    name = "Image.reduceRegions"
    img = as_image(name, image)
    proj = work_projection(name, img, crs, crsTransform, scale)
    out = []
    for f in collection.features:
        if f.geometry is None:
            raise EngineError(f"{name}: Feature '{f.id}' has no geometry.")
        with own_pixels(ctx) as scope:  # one feature's pixels held at a time
            values = reduce_over(name, img, reducer, f.geometry, proj, scope, maxPixelsPerRegion, False, True)
        out.append(f.copy_with(properties={**f.properties, **values}))
    return collection.with_features(out)


# -- samples --------------------------------------------------------------------------------


def _sample_grid(name: str, image: Image, region: Any, scale: Any, projection: Any) -> tuple[PixelGrid, np.ndarray]:
    proj = work_projection(name, image, projection, None, scale)
    geom = region_geometry(name, image, region)
    shape = _cut_to_footprint(_shape_in(geom, proj), image, proj.crs, proj.nominal_scale())
    if shape.is_empty:
        return None, None
    grid = grid_covering(proj, shape.bounds)
    if grid.size > RASTER_LIMIT:
        raise EngineError(f"{name}: The region has too many pixels at this scale for the local engine.")
    _, inside = region_pixels(shape, grid, False)
    return grid, inside


def _values(image: Image, grid: PixelGrid, ctx: Any, idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Band values at flat pixel indices, and which of those pixels have a masked band."""
    vals: dict[str, np.ndarray] = {}
    null = np.zeros(len(idx), dtype=bool)
    for b in image.bands:
        arr = b.compute(grid, ctx)
        col = _column(arr, idx, b.pixel_type)
        vals[b.name] = col
        null |= np.ma.getmaskarray(col)
    return vals, null


def _centres_lonlat(grid: PixelGrid, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.divmod(idx, grid.width)
    a, b, c, d, e, f = grid.transform
    xs = a * (cols + 0.5) + b * (rows + 0.5) + c
    ys = d * (cols + 0.5) + e * (rows + 0.5) + f
    if grid.crs != "EPSG:4326":
        xs, ys = transformer(grid.crs, "EPSG:4326").transform(xs, ys)
    return np.asarray(xs), np.asarray(ys)


def _features(
    grid: PixelGrid,
    idx: np.ndarray,
    vals: dict[str, np.ma.MaskedArray],
    geometries: bool,
    extra: list[dict] | None = None,
    ids: list[str] | None = None,
) -> list[Feature]:
    xs, ys = _centres_lonlat(grid, idx) if geometries else (None, None)
    out = []
    for k in range(len(idx)):
        props = dict(extra[k]) if extra is not None else {}
        for name, col in vals.items():
            props[name] = None if col.mask[k] else col.data[k].item()
        geom = Geometry(shapely.Point(float(xs[k]), float(ys[k]))) if geometries else None
        out.append(Feature(geom, props, ids[k] if ids is not None else str(k)))
    return out


def _choose(rng: np.random.Generator, idx: np.ndarray, n: int) -> np.ndarray:
    if n >= len(idx):
        return idx
    return np.sort(rng.choice(idx, size=n, replace=False))


@algorithm("Image.sample", context=True)
def sample(ctx, image, region, scale, projection, factor, numPixels, seed, dropNulls, tileScale, geometries):  # noqa: N803
    name = "Image.sample"
    img = as_image(name, image)
    if factor is not None and numPixels is not None:
        raise EngineError(f"{name}: Only one of 'factor' and 'numPixels' may be specified.")
    if factor is not None and not 0 < float(factor) <= 1:
        raise EngineError(f"{name}: 'factor' must be in (0, 1].")
    grid, inside = _sample_grid(name, img, region, scale, projection)
    if grid is None:
        return FeatureCollection([])
    idx = np.flatnonzero(inside.reshape(-1))
    rng = np.random.default_rng(int(seed or 0))
    if factor is not None:
        idx = _choose(rng, idx, int(round(float(factor) * len(idx))))
    elif numPixels is not None:
        idx = _choose(rng, idx, int(numPixels))
    vals, null = _values(img, grid, ctx, idx)
    if dropNulls:
        keep = ~null
        idx = idx[keep]
        vals = {k: v[keep] for k, v in vals.items()}
    return FeatureCollection(_features(grid, idx, vals, bool(geometries)))


@algorithm("Image.sampleRegions", context=True)
def sample_regions(ctx, image, collection, properties, scale, projection, tileScale, geometries):  # noqa: N803
    """Pixels whose centre lies in each feature (the pixel under a point), nulls dropped, with the
    feature's properties (or those listed) copied."""
    name = "Image.sampleRegions"
    img = as_image(name, image)
    out: list[Feature] = []
    for f in collection.features:
        if f.geometry is None:
            continue
        grid, inside = _sample_grid(name, img, f.geometry, scale, projection)
        if grid is None or any(b.surely_masked(grid) for b in img.bands):  # every pixel null: no row, no work
            continue
        idx = np.flatnonzero(inside.reshape(-1))
        with own_pixels(ctx) as scope:  # one feature's pixels held at a time
            vals, null = _values(img, grid, scope, idx)
        keep = ~null
        idx = idx[keep]
        vals = {k: v[keep] for k, v in vals.items()}
        props = f.properties if properties is None else {p: f.properties.get(p) for p in properties}
        ids = [f"{f.id}_{k}" for k in range(len(idx))]
        out.extend(_features(grid, idx, vals, bool(geometries), [props] * len(idx), ids))
    return FeatureCollection(out)


@algorithm("Image.stratifiedSample", context=True)
def stratified_sample(
    ctx,
    image,
    numPoints,
    classBand,
    region,
    scale,
    projection,
    seed,
    classValues,
    classPoints,
    dropNulls,
    tileScale,
    geometries,  # noqa: N803
):
    name = "Image.stratifiedSample"
    img = as_image(name, image)
    band = img.bands[0] if classBand is None else img.band(classBand)
    if not band.pixel_type.is_int:
        raise EngineError(f"{name}: The classBand must have an integer type; '{band.name}' does not.")
    if classPoints is not None and (classValues is None or len(classPoints) != len(classValues)):
        raise EngineError(f"{name}: 'classValues' and 'classPoints' must have the same length.")
    wanted = {int(v): int(n) for v, n in zip(classValues or [], classPoints or [], strict=False)}
    grid, inside = _sample_grid(name, img, region, scale, projection)
    if grid is None:
        return FeatureCollection([])
    idx = np.flatnonzero(inside.reshape(-1))
    vals, null = _values(img, grid, ctx, idx)
    cls = vals[band.name]
    usable = ~np.ma.getmaskarray(cls)
    if dropNulls:
        usable &= ~null
    rng = np.random.default_rng(int(seed or 0))
    chosen = []
    for value in np.unique(cls.data[usable]):
        n = wanted.get(int(value), int(numPoints))
        members = np.flatnonzero(usable & (cls.data == value))
        chosen.append(_choose(rng, members, n) if n > 0 else members[:0])
    pick = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return FeatureCollection(_features(grid, idx[pick], {k: v[pick] for k, v in vals.items()}, bool(geometries)))


@algorithm("Image.sampleRectangle", context=True)
def sample_rectangle(ctx, image, region, properties, defaultValue, defaultArrayValue):  # noqa: N803
    """Each band's pixels over the region's bounding box, in the band's own projection, as 2-D lists."""
    name = "Image.sampleRectangle"
    img = as_image(name, image)
    geom = region_geometry(name, img, region)
    props = dict(img.properties) if properties is None else {p: img.properties.get(p) for p in properties}
    for b in img.bands:
        shape = _shape_in(geom, b.proj)
        grid = grid_covering(b.proj, shape.bounds)
        if grid.size > 262144:
            raise EngineError(f"{name}: Too many pixels in sample; must be <= 262144. Got {grid.size}.")
        arr = b.compute(grid, ctx)
        mask = np.ma.getmaskarray(arr)
        data = arr.data
        if mask.any():
            if defaultValue is None:
                raise EngineError(
                    f"{name}: Fully masked pixels / pixels outside of the image footprint when sampling band "
                    f"'{b.name}' with no default value set."
                )
            data = np.where(mask, float(defaultValue), data)
        if b.pixel_type.is_int and (defaultValue is None or float(defaultValue).is_integer()):
            props[b.name] = np.round(data).astype(np.int64).tolist()
        else:
            props[b.name] = data.tolist()
    return Feature(geom, props, img.id)


# -- per-pixel stack reductions --------------------------------------------------------------

Outputs = list[np.ma.MaskedArray]


def _inner(reducer: Reducer) -> tuple[Reducer, bool]:
    """The reducer to run and whether it uses weights (``unweighted`` unwrapped)."""
    if reducer.kind == "Reducer.unweighted":
        return reducer.args["reducer"], False
    return reducer, reducer.weighted


def stack_reduce(reducer: Reducer, values: np.ndarray, valid: np.ndarray, weights: np.ndarray | None) -> Outputs:
    """Reduce a (K, ...) stack along axis 0, one MaskedArray per reducer output.

    ``valid`` marks entries that take part; ``weights`` (broadcastable to the
    stack) are used by weighted reducers, and entries of weight <= 0 never
    take part.
    """
    inner, use_w = _inner(reducer)
    if weights is not None:
        w = np.broadcast_to(weights, values.shape)
        valid = valid & (w > 0)
        w = np.where(valid, w, 0.0)
    else:
        w = valid.astype(np.float64)
    if not use_w:
        w = valid.astype(np.float64)
    n = valid.sum(axis=0)
    empty = n == 0
    x = np.where(valid, values, np.nan)
    kind = inner.kind

    def out(a: np.ndarray, mask: np.ndarray = empty) -> np.ma.MaskedArray:
        return np.ma.MaskedArray(np.where(mask, 0.0, a), mask.copy())

    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "Reducer.count":
            return [out(n.astype(np.float64), np.zeros_like(empty))]
        if kind == "Reducer.sum":
            return [out(np.sum(np.where(valid, values, 0.0) * w, axis=0), np.zeros_like(empty))]
        if kind == "Reducer.mean":
            sw = w.sum(axis=0)
            return [out(np.sum(np.where(valid, values, 0.0) * w, axis=0) / np.where(sw > 0, sw, 1.0), sw <= 0)]
        if kind in ("Reducer.min", "Reducer.max") and inner.input_count == 1:
            fn = np.nanmin if kind == "Reducer.min" else np.nanmax
            return [out(fn(np.where(empty, 0.0, x), axis=0))]
        if kind == "Reducer.minMax":
            safe = np.where(empty, 0.0, x)
            return [out(np.nanmin(safe, axis=0)), out(np.nanmax(safe, axis=0))]
        if kind == "Reducer.median":
            return [out(np.nanmedian(np.where(empty, 0.0, x), axis=0))]
        if kind == "Reducer.percentile":
            ps = [float(p) for p in inner.args["percentiles"]]
            res = np.nanpercentile(np.where(empty, 0.0, x), ps, axis=0, method="linear")
            return [out(r) for r in res]
        if kind == "Reducer.mode":
            return [out(_stack_mode(x, valid))]
        if kind in ("Reducer.stdDev", "Reducer.variance"):
            sw = w.sum(axis=0)
            safe_sw = np.where(sw > 0, sw, 1.0)
            xv = np.where(valid, values, 0.0)
            mean = np.sum(xv * w, axis=0) / safe_sw
            var = np.sum(w * (xv - mean) ** 2, axis=0) / safe_sw
            return [out(np.sqrt(var) if kind == "Reducer.stdDev" else var, sw <= 0)]
    return _stack_fallback(reducer, values, valid, weights)


def _stack_mode(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The most frequent value along axis 0; ties go to the smallest, as Reducer.mode."""
    best_val = np.full(x.shape[1:], np.inf)
    best_cnt = np.zeros(x.shape[1:], dtype=np.int64)
    for k in range(x.shape[0]):
        cnt = np.sum(x == x[k], axis=0) * valid[k]
        better = valid[k] & ((cnt > best_cnt) | ((cnt == best_cnt) & (x[k] < best_val)))
        best_cnt = np.where(better, cnt, best_cnt)
        best_val = np.where(better, x[k], best_val)
    return np.where(np.isfinite(best_val), best_val, 0.0)


def _stack_fallback(reducer: Reducer, values: np.ndarray, valid: np.ndarray, weights: np.ndarray | None) -> Outputs:
    shape = values.shape[1:]
    npix = int(np.prod(shape))
    if npix > STACK_FALLBACK_LIMIT:
        raise EngineError(
            f"{reducer.kind} is not supported per pixel by the local engine on grids of more than "
            f"{STACK_FALLBACK_LIMIT:,} pixels (this one has {npix:,})."
        )
    k = values.shape[0]
    v2, ok2 = values.reshape(k, -1), valid.reshape(k, -1)
    w2 = None if weights is None else np.broadcast_to(weights, values.shape).reshape(k, -1)
    outs = [np.zeros(npix) for _ in reducer.output_names]
    masks = [np.ones(npix, dtype=bool) for _ in reducer.output_names]
    for p in range(npix):
        col = np.ma.MaskedArray(v2[:, p], ~ok2[:, p])
        res = reducer.reduce([col], None if w2 is None else w2[:, p])
        for i, v in enumerate(res.values()):
            if isinstance(v, bool | int | float):
                outs[i][p] = float(v)
                masks[i][p] = False
            elif v is not None:
                raise EngineError(f"{reducer.kind}: its output '{reducer.output_names[i]}' is not a number per pixel.")
    return [np.ma.MaskedArray(o.reshape(shape), m.reshape(shape)) for o, m in zip(outs, masks, strict=True)]


def _output_type(reducer: Reducer, output: str, input_type: PixelType, stack_size: int) -> PixelType:
    inner, _ = _inner(reducer)
    if inner.kind == "Reducer.count":
        return PixelType.int_range(0, max(1, stack_size))
    if inner.kind in ("Reducer.min", "Reducer.max", "Reducer.minMax", "Reducer.mode"):
        return input_type
    return PixelType("double")


def _shared(ctx: Any, key: tuple, compute: Callable[[], Outputs]) -> Outputs:
    """All outputs of one per-pixel reduction, computed once per request for every output band."""
    cache = getattr(ctx, "pixels", None)
    if cache is None:
        return compute()
    got = cache.get(key)
    if got is None:
        got = compute()
        cache[key] = got
    return got


def _pixel_m(grid: PixelGrid) -> float:
    return grid_projection(grid).nominal_scale()


# -- neighbourhoods ------------------------------------------------------------------------------


def _neighbourhood_bands(
    band: Band, reducer: Reducer, kernel: Kernel, input_weight: str, skip_masked: bool, names: list[str]
) -> list[Band]:
    token = object()

    def compute_all(grid: PixelGrid, ctx: Any) -> Outputs:
        w, x, y = kernel.weights_for(_pixel_m(grid))
        kh, kw = w.shape
        wide = grid.window(-x, -y, grid.width + kw - 1, grid.height + kh - 1)
        src = band.compute(wide, ctx)
        data, smask = src.data, np.ma.getmaskarray(src)
        cells = [(i, j) for i in range(kh) for j in range(kw) if w[i, j] != 0]
        if not cells:
            raise EngineError("Image.reduceNeighborhood: The kernel has no non-zero weights.")
        h, wd = grid.height, grid.width
        parts = _box_parts(reducer)
        if parts and len(cells) == kh * kw and w.flat[0] > 0 and np.all(w == w.flat[0]):
            w0 = {"kernel": w.flat[0], "mask": 1.0, "min": min(w.flat[0], 1.0)}[input_weight]
            outs = [o for kind, use_w in parts
                    for o in box_reduce(kind, data, ~smask, kh, kw, h, wd, float(w0) if use_w else 1.0)]  # fmt: skip
            if skip_masked:
                centre = smask[y : y + h, x : x + wd]
                outs = [np.ma.MaskedArray(o.data, np.ma.getmaskarray(o) | centre) for o in outs]
            return outs
        values = np.stack([data[i : i + h, j : j + wd] for i, j in cells])
        valid = ~np.stack([smask[i : i + h, j : j + wd] for i, j in cells])
        kw_vec = np.array([w[i, j] for i, j in cells])[:, None, None]
        if input_weight == "kernel":
            weights = kw_vec
        elif input_weight == "mask":
            weights = np.ones_like(kw_vec)
        else:  # 'min': the smaller of the (binary) mask and the kernel weight
            weights = np.minimum(kw_vec, 1.0)
        outs = stack_reduce(reducer, values, valid, weights)
        if skip_masked:
            centre = smask[y : y + h, x : x + wd]
            outs = [np.ma.MaskedArray(o.data, np.ma.getmaskarray(o) | centre) for o in outs]
        return outs

    bands = []
    for k, name in enumerate(names):

        def compute(grid: PixelGrid, ctx: Any, k: int = k) -> np.ma.MaskedArray:
            return _shared(ctx, (token, grid), lambda: compute_all(grid, ctx))[k]

        ptype = _output_type(reducer, reducer.output_names[k], band.pixel_type, 0)
        bands.append(Band(name, ptype, band.proj, band.footprint, compute))
    return bands


BOX_REDUCERS = ("Reducer.count", "Reducer.sum", "Reducer.mean", "Reducer.stdDev", "Reducer.variance")
"""Reducers a kernel of equal weights over a whole rectangle reduces with summed-area tables (:func:`box_reduce`)."""


def _box_parts(reducer: Reducer) -> list[tuple[str, bool]] | None:
    """The ``BOX_REDUCERS`` a reducer is made of, in output order, each with whether it uses weights (a single
    one, ``unweighted``, or ``combine`` with shared inputs of such), or None when it is anything else."""
    inner, use_w = _inner(reducer)
    if inner.kind in BOX_REDUCERS:
        return [(inner.kind, use_w)]
    if inner.kind == "Reducer.combine" and inner.args["sharedInputs"]:
        a, b = _box_parts(inner.args["reducer1"]), _box_parts(inner.args["reducer2"])
        return a + b if a and b else None
    return None


def _box_sums(a: np.ndarray, kh: int, kw: int, h: int, w: int) -> np.ndarray:
    """The sum of ``a`` over every ``kh`` x ``kw`` window (output ``h`` x ``w``), from a summed-area table."""
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    np.cumsum(np.cumsum(a, axis=0, dtype=np.float64), axis=1, out=s[1:, 1:])
    return s[kh : kh + h, kw : kw + w] - s[:h, kw : kw + w] - s[kh : kh + h, :w] + s[:h, :w]


def box_reduce(kind: str, data: np.ndarray, valid: np.ndarray, kh: int, kw: int, h: int, w: int,
               weight: float = 1.0) -> Outputs:  # fmt: skip
    """``kind`` (one of ``BOX_REDUCERS``) over each ``kh`` x ``kw`` window of ``data`` (``valid``: unmasked)
    with equal weights (``weight``, which only a weighted sum keeps: equal weights cancel in a mean and a
    variance, and a count ignores them): the same figures as :func:`stack_reduce` of the window's stack, in time independent of the kernel's
    size (Earth Engine's ``boxcar`` optimisation does the same for count, sum and mean). Windows with no valid
    pixel are masked, except in count and sum (0)."""
    v = valid.astype(np.float64)
    x = np.where(valid, data, 0.0).astype(np.float64)
    n = np.rint(_box_sums(v, kh, kw, h, w))
    empty = n <= 0
    none = np.zeros_like(empty)
    if kind == "Reducer.count":
        return [np.ma.MaskedArray(n, none)]
    # centred on the window's data mean: sums of squares keep their precision
    shift = float(np.mean(x[valid])) if valid.any() else 0.0
    xs = np.where(valid, x - shift, 0.0)
    total = _box_sums(xs, kh, kw, h, w)
    if kind == "Reducer.sum":
        return [np.ma.MaskedArray(weight * (total + shift * n), none)]
    safe = np.where(empty, 1.0, n)
    mean = total / safe
    if kind == "Reducer.mean":
        return [np.ma.MaskedArray(np.where(empty, 0.0, mean + shift), empty)]
    var = np.maximum(_box_sums(xs * xs, kh, kw, h, w) / safe - mean * mean, 0.0)
    out = np.sqrt(var) if kind == "Reducer.stdDev" else var
    return [np.ma.MaskedArray(np.where(empty, 0.0, out), empty)]


@algorithm("Image.reduceNeighborhood")
def reduce_neighborhood(image, reducer, kernel, inputWeight, skipMasked, optimization):  # noqa: N803
    """Single-input reducers run per band, named ``<band>_<output>`` as the reference says."""
    name = "Image.reduceNeighborhood"
    img = as_image(name, image)
    if inputWeight not in ("kernel", "mask", "min"):
        raise EngineError(f"{name}: Unknown inputWeight '{inputWeight}'. Use 'kernel', 'mask' or 'min'.")
    if optimization not in (None, "boxcar", "window"):
        raise EngineError(f"{name}: Unknown optimization '{optimization}'.")
    if reducer.input_count != 1:
        raise EngineError(f"{name}: Reducers with several inputs are not supported by the local engine.")
    out = []
    for b in img.bands:
        names = [f"{b.name}_{o}" for o in reducer.output_names]
        out.extend(_neighbourhood_bands(b, reducer, kernel, inputWeight, bool(skipMasked), names))
    return img.with_bands(out)


def _focal(name: str, reducer_kind: str, image: Any, radius, kernelType, units, iterations, kernel) -> Image:  # noqa: N803
    img = as_image(name, image)
    k = kernel if kernel is not None else named(kernelType, float(radius), units)
    red = {
        "max": reducers.max_(numInputs=1),
        "min": reducers.min_(numInputs=1),
        "mean": reducers.mean(),
        "median": reducers.median(maxBuckets=None, minBucketWidth=None, maxRaw=None),
        "mode": reducers.mode(maxBuckets=None, minBucketWidth=None, maxRaw=None),
    }[reducer_kind]
    bands = list(img.bands)
    for _ in range(max(1, int(iterations))):
        bands = [_neighbourhood_bands(b, red, k, "kernel", True, [b.name])[0] for b in bands]
    return img.with_bands(bands)


def _register_focal(kind: str) -> None:
    def focal(image, radius, kernelType, units, iterations, kernel):  # noqa: N803
        return _focal(f"Image.focal{kind.title()}", kind, image, radius, kernelType, units, iterations, kernel)

    algorithm(f"Image.focal{kind.title()}")(focal)
    algorithm(f"Image.focal_{kind}")(focal)


for _kind in ("max", "min", "mean", "median", "mode"):
    _register_focal(_kind)


# -- resolution ----------------------------------------------------------------------------------


def _overlaps(lo: np.ndarray, hi: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """For output intervals [lo, hi) in input pixel units: (input indices - start, overlap lengths), padded."""
    first = np.floor(lo + 1e-9).astype(np.int64)
    last = np.ceil(hi - 1e-9).astype(np.int64)
    width = int(max(1, (last - first).max()))
    idx = first[:, None] + np.arange(width)[None, :]
    ov = np.clip(np.minimum(hi[:, None], idx + 1) - np.maximum(lo[:, None], idx), 0.0, None)
    return idx - start, ov


def _resolution_bands(band: Band, reducer: Reducer, max_pixels: int, best_effort: bool, names: list[str]) -> list[Band]:
    token = object()

    def compute_all(grid: PixelGrid, ctx: Any) -> Outputs:
        if grid.crs != band.proj.crs or not grid.is_rectilinear or band.proj.transform[1] or band.proj.transform[3]:
            raise EngineError(
                "Image.reduceResolution: the local engine reduces resolution only within the band's own CRS "
                "(reproject to a grid of the same CRS)."
            )
        proj = band.proj
        ga, _, gc, _, ge, gf = grid.transform
        for _ in range(32):
            a, _, c, _, e, f = proj.transform
            xe = gc + ga * np.arange(grid.width + 1)
            ye = gf + ge * np.arange(grid.height + 1)
            u = (xe - c) / a
            v = (ye - f) / e
            ulo, uhi = np.minimum(u[:-1], u[1:]), np.maximum(u[:-1], u[1:])
            vlo, vhi = np.minimum(v[:-1], v[1:]), np.maximum(v[:-1], v[1:])
            per = float((uhi - ulo).max() * (vhi - vlo).max())
            if per <= max_pixels:
                break
            if not best_effort:
                raise EngineError(
                    f"Image.reduceResolution: Too many input pixels per output pixel. Need {math.ceil(per)}, "
                    f"but only {max_pixels} allowed."
                )
            proj = proj.scaled(2.0, 2.0)
        c0, r0 = int(math.floor(ulo.min() + 1e-9)), int(math.floor(vlo.min() + 1e-9))
        c1, r1 = int(math.ceil(uhi.max() - 1e-9)), int(math.ceil(vhi.max() - 1e-9))
        a, b, c, d, e, f = proj.transform
        window = PixelGrid(proj.crs, (a, 0.0, c + a * c0, 0.0, e, f + e * r0), max(1, c1 - c0), max(1, r1 - r0))
        src = band.compute(window, ctx)
        ci, cw = _overlaps(ulo, uhi, c0)
        ri, rw = _overlaps(vlo, vhi, r0)
        ci_ok = (ci >= 0) & (ci < window.width) & (cw > 0)
        ri_ok = (ri >= 0) & (ri < window.height) & (rw > 0)
        ci, ri = np.clip(ci, 0, window.width - 1), np.clip(ri, 0, window.height - 1)
        area = (uhi - ulo)[None, :] * (vhi - vlo)[:, None]
        data, smask = src.data, np.ma.getmaskarray(src)
        vals, oks, wts = [], [], []
        for p in range(ri.shape[1]):
            rows = ri[:, p][:, None]
            for q in range(ci.shape[1]):
                cols = ci[:, q][None, :]
                vals.append(data[rows, cols])
                oks.append(~smask[rows, cols] & ri_ok[:, p][:, None] & ci_ok[:, q][None, :])
                wts.append(rw[:, p][:, None] * cw[:, q][None, :] / area)
        return stack_reduce(reducer, np.stack(vals), np.stack(oks), np.stack(wts))

    bands = []
    for k, name in enumerate(names):

        def compute(grid: PixelGrid, ctx: Any, k: int = k) -> np.ma.MaskedArray:
            return _shared(ctx, (token, grid), lambda: compute_all(grid, ctx))[k]

        ptype = _output_type(reducer, reducer.output_names[k], band.pixel_type, max_pixels)
        bands.append(Band(name, ptype, band.proj, band.footprint, compute))
    return bands


@algorithm("Image.reduceResolution")
def reduce_resolution(image, reducer, bestEffort, maxPixels):  # noqa: N803
    """Names: one-output reducers keep the band names, others give ``<band>_<output>`` (reference)."""
    name = "Image.reduceResolution"
    img = as_image(name, image)
    if reducer.input_count != 1:
        raise EngineError(f"{name}: Reducers with several inputs are not supported by the local engine.")
    out = []
    for b in img.bands:
        if len(reducer.output_names) == 1:
            names = [b.name]
        else:
            names = [f"{b.name}_{o}" for o in reducer.output_names]
        out.extend(_resolution_bands(b, reducer, int(maxPixels), bool(bestEffort), names))
    return img.with_bands(out)


# -- across bands -------------------------------------------------------------------------------------


@algorithm("Image.reduce")
def reduce_(image, reducer):
    """The reducer over each pixel's band values; one band per reducer output, named by the outputs."""
    name = "Image.reduce"
    img = as_image(name, image)
    if reducer.input_count != 1:
        raise EngineError(f"{name}: The reducer must have a single input.")
    if not img.bands:
        raise EngineError(f"{name}: The image has no bands.")
    token = object()
    inputs = list(img.bands)

    def compute_all(grid: PixelGrid, ctx: Any) -> Outputs:
        arrs = [b.compute(grid, ctx) for b in inputs]
        values = np.stack([a.data for a in arrs])
        valid = ~np.stack([np.ma.getmaskarray(a) for a in arrs])
        return stack_reduce(reducer, values, valid, None)

    bounded = [b.footprint for b in inputs if b.footprint is not None]
    footprint = shapely.union_all(bounded) if len(bounded) == len(inputs) else None
    in_type = widest(*(b.pixel_type for b in inputs))
    bands = []
    for k, out_name in enumerate(reducer.output_names):

        def compute(grid: PixelGrid, ctx: Any, k: int = k) -> np.ma.MaskedArray:
            return _shared(ctx, (token, grid), lambda: compute_all(grid, ctx))[k]

        ptype = _output_type(reducer, out_name, in_type, len(inputs))
        bands.append(Band(out_name, ptype, inputs[0].proj, footprint, compute))
    return img.with_bands(bands)
