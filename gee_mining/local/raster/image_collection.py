"""ImageCollection algorithms: building collections, compositing, mosaicking, linking.

The collection value class is :class:`~.image.ImageCollection`; the shared
Collection algorithms (filter, filterDate, filterBounds, map, limit, size,
first, toList) apply to it (``filterBounds`` reads an image's footprint).

Composites (``reduce.*``, ``ImageCollection.reduce``, ``mosaic``,
``qualityMosaic``) are computed per pixel over the stack of images on the
request's grid, masked pixels left out. As the "Projections" guide says,
"image collections reduced into composites or mosaics ... will have a default
WGS84 projection with a 1-degree scale"; their footprint is unbounded.

Memory: each image of a composite computes in its own scope of the request's
pixel cache (it sees what the request computed before, but what it computes
is dropped once its pixels are in the stack), so a year of scenes is not
kept in memory band by band. Stacks are float32 when every input value is
exactly representable (ints of up to 24 bits, floats), else float64; a NaN
pixel value counts as masked in a stack. Composites of bands read straight
from files on one lattice are computed on that lattice and then resampled
(see "composites of files on one lattice" below).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.raster.band import own_pixels, pixel_scope
from gee_mining.local.raster.image import _DEGREE, Band, Image, ImageCollection, _clip_band, merge_bands, select_bands
from gee_mining.local.raster.pixeltype import PixelType, widest
from gee_mining.local.raster.resample import FileSource, pyramid_level, resample_into, scale_ratio
from gee_mining.local.values import reducer as r
from gee_mining.local.values.collection import merged_elements
from gee_mining.local.values.filter import values_equal
from gee_mining.local.values.reducer import Reducer, reduce_int_stack, reduce_stack, sorts_integers, stack_reducer

# -- building collections ---------------------------------------------------------------


@algorithm("ImageCollection.load", context=True)
def load(ctx, id, version):
    return ctx.catalog.image_collection(id)


@algorithm("ImageCollection.fromImages")
def from_images(images):
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, Image):
            raise EngineError(
                f"ImageCollection.fromImages: element {i} is a {getattr(im, 'ee_type', type(im).__name__)}, not an Image."
            )
        out.append(im if im.id is not None else im.copy_with(id=str(i)))
    return ImageCollection(out)


def as_image_collection(name: str, value: Any) -> ImageCollection:
    if not isinstance(value, ImageCollection):
        raise EngineError(
            f"{name}: expected an ImageCollection, got {getattr(value, 'ee_type', type(value).__name__)}."
        )
    for i, im in enumerate(value.features):
        if not isinstance(im, Image):
            raise EngineError(f"{name}: element {i} of the collection is not an Image.")
    return value


@algorithm("ImageCollection.merge")
def merge(collection1, collection2):
    """Both collections' images; ids get the prefixes ``1_`` and ``2_``, as Collection.merge gives them."""
    a = as_image_collection("ImageCollection.merge", collection1)
    b = as_image_collection("ImageCollection.merge", collection2)
    return ImageCollection(merged_elements(a, b))


@algorithm("ImageCollection.combine")
def combine(primary, secondary, overwrite):
    """Primary images with the bands of the secondary image of the same id (an inner join on id)."""
    p = as_image_collection("ImageCollection.combine", primary)
    s = as_image_collection("ImageCollection.combine", secondary)
    by_id = {}
    for im in s.features:
        by_id.setdefault(im.id, im)
    out = []
    for im in p.features:
        match = by_id.get(im.id)
        if match is None:
            continue
        bands = merge_bands(im.bands, match.bands, overwrite)
        out.append(im.with_bands(bands))
    return p.with_features(out) if out else ImageCollection([], p.properties, p.id)


@algorithm("ImageCollection.toBands")
def to_bands(collection):
    """One image with every band of every image, named ``<image id>_<band>``."""
    ic = as_image_collection("ImageCollection.toBands", collection)
    bands = [b.replace(name=f"{im.id}_{b.name}") for im in ic.features for b in im.bands]
    if len(bands) > 5000:
        raise EngineError(f"ImageCollection.toBands: The maximum number of bands is 5000, got {len(bands)}.")
    return Image(bands)


def _as_names(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


@algorithm("Image.linkCollection")
def link_collection(input, imageCollection, linkedBands, linkedProperties, matchPropertyName):  # noqa: A002, N803
    """Add bands and properties of the collection image whose ``matchPropertyName`` equals the source's.

    Without a match, the linked bands are fully masked (typed as in the
    collection's first image that has them) and the linked properties null.
    The linked bands take the source image's footprint.
    """
    name = "Image.linkCollection"
    if not isinstance(input, Image):
        raise EngineError(f"{name}: expected an Image, got {getattr(input, 'ee_type', type(input).__name__)}.")
    ic = as_image_collection(name, imageCollection)
    key = input.get(matchPropertyName)
    match = next((im for im in ic.features if values_equal(im.get(matchPropertyName), key)), None)
    band_names = _as_names(linkedBands) or []
    prop_names = _as_names(linkedProperties) or []
    footprint = input.footprint()
    new_bands: list[Band] = []
    if match is not None:
        new_bands = select_bands(name, match, band_names) if band_names else []
    else:
        for b in band_names:
            template = next((im for im in ic.features if b in im.band_names), None)
            if template is None:
                raise EngineError(f"{name}: no image of the collection has a band named '{b}'.")
            new_bands.append(_masked_band(template.band(b)))
    bands = list(input.bands)
    for b in new_bands:
        if footprint is not None and b.footprint is not None and not b.footprint.equals(footprint):
            b = _clip_band(b, footprint)
        b = b.replace(footprint=footprint)
        idx = next((i for i, old in enumerate(bands) if old.name == b.name), None)
        if idx is None:
            bands.append(b)
        else:
            bands[idx] = b
    props = dict(input.properties)
    new_id = input.id
    for p in prop_names:
        value = match.get(p) if match is not None else None
        if p == "system:index":
            new_id = value
        else:
            props[p] = value
    return Image(bands, props, new_id)


def _masked_band(template: Band) -> Band:
    def compute(grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
        return np.ma.MaskedArray(np.zeros(grid.shape), np.ones(grid.shape, dtype=bool))

    return Band(template.name, template.pixel_type, template.proj, template.footprint, compute)


# -- stacks of pixels ---------------------------------------------------------------------


_EXACT_IN_FLOAT32 = 1 << 24


def _stack_dtype(types: Sequence[PixelType]) -> type:
    for t in types:
        if t.precision == "double":
            return np.float64
        if t.is_int and (t.min < -_EXACT_IN_FLOAT32 or t.max > _EXACT_IN_FLOAT32):
            return np.float64
    return np.float32


def _stack(bands: Sequence[Band], grid: PixelGrid, ctx: Any, dtype: type) -> np.ndarray:
    """(len(bands), H, W) pixels of ``bands`` on ``grid``, NaN where masked; each band computed in its own scope."""
    out = np.empty((len(bands), *grid.shape), dtype)
    for i, b in enumerate(bands):
        with own_pixels(ctx) as scope:  # one image's pixels held at a time; they count as the request's
            x = b.compute(grid, scope)
        layer = out[i]
        np.copyto(layer, x.data, casting="same_kind")
        np.copyto(layer, np.nan, where=np.ma.getmaskarray(x))
    return out


# -- composites of files on one lattice ------------------------------------------------------
#
# When every image of a single-input reduction reads its band straight from a file on one and the
# same lattice (the scenes of one Sentinel-2 tile, band by band) with nearest resampling, every
# request pixel takes the same native pixel of every image. A per-pixel reduction then commutes with
# the resampling: it is computed on the native lattice (a 20 m band of a 10 m request has a quarter
# of the pixels, a 60 m band a 36th) and the result resampled by nearest neighbour. The pixels are
# the same as reducing on the request's grid. Integer files reduced by order statistics are stacked
# as 32-bit integers read straight from the file, with no float copy; unsigned files whose nodata is 0
# (Sentinel-2's) are read into one stack and keyed ``value - 1`` (nodata sorts last). The keys are
# made and sorted a cache-sized block of pixels at a time, pixel-major (each pixel's values one row).

_INT_STACKS = {"u": (np.uint32, 32), "i": (np.int32, 31)}  # kind -> stack type, bits of the file types it holds


def _native_sources(inputs: Sequence[Sequence[Band]]) -> list[FileSource] | None:
    """The files of a single-input reduction's bands, if all are read by nearest from one lattice."""
    if len(inputs) != 1 or not inputs[0]:
        return None
    bands = inputs[0]
    if any(b.source is None or b.resampling != "nearest" for b in bands):
        return None
    first = bands[0].source
    if any(b.source.crs != first.crs or b.source.transform != first.transform for b in bands):
        return None
    return [b.source for b in bands]


def _native_reduction(
    sources: list[FileSource], reducer: Reducer, name: str, grid: PixelGrid, ctx: Any, dtype: type
) -> list[np.ma.MaskedArray]:
    """The reduction computed on the sources' lattice (at the pyramid level the grid reads), then
    resampled into ``grid`` by nearest neighbour."""
    native = sources[0].proj
    level = pyramid_level(scale_ratio(native, grid))
    level_proj = native.scaled(1 << level, 1 << level) if level else native
    done: list[np.ma.MaskedArray] = []

    def compute_native(window: PixelGrid) -> np.ma.MaskedArray:
        ctx.check_cancelled()
        ctx.count_pixels(window.size * len(sources))
        done.extend(_reduce_window(sources, reducer, name, window, level, dtype))
        return done[0]

    first = resample_into(compute_native, level_proj, grid)
    return [first, *(resample_into(lambda window, out=out: out, level_proj, grid) for out in done[1:])]


def _int_stack_type(sources: Sequence[FileSource]) -> type | None:
    kinds = {np.dtype(s.dtype).kind for s in sources}
    if len(kinds) != 1 or next(iter(kinds)) not in _INT_STACKS:
        return None
    stack_type, bits = _INT_STACKS[next(iter(kinds))]
    return stack_type if all(np.dtype(s.dtype).itemsize * 8 <= bits + 1 for s in sources) else None


def _reduce_window(
    sources: Sequence[FileSource], reducer: Reducer, name: str, window: PixelGrid, level: int, dtype: type
) -> list[np.ma.MaskedArray]:
    """``reducer`` over the stack of the sources' pixels on ``window`` of the level-``level`` lattice."""
    int_type = _int_stack_type(sources) if level == 0 and sorts_integers(reducer) else None
    if int_type is None:
        stack = np.empty((len(sources), *window.shape), dtype)
        for layer, source in zip(stack, sources, strict=True):
            x = source.read(window, level)
            np.copyto(layer, x.data, casting="same_kind")
            np.copyto(layer, np.nan, where=np.ma.getmaskarray(x))
        return reduce_stack(reducer, [stack], name)
    unsigned = _unsigned_stack(sources, window)
    if unsigned is not None:
        return reduce_int_stack(reducer, *unsigned, offset=1, key_type=np.uint32)
    filler = np.iinfo(int_type).max
    stack = np.empty((len(sources), *window.shape), int_type)
    count = np.full(window.shape, len(sources), np.int32)
    for layer, source in zip(stack, sources, strict=True):
        raw = source.read_raw(window)
        if raw is None:  # the window leaves the file: padded, masked, as floats holding the file's integers
            x = source.read(window, 0)
            raw = (x.data, np.ma.getmaskarray(x))
        block, mask = raw
        np.copyto(layer, block, casting="unsafe")
        if mask.any():
            np.copyto(layer, filler, where=mask)
            np.subtract(count, mask, out=count, casting="unsafe")
    return reduce_int_stack(reducer, stack, count)


def _unsigned_stack(sources: Sequence[FileSource], window: PixelGrid) -> tuple[np.ndarray, np.ndarray] | None:
    """The stack of unsigned files of one type whose nodata is 0 (Sentinel-2's), read straight into one
    array in the files' type (no per-file mask or copy), and the count of valid values per pixel. Keyed
    ``value - 1`` in uint32, nodata maps to 2**32 - 1 (sorted last) and valid values keep their order.
    None for other files (or a window that leaves a file), which the general integer path handles."""
    dtypes = {s.dtype for s in sources}
    if len(dtypes) != 1 or np.dtype(next(iter(dtypes))).kind != "u" or any(s.nodata != 0 for s in sources):
        return None
    raw = np.empty((len(sources), *window.shape), next(iter(dtypes)))
    for layer, source in zip(raw, sources, strict=True):
        if not source.read_into(window, layer):
            return None
    return raw, np.count_nonzero(raw, axis=0)


def _grouped(specs: Sequence[tuple[str, PixelType]], compute_all: Callable[[PixelGrid, Any], list]) -> list[Band]:
    """Bands computed together: computing any of them caches all of them (composite outputs of one input band)."""
    bands: list[Band] = []

    def make(i: int) -> Callable[[PixelGrid, Any], np.ma.MaskedArray]:
        def compute(grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
            outs = compute_all(grid, ctx)
            cache = getattr(ctx, "pixels", None)
            if cache is not None:
                for j, b in enumerate(bands):
                    if j != i:
                        cache.setdefault((b.key, grid), outs[j])
            return outs[i]

        return compute

    for i, (name, ptype) in enumerate(specs):
        bands.append(Band(name, ptype, _DEGREE, None, make(i)))
    return bands


def _bands_by_name(images: Sequence[Image]) -> dict[str, list[Band]]:
    """Every band name of the collection, in order of first appearance, with the bands of that name."""
    out: dict[str, list[Band]] = {}
    for im in images:
        for b in im.bands:
            out.setdefault(b.name, []).append(b)
    return out


# -- output pixel types -----------------------------------------------------------------

_SAME_TYPE = {
    "Reducer.first",
    "Reducer.firstNonNull",
    "Reducer.last",
    "Reducer.lastNonNull",
    "Reducer.mode",
}
_BOOLEAN = {"Reducer.allNonZero", "Reducer.and", "Reducer.anyNonZero", "Reducer.or"}


def _output_types(reducer: Reducer, types: Sequence[PixelType], n: int) -> list[PixelType]:
    """Pixel types of ``reducer``'s outputs over ``n`` images whose inputs have ``types``.

    Values taken from the inputs (min, max, first, last, mode) keep the
    input's type; counts and booleans are ints; sums of ints are ints of the
    summed range; every other statistic is double.
    """
    kind, args = reducer.kind, reducer.args
    if kind == "Reducer.count":
        return [PixelType.int_range(0, max(n, 1))]
    if kind in _BOOLEAN:
        return [PixelType.int_range(0, 1)]
    if kind in _SAME_TYPE:
        return [types[0]]
    if kind in ("Reducer.min", "Reducer.max"):
        return list(types[: reducer.input_count])
    if kind == "Reducer.minMax":
        return [types[0], types[0]]
    if kind == "Reducer.sum":
        t = types[0]
        if not t.is_int:
            return [t]
        lo, hi = n * min(t.min, 0), n * max(t.max, 0)
        return [PixelType.int_range(lo, hi) if -(2**63) <= lo and hi < 2**63 else PixelType("double")]
    if kind == "Reducer.unweighted":
        return _output_types(args["reducer"], types, n)
    if kind == "Reducer.combine":
        r1, r2 = args["reducer1"], args["reducer2"]
        if args["sharedInputs"]:
            return _output_types(r1, types, n) + _output_types(r2, types, n)
        return _output_types(r1, types[: r1.input_count], n) + _output_types(r2, types[r1.input_count :], n)
    if kind == "Reducer.setOutputs":
        inner = _output_types(args["reducer"], types, n)
        return [t for t, o in zip(inner, args["outputs"], strict=True) if o is not None]
    if kind == "Reducer.forEach":
        inner = args["reducer"]
        k = inner.input_count
        return [t for c in range(len(args["outputNames"])) for t in _output_types(inner, types[c * k : (c + 1) * k], n)]
    return [PixelType("double")] * len(reducer.output_names)


# -- reductions -----------------------------------------------------------------------------


def _reduction_bands(
    name: str, groups: Sequence[tuple[list[list[Band]], list[str]]], reducer: Reducer, n_images: int
) -> list[Band]:
    """Composite bands: each group is (one list of bands per reducer input, the output names)."""
    out: list[Band] = []
    for inputs, names in groups:
        types = [widest(*(b.pixel_type for b in bands)) for bands in inputs]
        dtype = _stack_dtype(types)
        out_types = _output_types(reducer, types, n_images)

        def compute_all(grid: PixelGrid, ctx: Any, inputs=inputs, dtype=dtype) -> list[np.ma.MaskedArray]:
            sources = _native_sources(inputs)
            if sources is not None:
                return _native_reduction(sources, reducer, name, grid, ctx, dtype)
            stacks = [_stack(bands, grid, ctx, dtype) for bands in inputs]
            return reduce_stack(reducer, stacks, name)

        bands = _grouped(list(zip(names, out_types, strict=True)), compute_all)
        if reducer.kind in _MASKED_WHEN_EMPTY:
            every = [b for group in inputs for b in group]
            for b in bands:  # no valid input pixel, no statistic: masked where every image is
                b.masked_on = lambda grid, every=every: all(x.surely_masked(grid) for x in every)
        out.extend(bands)
    return out


_MASKED_WHEN_EMPTY = {"Reducer.median", "Reducer.mean", "Reducer.min", "Reducer.max", "Reducer.first",
                      "Reducer.mode"}  # fmt: skip


def _shortcut(kind: str, reducer: Reducer) -> Callable[..., Image]:
    """``reduce.<kind>``: the reducer applied to each band name of the collection; plain band names."""
    name = f"reduce.{kind}"
    stack_reducer(reducer, name)

    def reduce_collection(collection):
        ic = as_image_collection(name, collection)
        groups = [([bands], [band]) for band, bands in _bands_by_name(ic.features).items()]
        return Image(_reduction_bands(name, groups, reducer, len(ic.features)))

    reduce_collection.__name__ = f"reduce_{kind}"
    reduce_collection.__doc__ = (
        f"``ImageCollection.{kind}()``: Reducer.{kind} per pixel over the stack of all matching bands "
        "(bands matched by name)."
    )
    return algorithm(name)(reduce_collection)


def _register_shortcuts() -> None:
    made = {
        "count": r.count(),
        "mean": r.mean(),
        "median": r.median(None, None, None),
        "min": r.min_(1),
        "max": r.max_(1),
        "mode": r.mode(None, None, None),
        "sum": r.sum_(),
        "product": r.product(),
        "and": r.and_(),
        "or": r.or_(),
    }
    for kind, red in made.items():
        _shortcut(kind, red)


_register_shortcuts()


@algorithm("ImageCollection.reduce")
def reduce(collection, reducer, parallelScale):  # noqa: A001, N803
    """Apply ``reducer`` per pixel: a single-input reducer to each band (``<band>_<output>``),
    a multi-input one to all bands at once (its output names)."""
    name = "ImageCollection.reduce"
    ic = as_image_collection(name, collection)
    if not isinstance(reducer, Reducer):
        raise EngineError(f"{name}: 'reducer' must be a Reducer.")
    stack_reducer(reducer, name)
    images = ic.features
    if not images:
        return Image([])
    first_names = images[0].band_names
    for im in images[1:]:
        if im.band_names != first_names:
            raise EngineError(
                f"{name}: Expected a homogeneous image collection, but an image with incompatible bands was "
                f"encountered:\nFirst image type: {len(first_names)} bands ({first_names}).\n"
                f"Current image type: {len(im.band_names)} bands ({im.band_names})."
            )
    by_name = _bands_by_name(images)
    if reducer.input_count == 1:
        groups = [([by_name[b]], [f"{b}_{o}" for o in reducer.output_names]) for b in first_names]
    else:
        if reducer.input_count != len(first_names):
            raise EngineError(
                f"{name}: Need {reducer.input_count} bands for the reducer's inputs, but the images have "
                f"{len(first_names)}."
            )
        groups = [([by_name[b] for b in first_names], list(reducer.output_names))]
    return Image(_reduction_bands(name, groups, reducer, len(images)))


# -- mosaics -------------------------------------------------------------------------------


@algorithm("ImageCollection.mosaic")
def mosaic(collection):
    """Per band and pixel, the last image's valid pixel ("prioritizes images last to first")."""
    ic = as_image_collection("ImageCollection.mosaic", collection)
    images = list(ic.features)
    by_name = _bands_by_name(images)
    names = list(by_name)

    def compute_all(grid: PixelGrid, ctx: Any) -> list[np.ma.MaskedArray]:
        values = {n: np.zeros(grid.shape) for n in names}
        masks = {n: np.ones(grid.shape, dtype=bool) for n in names}
        for im in images:
            with own_pixels(ctx) as scope:  # one image's pixels held at a time
                for b in im.bands:
                    x = b.compute(grid, scope)
                    valid = ~np.ma.getmaskarray(x)
                    np.copyto(values[b.name], x.data, where=valid)
                    masks[b.name] &= ~valid
        return [np.ma.MaskedArray(values[n], masks[n]) for n in names]

    specs = [(n, widest(*(b.pixel_type for b in by_name[n]))) for n in names]
    return Image(_grouped(specs, compute_all))


@algorithm("ImageCollection.qualityMosaic")
def quality_mosaic(collection, qualityBand):  # noqa: N803
    """Per pixel, all bands of the image whose ``qualityBand`` is highest (masked quality never wins).

    Ties go to the later image, as in ``mosaic`` where later images lie on top.
    """
    name = "ImageCollection.qualityMosaic"
    ic = as_image_collection(name, collection)
    images = list(ic.features)
    for im in images:
        if qualityBand not in im.band_names:
            raise EngineError(f"{name}: Image '{im.id}' has no band named '{qualityBand}'.")
    by_name = _bands_by_name(images)
    names = list(by_name)

    def compute_all(grid: PixelGrid, ctx: Any) -> list[np.ma.MaskedArray]:
        best = np.full(grid.shape, -np.inf)
        chosen = np.full(grid.shape, -1, dtype=np.int64)
        scopes, starts = [], []
        for i, im in enumerate(images):
            scope = pixel_scope(ctx)  # kept until its image's bands are read below
            scopes.append(scope)
            starts.append(scope.pixels_computed if scope is not ctx else None)
            q = im.band(qualityBand).compute(grid, scope)
            better = ~np.ma.getmaskarray(q) & (q.data >= best)
            best[better] = q.data[better]
            chosen[better] = i
        values = {n: np.zeros(grid.shape) for n in names}
        masks = {n: np.ones(grid.shape, dtype=bool) for n in names}
        for i, im in enumerate(images):
            here = chosen == i
            scope, scopes[i] = scopes[i], None
            for b in im.bands if here.any() else ():
                x = b.compute(grid, scope)
                values[b.name][here] = x.data[here]
                masks[b.name][here] = np.ma.getmaskarray(x)[here]
            if starts[i] is not None:  # the scope's pixels count as the request's (a batch task's work)
                ctx.pixels_computed += scope.pixels_computed - starts[i]
        return [np.ma.MaskedArray(values[n], masks[n]) for n in names]

    specs = [(n, widest(*(b.pixel_type for b in by_name[n]))) for n in names]
    return Image(_grouped(specs, compute_all))
