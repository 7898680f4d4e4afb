"""Band: one lazy band of an image, what every raster module computes with.

A band knows its name, pixel type, default projection, footprint and how to
compute its pixels on any :class:`~gee_mining.contracts.lattice.PixelGrid` (see ``image.py``).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import shapely

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.local.raster.pixeltype import PixelType
from gee_mining.local.values.projection import Projection

Compute = Callable[[PixelGrid, Any], np.ma.MaskedArray]
Probe = Callable[[PixelGrid], bool]
RowWriter = Callable[[slice, np.ndarray], None]  # writes rows of a band into a float field of an answer
RowsInto = Callable[[PixelGrid, Any], RowWriter]

_band_ids = itertools.count()


@contextlib.contextmanager
def own_pixels(ctx: Any) -> Iterator[Any]:
    """``ctx`` with a pixel cache of its own, for one region of a request that reduces or samples many
    (``reduceRegions``, ``sampleRegions``): it reads what the request cached before, keeps its own writes and drops
    them when the block ends, so such a request holds one region's pixels at a time, not every region's (a page of
    500 fine cells of a 58-band feature image held 8.7 GB). The pixels it computes still count as the request's."""
    child = pixel_scope(ctx)
    if child is ctx:
        yield ctx
        return
    start = child.pixels_computed
    try:
        yield child
    finally:
        ctx.pixels_computed += child.pixels_computed - start


def pixel_scope(ctx: Any) -> Any:
    """A child of ``ctx`` whose pixel cache reads the request's but keeps its own writes (``ctx`` itself when it has
    no cache). Its pixels are not added to the request's count: :func:`own_pixels` does that, for a block."""
    cache = getattr(ctx, "pixels", None)
    if cache is None:
        return ctx
    child = copy.copy(ctx)
    child.pixels = collections.ChainMap({}, cache)
    return child


class Band:
    """One lazy band. ``footprint`` is a shapely geometry in EPSG:4326, or None when unbounded.

    ``compute(grid, ctx)`` returns the band's pixels on ``grid``; results are
    cached per request under the band's ``key``, which renaming keeps.
    ``dimensions`` is the native (width, height) of a band read from a file.

    ``masked_on(grid)`` / ``zero_on(grid)`` (None when unknown) say, without computing a pixel, that every
    pixel on ``grid`` is masked / masked or zero: a mask painted from geometries that miss the grid, a band
    masked by it (:meth:`surely_masked`). An export skips the tiles where every band is surely masked, so a
    batch of scattered cells costs its cells, not its rectangle. Conservative: False is always allowed.

    ``rows_into(grid, ctx)`` (None for most bands) prepares writing the band's pixels on ``grid`` straight into a
    float field of an NPY answer, a block of rows at a time: it computes the inputs on the whole grid and returns a
    :data:`RowWriter` ``write(rows, out)`` that writes those rows' values, cast to ``out``'s type (any strides),
    masked pixels 0. The answer's records are then written once, block after block in cache, with no band-sized
    temporary (the normalised differences of a composite: 66 float64 arrays a strip, then copied into records, was
    half the engine's time above the reference). :meth:`row_writer` is how an encoder asks for it.
    """

    __slots__ = ("name", "pixel_type", "proj", "footprint", "_compute", "key", "dimensions", "source", "resampling",
                 "masked_on", "zero_on", "rows_into")  # fmt: skip

    def __init__(
        self,
        name: str,
        pixel_type: PixelType,
        proj: Projection,
        footprint: shapely.Geometry | None,
        compute: Compute,
        key: int | None = None,
        dimensions: tuple[int, int] | None = None,
        masked_on: Probe | None = None,
        zero_on: Probe | None = None,
        rows_into: RowsInto | None = None,
    ):
        self.name = name
        self.pixel_type = pixel_type
        self.proj = proj
        self.footprint = footprint
        self._compute = compute
        self.key = next(_band_ids) if key is None else key
        self.dimensions = dimensions
        self.source = None  # the FileSource of a band read straight from a file
        self.resampling = "nearest"  # how a band read from a file is resampled into a request's grid
        self.masked_on = masked_on
        self.zero_on = zero_on
        self.rows_into = rows_into

    def surely_masked(self, grid: PixelGrid) -> bool:
        """True only if every pixel of the band on ``grid`` is masked, known without computing it."""
        return self.masked_on is not None and self.masked_on(grid)

    def surely_zero(self, grid: PixelGrid) -> bool:
        """True only if every pixel of the band on ``grid`` is masked or zero (a mask that masks it all)."""
        return (self.zero_on is not None and self.zero_on(grid)) or self.surely_masked(grid)

    def compute(self, grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
        cache = getattr(ctx, "pixels", None)
        if cache is None:
            return _as_masked(self._compute(grid, ctx), grid)
        k = (self.key, grid)
        out = cache.get(k)
        if out is None:
            ctx.check_cancelled()
            ctx.count_pixels(grid.size)
            out = _as_masked(self._compute(grid, ctx), grid)
            cache[k] = out
        return out

    def row_writer(self, grid: PixelGrid, ctx: Any) -> RowWriter | None:
        """The band's :data:`RowWriter` on ``grid`` (see ``rows_into``), counted as a computation of its pixels;
        None when it has none or its pixels are already in the request's cache (copying those is cheaper)."""
        if self.rows_into is None:
            return None
        cache = getattr(ctx, "pixels", None)
        if cache is not None:
            if (self.key, grid) in cache:
                return None
            ctx.check_cancelled()
            ctx.count_pixels(grid.size)
        return self.rows_into(grid, ctx)

    def replace(self, **changes: Any) -> Band:
        """A copy with some attributes changed; the pixels (and cache key) stay unless ``compute`` changes, and
        so do the probes (``masked_on``, ``zero_on``) and ``rows_into`` unless given: a new computation knows nothing
        of them."""
        new_compute = changes.pop("compute", None)
        keep = new_compute is None
        b = Band(
            changes.pop("name", self.name),
            changes.pop("pixel_type", self.pixel_type),
            changes.pop("proj", self.proj),
            changes.pop("footprint", self.footprint),
            new_compute or self._compute,
            key=None if new_compute else self.key,
            dimensions=changes.pop("dimensions", self.dimensions),
            masked_on=changes.pop("masked_on", self.masked_on if keep else None),
            zero_on=changes.pop("zero_on", self.zero_on if keep else None),
            rows_into=changes.pop("rows_into", self.rows_into if keep else None),
        )
        if changes:
            raise TypeError(f"unknown band attributes {sorted(changes)}")
        if new_compute is None:
            b.source = self.source
            b.resampling = self.resampling
        return b

    def to_info(self) -> dict:
        info: dict[str, Any] = {"id": self.name, "data_type": self.pixel_type.to_info()}
        if self.dimensions is not None:
            info["dimensions"] = list(self.dimensions)
        info["crs"] = self.proj.crs
        info["crs_transform"] = [_plain(t) for t in self.proj.transform]
        return info


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _as_masked(data: Any, grid: PixelGrid) -> np.ma.MaskedArray:
    arr = np.ma.asarray(data, dtype=np.float64)
    if arr.shape != grid.shape:
        arr = np.ma.MaskedArray(
            np.broadcast_to(arr.filled(0), grid.shape), np.broadcast_to(np.ma.getmaskarray(arr), grid.shape)
        )
    if arr.mask is np.ma.nomask:
        arr = np.ma.MaskedArray(arr.data, np.zeros(grid.shape, dtype=bool))
    return arr
