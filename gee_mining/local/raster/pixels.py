"""Pixels out: an image computed on a request grid, encoded as Earth Engine encodes it.

``image:computePixels`` answers NPY (a structured array with one field per
band), GEO_TIFF, PNG, JPEG and AUTO_JPEG_PNG. Masked pixels are written as 0
in NPY and as the nodata value 0 in GeoTIFF (Earth Engine's answers carry no
mask either); PNG carries the mask as alpha (times the image's opacity).

PNG and JPEG show an 8-bit visualisation: ``visualizationOptions`` (REST
``VisualizationOptions``: ``ranges``, ``paletteColors``, ``gamma``,
``opacity``) are applied with ``Image.visualize``'s rules; without them the
default visualisation (the first 3 bands or the only one, stretched by type)
is shown. AUTO_JPEG_PNG is PNG when any pixel is transparent, else JPEG.

Thumbnails (``getThumbURL``, ``getDownloadURL``) and maps (``getMapId``) are
created by POST and rendered by later GETs: :class:`RenderStore` keeps what
to render, bounded. A thumbnail without a ``grid`` is rendered in the image's
default projection over the region and size that ``clipToBoundsAndScale``
recorded (or the image's footprint at native scale); map tiles are 256x256
pixels of Web Mercator (EPSG:3857) in the XYZ tiling.
"""

from __future__ import annotations

import io
import math
import threading
import uuid
import weakref
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import shapely
from PIL import Image as PILImage
from rasterio.io import MemoryFile

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.local.core.errors import EngineError, NotFound
from gee_mining.local.raster.band import RowWriter
from gee_mining.local.raster.grid import bounds_in, checked_grid, grid_covering
from gee_mining.local.raster.image import Image, as_image
from gee_mining.local.raster.image_visualize import opacity_of, visualize_image
from gee_mining.local.values.projection import Projection, at_scale


def grid_from_request(grid: Mapping[str, Any]) -> PixelGrid:
    """The PixelGrid of a REST ``grid`` object ({dimensions, affineTransform, crsCode})."""
    if not isinstance(grid, Mapping):
        raise EngineError("computePixels: 'grid' must be an object with dimensions, affineTransform and crsCode.")
    dims = grid.get("dimensions") or {}
    aff = grid.get("affineTransform") or {}
    crs = grid.get("crsCode") or "EPSG:4326"
    try:
        width, height = int(dims["width"]), int(dims["height"])
    except (KeyError, TypeError, ValueError):
        raise EngineError("computePixels: grid.dimensions needs integer width and height.") from None
    transform = tuple(
        float(aff.get(k, default))
        for k, default in (
            ("scaleX", 1.0),
            ("shearX", 0.0),
            ("translateX", 0.0),
            ("shearY", 0.0),
            ("scaleY", 1.0),
            ("translateY", 0.0),
        )
    )
    Projection.from_crs(crs)  # a clear error for an unknown CRS
    return checked_grid(crs, transform, width, height)


def check_request_size(image: Image, grid: PixelGrid, ctx: Any) -> None:
    """Refuse, before computing, a request over Earth Engine's computePixels limits (sides, bands,
    pixels x bands x bytes of each band's type; ``ctx.limits``)."""
    band_bytes = [b.pixel_type.numpy_dtype().itemsize for b in image.bands]
    ctx.limits.check_pixels(grid.width, grid.height, band_bytes)


def compute_image(image: Image, grid: PixelGrid, ctx: Any, band_ids=None) -> dict[str, np.ma.MaskedArray]:
    bands = image.bands if not band_ids else [image.band(n) for n in band_ids]
    return {b.name: b.compute(grid, ctx) for b in bands}


def encode_npy(
    image: Image, shape: tuple[int, ...], writers: Mapping[str, RowWriter], buffers: AnswerBuffers | None = None
) -> memoryview:
    """The NPY answer of ``image``'s bands on a grid of ``shape``: one record field per band, in the band's own
    type, filled by each band's :data:`RowWriter` (:func:`npy_writers`; :func:`pixels_writer` for pixels already
    computed), as :func:`encode_npy_rows` writes it."""
    dtype = np.dtype([(b.name, b.pixel_type.numpy_dtype()) for b in image.bands])
    return encode_npy_rows(dtype, shape, writers, buffers)


def npy_writers(image: Image, grid: PixelGrid, ctx: Any) -> dict[str, RowWriter]:
    """Each band's :data:`RowWriter` into its field of the NPY answer on ``grid``: the band's own
    (``Band.row_writer``: a float band that writes its rows straight into the field, no band-sized temporary),
    else a copier of its computed pixels."""
    writers = {}
    for band in image.bands:
        dtype = band.pixel_type.numpy_dtype()
        direct = band.row_writer(grid, ctx) if dtype.kind == "f" else None
        writers[band.name] = direct if direct is not None else pixels_writer(band.compute(grid, ctx), dtype)
    return writers


def encode_npy_rows(
    dtype: np.dtype, shape: tuple[int, ...], writers: Mapping[str, RowWriter], buffers: AnswerBuffers | None = None
) -> memoryview:
    """The NPY answer with records of ``dtype`` (one field per band, in the band's type): numpy's ``save`` of the
    structured array that ``writers`` fill (masked pixels 0, integer bands rounded and clipped); a read-only
    memoryview (``bytes``-like).

    The records are written straight into one buffer holding the whole answer, a block of rows at a time (band
    after band, the block stays in cache), and that buffer is the answer: no copy into ``bytes`` (a fresh 36.8 MB
    ``bytes`` costs about 28 ms, page faults mostly). The buffer is one of ``buffers``' when given (the engine's,
    reused once an answer written in it is dropped), else fresh memory."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    head = header.getvalue()

    def fill(answer: np.ndarray) -> None:
        answer[: len(head)] = np.frombuffer(head, np.uint8)
        _fill_records(np.ndarray(shape, dtype, buffer=answer, offset=len(head)), writers)

    size = len(head) + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    return (buffers if buffers is not None else AnswerBuffers(keep=0)).write(size, fill)


def _fill_records(records: np.ndarray, writers: Mapping[str, RowWriter]) -> None:
    """Write each band into its field of ``records``, a block of rows at a time."""
    fields = [(n, writers[n]) for n in records.dtype.names]
    row_bytes = records.dtype.itemsize * int(np.prod(records.shape[1:], dtype=np.int64))
    for rows in _row_blocks(records.shape[0], row_bytes):
        block = records[rows]
        for name, write in fields:
            write(rows, block[name])


def pixels_writer(values: np.ma.MaskedArray, dtype: np.dtype) -> RowWriter:
    """The :data:`RowWriter` of computed pixels: rows of ``values`` (integer bands rounded and clipped to their
    type first), masked pixels 0."""
    source, mask = _field_source(values, dtype)

    def write(rows: slice, out: np.ndarray) -> None:
        np.copyto(out, source[rows], casting="unsafe")
        if mask is not None:
            np.copyto(out, 0, where=mask[rows])

    return write


_KEPT_BYTES = 48 * 2**20 + 2**16  # Earth Engine's computePixels limit (50,331,648 bytes) and an NPY header


@dataclass(eq=False)  # compared by identity: list.remove must not compare the buffers elementwise
class _Kept:
    """A kept buffer; ``answer`` refers weakly to the last answer written in it, ``lent`` while one is written."""

    buffer: np.ndarray
    answer: Callable[[], Any] | None = None
    lent: bool = False

    def free(self) -> bool:
        return not self.lent and (self.answer is None or self.answer() is None)


class AnswerBuffers:
    """The engine's buffers for NPY answers, kept across requests; an answer is handed over without a copy.

    :meth:`write` fills a buffer and returns the answer as a read-only memoryview of it (``bytes``-like: ``len``,
    slicing, ``==``, the buffer protocol; ``bytes(answer)`` copies it). A kept buffer is written again only once
    every reference to the last answer in it is gone (a weak reference to the answer's array tells): over HTTP,
    when the server has sent it; in-process, when the caller has dropped it (and any array read from it).

    At most ``keep`` buffers of at most ``max_bytes`` each (Earth Engine's computePixels limit and a header) are
    kept; ``keep`` is 3 because a cell of the composite's 78 bands (109 MB) comes in three answers held at once.
    Others are fresh memory, freed with their answer. Why keep any: a fresh 36.8 MB buffer is page-faulted in on
    every request (numpy asks for huge pages, about 6 ms, but with THP defrag on ``madvise`` a fault may wait for
    the kernel to compact memory: 50-80 ms now and then); a kept one is written from resident pages (2 ms).
    :meth:`clear` forgets them all (answers still held keep their own memory)."""

    def __init__(self, max_bytes: int = _KEPT_BYTES, keep: int = 3):
        self.max_bytes = max_bytes
        self.keep = keep
        self._kept: list[_Kept] = []
        self._lock = threading.Lock()

    def write(self, size: int, fill: Callable[[np.ndarray], None]) -> memoryview:
        """The answer of ``size`` bytes that ``fill`` writes (into a free kept buffer, else fresh memory)."""
        slot = self._take(size)
        answer = (slot.buffer if slot is not None else np.empty(size, np.uint8))[:size]
        try:
            fill(answer)
        finally:
            self._hand_over(slot, answer)
        return memoryview(answer).toreadonly()

    def _take(self, size: int) -> _Kept | None:
        """The smallest free kept buffer of at least ``size`` bytes, lent; None if there is none."""
        with self._lock:
            fits = [k for k in self._kept if k.free() and k.buffer.size >= size]
            if not fits:
                return None
            slot = min(fits, key=lambda k: k.buffer.size)
            slot.lent = True
            return slot

    def _hand_over(self, slot: _Kept | None, answer: np.ndarray) -> None:
        """Watch ``answer`` (written in ``slot``, or in fresh memory that is kept if there is room)."""
        with self._lock:
            if slot is not None:
                slot.answer, slot.lent = weakref.ref(answer), False
                return
            if answer.size > self.max_bytes or self.keep <= 0:
                return
            if len(self._kept) >= self.keep:  # full: a larger buffer replaces the smallest free one
                free = [k for k in self._kept if k.free() and k.buffer.size < answer.size]
                if not free:
                    return
                self._kept.remove(min(free, key=lambda k: k.buffer.size))
            self._kept.append(_Kept(answer.base if answer.base is not None else answer, weakref.ref(answer)))

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        with self._lock:
            self._kept = []


_NPY_BLOCK_BYTES = 1 << 20  # records written band by band a block at a time: the block stays in cache


def _row_blocks(n_rows: int, row_bytes: int) -> list[slice]:
    """Slices of ``n_rows`` rows whose records fill about ``_NPY_BLOCK_BYTES``. Writing one band into
    every record of a 36 MB answer touches every cache line of it for 4-8 bytes; a block at a time,
    band after band, the block is written from cache."""
    step = max(1, _NPY_BLOCK_BYTES // max(row_bytes, 1))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def _field_source(values: np.ma.MaskedArray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """What is copied into a band's field, and the mask of pixels written 0 (None: none). Integer
    bands are rounded and clipped to their type first; float bands are copied as they are, no
    temporary."""
    if np.dtype(dtype).kind in "iu":
        return _cast(values.filled(0), dtype), None
    mask = np.ma.getmaskarray(values)
    return values.data, mask if mask.any() else None


def encode_geotiff(image: Image, arrays: Mapping[str, np.ma.MaskedArray], grid: PixelGrid) -> bytes:
    dtype = np.result_type(*[b.pixel_type.numpy_dtype() for b in image.bands if b.name in arrays])
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=len(arrays),
            dtype=dtype,
            crs=rasterio.crs.CRS.from_user_input(grid.crs),
            transform=grid.affine,
            compress="deflate",
        ) as ds:
            for i, (name, arr) in enumerate(arrays.items(), start=1):
                ds.write(_cast(arr.filled(0), dtype), i)
                ds.set_band_description(i, name)
        return mem.read()


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


DISPLAY_FORMATS = ("PNG", "JPEG", "AUTO_JPEG_PNG")
DATA_FORMATS = ("NPY", "GEO_TIFF")
ZIP_FORMATS = ("ZIPPED_GEO_TIFF", "ZIPPED_GEO_TIFF_PER_BAND")
_FORMAT_ALIASES = {
    "JPG": "JPEG",
    "AUTO": "AUTO_JPEG_PNG",
    "GEOTIFF": "GEO_TIFF",
    "NUMPY_NDARRAY": "NPY",
    "NUMPY": "NPY",
}
OUTPUT_SIZE_PROPERTY = "gee_mining:output_size"  # written by Image.clipToBoundsAndScale
WEB_MERCATOR_HALF_WORLD = 20037508.342789244  # metres from the origin to the edge of EPSG:3857's square world
TILE_SIZE = 256
MAX_ZOOM = 30


def file_format(payload: Mapping[str, Any]) -> str:
    """The request's ``fileFormat`` in the REST enum's spelling (AUTO_JPEG_PNG when absent)."""
    fmt = str(payload.get("fileFormat") or "AUTO_JPEG_PNG").upper()
    return _FORMAT_ALIASES.get(fmt, fmt)


def selected(image: Image, band_ids: Any) -> Image:
    """The image restricted to ``bandIds`` (all bands when absent or empty)."""
    if not band_ids:
        return image
    return image.with_bands(image.band(str(n)) for n in band_ids)


def visualization_from_options(image: Image, options: Mapping[str, Any], name: str) -> Image:
    """``Image.visualize`` with a REST ``VisualizationOptions`` object."""
    if not isinstance(options, Mapping):
        raise EngineError(f"{name}: visualizationOptions must be an object.")
    ranges = options.get("ranges") or None
    mins = maxes = None
    if ranges is not None:
        if not isinstance(ranges, list) or not all(isinstance(r, Mapping) for r in ranges):
            raise EngineError(f"{name}: visualizationOptions.ranges must be a list of {{min, max}} objects.")
        mins = [float(r.get("min", 0.0)) for r in ranges]
        maxes = [float(r.get("max", 0.0)) for r in ranges]
    gamma = options.get("gamma")
    if isinstance(gamma, Mapping):  # the Python client sends a DoubleValue wrapper: {"value": g}
        gamma = gamma.get("value")
    opacity = options.get("opacity")
    if isinstance(opacity, Mapping):
        opacity = opacity.get("value")
    return visualize_image(
        image,
        min=mins,
        max=maxes,
        gamma=gamma,
        opacity=opacity,
        palette=options.get("paletteColors") or None,
        name=name,
    )


def display_image(image: Image, payload: Mapping[str, Any], name: str) -> Image:
    """What a PNG or JPEG shows: the requested bands, visualised by the request's options or by default."""
    image = selected(image, payload.get("bandIds"))
    options = payload.get("visualizationOptions")
    if options:
        return visualization_from_options(image, options, name)
    return visualize_image(image, name=name)


def render_rgb(image: Image, grid: PixelGrid, ctx: Any) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of a display image on ``grid``: (height, width, 1 or 3) uint8 channels and a uint8 alpha."""
    check_request_size(image, grid, ctx)
    channels = np.zeros(grid.shape + (len(image.bands),), dtype=np.uint8)
    alpha = np.zeros(grid.shape, dtype=np.uint8)
    window = footprint_window(image, grid)
    if window is None:  # nothing of the image on this grid (a map tile beside it): all transparent
        return channels, alpha
    col0, row0, width, height = window
    sub = grid.window(col0, row0, width, height) if (width, height) != (grid.width, grid.height) else grid
    arrays = compute_image(image, sub, ctx)
    values = [arrays[b.name] for b in image.bands]
    mask = np.zeros(sub.shape, dtype=bool)
    for v in values:
        mask |= np.ma.getmaskarray(v)
    rgb = np.stack([np.clip(np.floor(v.filled(0) + 0.5), 0, 255) for v in values], axis=-1)
    rgb[mask] = 0
    channels[row0 : row0 + height, col0 : col0 + width] = rgb.astype(np.uint8)
    alpha[row0 : row0 + height, col0 : col0 + width] = np.where(mask, 0, math.floor(255.0 * opacity_of(image) + 0.5))
    return channels, alpha


def footprint_window(image: Image, grid: PixelGrid) -> tuple[int, int, int, int] | None:
    """(col0, row0, width, height) of the part of ``grid`` that the image's footprint can touch
    (with a pixel of margin), the whole grid when that cannot be told, None when it touches nothing.

    Pixels outside a band's footprint are masked, so a map tile computes only where the image is.
    """
    footprint = image.footprint()
    whole = (0, 0, grid.width, grid.height)
    if footprint is None or not grid.is_rectilinear:
        return whole
    if footprint.is_empty:
        return None
    try:
        x0, y0, x1, y1 = bounds_in(footprint, grid.crs)
    except EngineError:
        return whole
    a, _, c, _, e, f = grid.transform
    cols = sorted(((x0 - c) / a, (x1 - c) / a))
    rows = sorted(((y0 - f) / e, (y1 - f) / e))
    col0, col1 = max(0, math.floor(cols[0]) - 1), min(grid.width, math.ceil(cols[1]) + 1)
    row0, row1 = max(0, math.floor(rows[0]) - 1), min(grid.height, math.ceil(rows[1]) + 1)
    if col0 >= col1 or row0 >= row1:
        return None
    return col0, row0, col1 - col0, row1 - row0


def encode_display(channels: np.ndarray, alpha: np.ndarray, fmt: str) -> tuple[str, bytes]:
    """PNG (with alpha), JPEG (no alpha) or, for AUTO_JPEG_PNG, PNG only if any pixel is transparent."""
    if fmt == "AUTO_JPEG_PNG":
        fmt = "PNG" if bool((alpha < 255).any()) else "JPEG"
    gray = channels.shape[-1] == 1
    buf = io.BytesIO()
    if fmt == "PNG":
        pixels = np.concatenate([channels, alpha[..., None]], axis=-1)
        PILImage.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")  # LA or RGBA from the shape
        return "image/png", buf.getvalue()
    if fmt == "JPEG":
        pixels = channels[..., 0] if gray else channels
        PILImage.fromarray(np.ascontiguousarray(pixels)).save(buf, format="JPEG", quality=90)  # L or RGB
        return "image/jpeg", buf.getvalue()
    raise EngineError(f"Unsupported display format {fmt}.")


def encode_data(image: Image, grid: PixelGrid, ctx: Any, fmt: str) -> tuple[str, bytes]:
    """NPY or GeoTIFF of every band of ``image`` on ``grid``."""
    check_request_size(image, grid, ctx)
    if fmt == "NPY":
        writers = npy_writers(image, grid, ctx)
        return "application/octet-stream", encode_npy(image, grid.shape, writers, getattr(ctx, "answer_buffers", None))
    return "image/tiff", encode_geotiff(image, compute_image(image, grid, ctx), grid)


def compute_pixels(value: Any, payload: Mapping[str, Any], ctx: Any) -> tuple[str, bytes]:
    """The answer of ``image:computePixels``: (content type, bytes)."""
    image = as_image("computePixels", value)
    grid = grid_from_request(payload.get("grid") or {})
    fmt = file_format(payload)
    if fmt in DISPLAY_FORMATS:
        return encode_display(*render_rgb(display_image(image, payload, "computePixels"), grid, ctx), fmt)
    if fmt in DATA_FORMATS:
        image = selected(image, payload.get("bandIds"))
        if payload.get("visualizationOptions"):
            image = visualization_from_options(image, payload["visualizationOptions"], "computePixels")
        return encode_data(image, grid, ctx, fmt)
    raise EngineError(
        f"computePixels: file format {fmt} is not supported (NPY, GEO_TIFF, PNG, JPEG, AUTO_JPEG_PNG); "
        "ZIPPED_GEO_TIFF formats are for thumbnails (getDownloadURL)."
    )


# -- grids of thumbnails and tiles -------------------------------------------------------


def _sized_grid(crs: str, bounds, width: Any, height: Any, max_dimension: Any, name: str) -> PixelGrid:
    """A grid exactly covering ``bounds`` with the requested pixel dimensions (one side from the aspect)."""
    xmin, ymin, xmax, ymax = bounds
    span_x, span_y = xmax - xmin, ymax - ymin
    if span_x <= 0 or span_y <= 0:
        raise EngineError(f"{name}: The region has no area; cannot size the output.")
    if width and height:
        w, h = int(width), int(height)
    elif max_dimension:
        m = int(max_dimension)
        if span_x >= span_y:
            w, h = m, max(1, round(m * span_y / span_x))
        else:
            w, h = max(1, round(m * span_x / span_y)), m
    elif width:
        w = int(width)
        h = max(1, round(w * span_y / span_x))
    else:
        h = int(height)
        w = max(1, round(h * span_x / span_y))
    if w <= 0 or h <= 0:
        raise EngineError(f"{name}: Invalid output dimensions {w}x{h}.")
    return PixelGrid(crs, (span_x / w, 0.0, xmin, 0.0, -span_y / h, ymax), w, h)


def output_grid(
    image: Image, proj: Projection | None = None, footprint: shapely.Geometry | None = None, name: str = "getPixels"
) -> PixelGrid:
    """The grid a thumbnail or download renders on when the request gives none.

    In ``proj`` (the image's default projection), over the region recorded by
    ``Image.clipToBoundsAndScale`` (else ``footprint``, else the image's
    footprint), at the recorded width/height/maxDimension or scale, else at
    the projection's native scale.
    """
    proj = proj or image.default_projection()
    size = image.properties.get(OUTPUT_SIZE_PROPERTY) or {}
    if size.get("bounds"):
        region = shapely.box(*size["bounds"])
    else:
        region = footprint if footprint is not None else image.footprint()
    if region is None:
        raise EngineError(f"{name}: The image is unbounded; give a region (and dimensions or a scale).")
    if region.is_empty:
        raise EngineError(f"{name}: The region does not intersect the image.")
    bounds = bounds_in(region, proj.crs)
    if size.get("width") or size.get("height") or size.get("maxDimension"):
        return _sized_grid(proj.crs, bounds, size.get("width"), size.get("height"), size.get("maxDimension"), name)
    if size.get("scale"):
        proj = at_scale(projection=proj, meters=float(size["scale"]))
    return grid_covering(proj, bounds)


def tile_grid(z: int, x: int, y: int) -> PixelGrid:
    """The 256x256 EPSG:3857 grid of XYZ tile (z, x, y) (y counted from the north)."""
    if not 0 <= z <= MAX_ZOOM:
        raise EngineError(f"Tile zoom {z} is out of range (0..{MAX_ZOOM}).")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise NotFound(f"Tile {z}/{x}/{y} does not exist: x and y must be in 0..{n - 1} at zoom {z}.")
    span = 2.0 * WEB_MERCATOR_HALF_WORLD / n
    res = span / TILE_SIZE
    return PixelGrid(
        "EPSG:3857",
        (res, 0.0, -WEB_MERCATOR_HALF_WORLD + x * span, 0.0, -res, WEB_MERCATOR_HALF_WORLD - y * span),
        TILE_SIZE,
        TILE_SIZE,
    )


# -- maps and thumbnails ---------------------------------------------------------------------


@dataclass(frozen=True)
class Render:
    """What a map or thumbnail renders: the evaluated image (already visualised for display formats)."""

    kind: str  # "map" or "thumbnail"
    image: Image
    fmt: str
    grid: PixelGrid | None = None
    filename_prefix: str | None = None


def prepare_render(value: Any, payload: Mapping[str, Any], kind: str) -> Render:
    """Check a maps/thumbnails ``create`` request and keep what its GETs will render.

    Errors of the expression (bands, palette, formats) surface here, at
    creation, as they do on Earth Engine.
    """
    name = "maps.create" if kind == "map" else "thumbnails.create"
    image = as_image(name, value)
    fmt = file_format(payload)
    if fmt in DISPLAY_FORMATS:
        image = display_image(image, payload, name)
    elif kind == "thumbnail" and fmt in DATA_FORMATS + ZIP_FORMATS:
        image = selected(image, payload.get("bandIds"))
        if payload.get("visualizationOptions"):
            image = visualization_from_options(image, payload["visualizationOptions"], name)
    else:
        allowed = DISPLAY_FORMATS if kind == "map" else DISPLAY_FORMATS + DATA_FORMATS + ZIP_FORMATS
        raise EngineError(f"{name}: file format {fmt} is not supported here ({', '.join(allowed)}).")
    grid = grid_from_request(payload["grid"]) if payload.get("grid") else None
    prefix = payload.get("filenamePrefix") or None
    return Render(kind, image, fmt, grid, str(prefix) if prefix else None)


def thumbnail_pixels(render: Render, ctx: Any) -> tuple[str, bytes]:
    """The bytes of a thumbnail: PNG/JPEG, NPY, GeoTIFF or a zip of GeoTIFFs (one per band, or one)."""
    image = render.image
    if render.fmt in DISPLAY_FORMATS:
        grid = render.grid or output_grid(image, name="thumbnails.getPixels")
        return encode_display(*render_rgb(image, grid, ctx), render.fmt)
    if render.fmt in DATA_FORMATS:
        grid = render.grid or output_grid(image, name="thumbnails.getPixels")
        return encode_data(image, grid, ctx, render.fmt)
    prefix = render.filename_prefix or "download"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if render.fmt == "ZIPPED_GEO_TIFF":
            grid = render.grid or output_grid(image, name="thumbnails.getPixels")
            zf.writestr(f"{prefix}.tif", encode_data(image, grid, ctx, "GEO_TIFF")[1])
        else:
            for band in image.bands:
                one = image.with_bands([band])
                grid = render.grid or output_grid(one, band.proj, band.footprint, name="thumbnails.getPixels")
                zf.writestr(f"{prefix}.{band.name}.tif", encode_data(one, grid, ctx, "GEO_TIFF")[1])
    return "application/zip", buf.getvalue()


def map_tile(render: Render, z: int, x: int, y: int, ctx: Any) -> tuple[str, bytes]:
    """One 256x256 Web Mercator tile of a map."""
    return encode_display(*render_rgb(render.image, tile_grid(z, x, y), ctx), render.fmt)


class RenderStore:
    """The maps and thumbnails an engine has created, by id; the oldest are forgotten beyond ``limit``."""

    def __init__(self, limit: int = 512):
        self.limit = limit
        self._items: OrderedDict[str, Render] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, render: Render) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            self._items[key] = render
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
        return key

    def get(self, key: str, kind: str) -> Render:
        with self._lock:
            render = self._items.get(key)
            if render is not None:
                self._items.move_to_end(key)
        if render is None or render.kind != kind:
            raise NotFound(f"The {kind} '{key}' does not exist or has expired; create it again.")
        return render
