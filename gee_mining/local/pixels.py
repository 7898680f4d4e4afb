"""Pixels out: an image computed on a request grid, encoded as Earth Engine encodes it.

``image:computePixels`` answers NPY (a structured array with one field per
band), GEO_TIFF, PNG and JPEG. Masked pixels are written as 0 in NPY and as
the nodata value 0 in GeoTIFF (Earth Engine's answers carry no mask either).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import EngineError
from .grid import PixelGrid
from .image import Image, as_image

MAX_REQUEST_PIXELS = 1 << 25  # computePixels is interactive: Earth Engine caps requests at 48 MB


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
    from .projection import Projection

    Projection.from_crs(crs)  # a clear error for an unknown CRS
    return PixelGrid(crs, transform, width, height)


def compute_image(image: Image, grid: PixelGrid, ctx: Any, band_ids=None) -> dict[str, np.ma.MaskedArray]:
    if grid.size * max(1, len(band_ids or image.bands)) > MAX_REQUEST_PIXELS:
        raise EngineError(
            f"Total request size ({grid.size * len(band_ids or image.bands):,} pixels) must be less than or equal "
            f"to {MAX_REQUEST_PIXELS:,}; export the image instead."
        )
    bands = image.bands if not band_ids else [image.band(n) for n in band_ids]
    return {b.name: b.compute(grid, ctx) for b in bands}


def encode_npy(image: Image, arrays: Mapping[str, np.ma.MaskedArray]) -> bytes:
    types = {b.name: b.pixel_type.numpy_dtype() for b in image.bands}
    names = list(arrays)
    shape = next(iter(arrays.values())).shape
    out = np.zeros(shape, dtype=[(n, types[n]) for n in names])
    for n in names:
        out[n] = _cast(arrays[n].filled(0), types[n])
    buf = io.BytesIO()
    np.save(buf, out, allow_pickle=False)
    return buf.getvalue()


def encode_geotiff(image: Image, arrays: Mapping[str, np.ma.MaskedArray], grid: PixelGrid) -> bytes:
    import rasterio
    from rasterio.io import MemoryFile

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


def compute_pixels(value: Any, payload: Mapping[str, Any], ctx: Any) -> tuple[str, bytes]:
    """The answer of ``image:computePixels``: (content type, bytes)."""
    image = as_image("computePixels", value)
    grid = grid_from_request(payload.get("grid") or {})
    band_ids = payload.get("bandIds") or None
    arrays = compute_image(image, grid, ctx, band_ids)
    fmt = (payload.get("fileFormat") or "AUTO_JPEG_PNG").upper()
    if fmt in ("NPY", "NUMPY_NDARRAY"):
        return "application/octet-stream", encode_npy(image, arrays)
    if fmt in ("GEO_TIFF", "GEOTIFF"):
        return "image/tiff", encode_geotiff(image, arrays, grid)
    raise EngineError(f"computePixels: file format {fmt} is not supported by the local engine yet (NPY, GEO_TIFF).")
