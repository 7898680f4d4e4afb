"""Image: an ordered list of lazy bands plus properties (Earth Engine's ``ee.Image``).

A :class:`Band` knows its name, pixel type, default projection, footprint and
how to compute its pixels on any :class:`~gee_mining.contracts.lattice.PixelGrid`. Nothing reads a
pixel until a request (computePixels, reduceRegion, sample, export) fixes the
grid; then every band computes on that grid, sources resampled into it
(nearest neighbour unless ``resample()`` says otherwise), as Earth Engine
does. Pixel values travel as float64 ``numpy.ma.MaskedArray``s whose mask is
True where the pixel is masked; the band's :class:`~.pixeltype.PixelType` says
what Earth Engine's type is. Masks are binary (a pixel is valid or not);
Earth Engine's fractional mask values are not represented.

Within one request, a band's pixels on a grid are computed once and cached in
the request context (``ctx.pixels``), so a band shared by many expressions
(the 66 normalised differences of 12 bands) is read once.

The ImageCollection value class lives here too; the Image.* algorithms of
band bookkeeping and projections live here, arithmetic in ``image_math.py``,
reductions and sampling in ``image_reduce.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import shapely
from rasterio.features import geometry_mask as rio_mask

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.info import to_info
from gee_mining.local.core.registry import algorithm
from gee_mining.local.core.types import promotion
from gee_mining.local.raster.band import Band
from gee_mining.local.raster.grid import bounds_in
from gee_mining.local.raster.pixeltype import PixelType, widest
from gee_mining.local.raster.resample import RESAMPLING, warp_band, with_resampling
from gee_mining.local.values.element import Element
from gee_mining.local.values.feature import Feature, geometry_algorithm
from gee_mining.local.values.featurecollection import FeatureCollection
from gee_mining.local.values.geometry import Geometry, geodesic_lonlat, in_crs
from gee_mining.local.values.projection import Projection, at_scale, transformer
from gee_mining.local.values.string import literal_selector, selector_pattern

_DEGREE = Projection("EPSG:4326")  # WGS84 at 1 degree, as Earth Engine reports it: transform [1, 0, 0, 0, 1, 0]


class Image(Element):
    """An image: bands in order, properties, and ``system:index`` as ``id``."""

    ee_type = "Image"
    __slots__ = ("bands",)

    def __init__(self, bands: Iterable[Band] = (), properties: dict[str, Any] | None = None, id: str | None = None):
        super().__init__(properties, id)
        self.bands: tuple[Band, ...] = tuple(bands)

    def copy_with(self, properties: dict[str, Any] | None = None, **changes: Any) -> Image:
        return Image(
            changes.get("bands", self.bands),
            self.properties if properties is None else properties,
            changes.get("id", self.id),
        )

    def with_bands(self, bands: Iterable[Band]) -> Image:
        return self.copy_with(bands=tuple(bands))

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band(self, name: str) -> Band:
        for b in self.bands:
            if b.name == name:
                return b
        raise EngineError(f"Image.select: Pattern '{name}' did not match any bands.")

    def footprint(self) -> shapely.Geometry | None:
        """The union of the bands' footprints (EPSG:4326), None if any band is unbounded."""
        parts = [b.footprint for b in self.bands]
        if not parts or any(p is None for p in parts):
            return None
        return shapely.union_all(parts)

    def surely_masked(self, grid: PixelGrid) -> bool:
        """True only if every band is masked everywhere on ``grid``, known without computing a pixel."""
        return bool(self.bands) and all(b.surely_masked(grid) for b in self.bands)

    def default_projection(self) -> Projection:
        """The projection of the first band, or WGS84 at 1 degree when there are none."""
        return self.bands[0].proj if self.bands else _DEGREE

    def to_info(self) -> dict:
        info: dict[str, Any] = {"type": "Image", "bands": [b.to_info() for b in self.bands]}
        asset_id = self.properties.get("system:id")
        if asset_id is not None:
            info["id"] = asset_id
        version = self.properties.get("system:version")
        if version is not None:
            info["version"] = version
        props = {k: v for k, v in self.properties.items() if k not in ("system:id", "system:version")}
        if self.id is not None:
            props["system:index"] = self.id
        if props:
            info["properties"] = to_info(props)
        return info


class ImageCollection(FeatureCollection):
    """A collection of images; shares the Collection algorithms with feature collections."""

    ee_type = "ImageCollection"
    __slots__ = ()

    def with_features(self, features: list[Any]) -> FeatureCollection:
        if all(isinstance(f, Image) for f in features):
            return self.copy_with(features)
        return FeatureCollection(features, self.properties, self.id)

    def to_info(self, features: list[Any] | None = None) -> dict:
        info: dict[str, Any] = {"type": "ImageCollection", "bands": []}
        if self.id is not None:
            info["id"] = self.id
        if self.properties:
            info["properties"] = to_info(self.properties)
        info["features"] = [f.to_info() for f in (self.features if features is None else features)]
        return info


def as_image(name: str, value: Any) -> Image:
    if not isinstance(value, Image):
        raise EngineError(f"{name}: expected an Image, got {getattr(value, 'ee_type', type(value).__name__)}.")
    return value


# -- construction ---------------------------------------------------------------


def constant_band(value: float, name: str = "constant") -> Band:
    """A band of one value everywhere: unbounded, WGS84 at 1 degree, as ``ee.Image.constant``."""
    if isinstance(value, bool) or isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        v = int(value)
        ptype = PixelType.int_range(v, v)
    else:
        ptype = PixelType("float" if float(np.float32(value)) == value else "double")

    def compute(grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
        return np.ma.MaskedArray(np.full(grid.shape, float(value)), np.zeros(grid.shape, dtype=bool))

    return Band(name, ptype, _DEGREE, None, compute, zero_on=_everywhere if value == 0 else None)


def _everywhere(grid: PixelGrid) -> bool:
    return True


def derive(
    name: str,
    inputs: Sequence[Band],
    fn: Callable[..., np.ma.MaskedArray],
    pixel_type: PixelType,
) -> Band:
    """A band computed pixel by pixel from ``inputs`` on the request grid.

    Its default projection is the first input's; its footprint the
    intersection of the bounded inputs' footprints.
    """
    if not inputs:
        raise EngineError("An image operation needs at least one input band.")
    bounded = [b.footprint for b in inputs if b.footprint is not None]
    footprint = shapely.intersection_all(bounded) if len(bounded) > 1 else (bounded[0] if bounded else None)
    bands = tuple(inputs)

    def compute(grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
        return fn(*(b.compute(grid, ctx) for b in bands))

    return Band(name, pixel_type, inputs[0].proj, footprint, compute)


@algorithm("Image.constant")
def constant(value):
    values = value if isinstance(value, list) else [value]
    if not values:
        raise EngineError("Image.constant: The list of values must not be empty.")
    names = ["constant"] if len(values) == 1 else [f"constant_{i}" for i in range(len(values))]
    for v in values:
        if not isinstance(v, int | float):
            raise EngineError(f"Image.constant: Invalid constant value {v!r}.")
    return Image([constant_band(v, n) for v, n in zip(values, names, strict=True)])


@algorithm("Image.load", context=True)
def load(ctx, id, version):
    return ctx.catalog.image(id)


# -- bands ------------------------------------------------------------------------


def select_bands(name: str, image: Image, selectors: Sequence[Any]) -> list[Band]:
    """Bands matched by ``selectors`` (names as regular expressions, or indices), in selector order."""
    out: list[Band] = []
    for sel in selectors:
        if isinstance(sel, bool):
            raise EngineError(f"{name}: Invalid band selector {sel!r}.")
        if isinstance(sel, int | float):
            i = int(sel)
            if not 0 <= i < len(image.bands):
                raise EngineError(f"{name}: Band index {i} out of bounds ({len(image.bands)} bands).")
            out.append(image.bands[i])
            continue
        if not isinstance(sel, str):
            raise EngineError(f"{name}: Invalid band selector {sel!r}.")
        pattern = None if literal_selector(sel) else selector_pattern(sel)
        matched = [b for b in image.bands if b.name == sel or (pattern is not None and pattern.fullmatch(b.name))]
        if not matched:
            raise EngineError(f"{name}: Pattern '{sel}' did not match any bands.")
        out.extend(matched)
    return out


@algorithm("Image.select")
def select(input, bandSelectors, newNames):  # noqa: N803
    image = as_image("Image.select", input)
    bands = select_bands("Image.select", image, bandSelectors)
    if newNames is not None:
        if len(newNames) != len(bands):
            raise EngineError(
                f"Image.select: The number of band selectors ({len(bands)}) must match the number of new names "
                f"({len(newNames)})."
            )
        bands = [b.replace(name=str(n)) for b, n in zip(bands, newNames, strict=True)]
    return image.with_bands(bands)


@algorithm("Image.rename")
def rename(input, names):
    image = as_image("Image.rename", input)
    if len(names) != len(image.bands):
        raise EngineError(f"Image.rename: Can't rename {len(image.bands)} band(s) with {len(names)} name(s).")
    return image.with_bands(b.replace(name=str(n)) for b, n in zip(image.bands, names, strict=True))


@algorithm("Image.addBands")
def add_bands(dstImg, srcImg, names, overwrite):  # noqa: N803
    dst = as_image("Image.addBands", dstImg)
    src = as_image("Image.addBands", srcImg)
    added = select_bands("Image.addBands", src, names) if names is not None else list(src.bands)
    return dst.with_bands(merge_bands(dst.bands, added, overwrite))


def merge_bands(bands: Sequence[Band], added: Iterable[Band], overwrite: bool) -> list[Band]:
    """``bands`` then ``added``; a name already present is replaced when ``overwrite``, else the added band is
    renamed with a numerical suffix (``foo`` to ``foo_1`` unless ``foo_1`` exists, then ``foo_2``...), as
    Earth Engine's ``Image.addBands`` and ``ImageCollection.combine`` document."""
    out = list(bands)
    for b in added:
        idx = next((i for i, old in enumerate(out) if old.name == b.name), None)
        if idx is None:
            out.append(b)
        elif overwrite:
            out[idx] = b
        else:
            taken = {old.name for old in out}
            n = next(k for k in range(1, len(out) + 2) if f"{b.name}_{k}" not in taken)
            out.append(b.replace(name=f"{b.name}_{n}"))
    return out


@algorithm("Image.bandNames")
def band_names(image):
    return as_image("Image.bandNames", image).band_names


@algorithm("Image.bandTypes")
def band_types(image):
    return {b.name: b.pixel_type for b in as_image("Image.bandTypes", image).bands}


# -- projections --------------------------------------------------------------------


@algorithm("Image.projection")
def projection(image):
    """The first band's projection; an error when bands' projections differ, as on Earth Engine."""
    img = as_image("Image.projection", image)
    projs = {b.proj for b in img.bands}
    if len(projs) > 1:
        raise EngineError(
            "Image.projection: The bands of the specified image contains different projections. "
            "Use Image.select to pick a single band."
        )
    return img.default_projection()


@algorithm("Image.setDefaultProjection")
def set_default_projection(image, crs, crsTransform, scale):  # noqa: N803
    img = as_image("Image.setDefaultProjection", image)
    proj = _projection_from(crs, crsTransform, scale, "Image.setDefaultProjection")
    return img.with_bands(b.replace(proj=proj) for b in img.bands)


def _projection_from(crs: Any, transform: Any, scale: Any, name: str) -> Projection:
    proj = crs if isinstance(crs, Projection) else Projection.coerce(crs)
    if transform is not None and scale is not None:
        raise EngineError(f"{name}: Cannot specify both crsTransform and scale.")
    if transform is not None:
        return Projection.from_crs(proj.crs, transform)
    if scale is not None:
        return _at_scale(proj, float(scale))
    return proj


def _at_scale(proj: Projection, meters: float) -> Projection:
    return at_scale(projection=proj, meters=meters)


@algorithm("Image.reproject")
def reproject(image, crs, crsTransform, scale):  # noqa: N803
    """Force computation in ``crs`` at ``scale`` (or ``crsTransform``), then resample to the request."""
    img = as_image("Image.reproject", image)
    proj = _projection_from(crs, crsTransform, scale, "Image.reproject")
    return img.with_bands(warp_band(b, proj) for b in img.bands)


@algorithm("Image.resample")
def resample(image, mode):
    if mode not in RESAMPLING:
        raise EngineError(f"Image.resample: Unknown resampling mode '{mode}'. Use 'bilinear' or 'bicubic'.")
    img = as_image("Image.resample", image)
    return img.with_bands(with_resampling(b, mode) for b in img.bands)


# -- masks ------------------------------------------------------------------------------


def band_pairs(name: str, left: Image, right: Image) -> list[tuple[Band, Band]]:
    """Earth Engine's band matching: one band pairs with all, else equal counts pair in order."""
    lb, rb = left.bands, right.bands
    if len(rb) == 1:
        return [(b, rb[0]) for b in lb]
    if len(lb) == 1:
        return [(lb[0], b) for b in rb]
    if len(lb) != len(rb):
        raise EngineError(
            f"{name}: Images must contain the same number of bands or only 1 band. Got {len(lb)} and {len(rb)}."
        )
    return list(zip(lb, rb, strict=True))


def _mask_pairs(name: str, image: Image, mask: Image) -> list[tuple[Band, Band]]:
    if len(mask.bands) == 1:
        return [(b, mask.bands[0]) for b in image.bands]
    if len(mask.bands) != len(image.bands):
        raise EngineError(
            f"{name}: The mask must have 1 band or as many bands as the image ({len(image.bands)}); "
            f"it has {len(mask.bands)}."
        )
    return list(zip(image.bands, mask.bands, strict=True))


def _keep_where(x: np.ma.MaskedArray, mk: np.ma.MaskedArray) -> np.ma.MaskedArray:
    keep = ~np.ma.getmaskarray(mk) & (mk.filled(0) != 0)
    return np.ma.MaskedArray(x.data, np.ma.getmaskarray(x) | ~keep)


@algorithm("Image.updateMask")
def update_mask(image, mask):
    """Mask pixels where ``mask`` is zero or masked; existing masks stay; metadata and footprint kept (with the
    footprint, a band's native ``dimensions``: Xee's grid helpers read them from the first image)."""
    img = as_image("Image.updateMask", image)
    m = as_image("Image.updateMask", mask)
    return img.with_bands(
        derive(b.name, [b, mb], _keep_where, b.pixel_type).replace(
            proj=b.proj,
            footprint=b.footprint,
            dimensions=b.dimensions,
            masked_on=_masked_by(b, mb),
            zero_on=_zero_by(b, mb),
        )
        for b, mb in _mask_pairs("Image.updateMask", img, m)
    )


def _masked_by(band: Band, mask: Band) -> Callable[[PixelGrid], bool]:
    """``band.updateMask(mask)`` is masked wherever the band is masked or the mask is zero or masked."""
    return lambda grid: band.surely_masked(grid) or mask.surely_zero(grid)


def _zero_by(band: Band, mask: Band) -> Callable[[PixelGrid], bool]:
    return lambda grid: band.surely_zero(grid) or mask.surely_zero(grid)


@algorithm("Image.mask")
def mask(image, mask):
    """With a mask argument, like updateMask (Earth Engine's deprecated form); without, the mask as 0/1 bands."""
    img = as_image("Image.mask", image)
    if mask is not None:
        return update_mask(image=img, mask=mask)

    def fn(x):
        return np.ma.MaskedArray((~np.ma.getmaskarray(x)).astype(np.float64), np.zeros(x.shape, dtype=bool))

    return img.with_bands(
        derive(b.name, [b], fn, PixelType.int_range(0, 1)).replace(zero_on=b.surely_masked) for b in img.bands
    )


@algorithm("Image.unmask")
def unmask(input, value, sameFootprint):  # noqa: N803
    """Masked pixels take ``value`` (an image or number, default 0); with ``sameFootprint``
    pixels outside the original footprint stay masked."""
    img = as_image("Image.unmask", input)
    fill = value if isinstance(value, Image) else Image([constant_band(0 if value is None else value)])
    out = []
    for b, fb in _mask_pairs("Image.unmask", img, fill):
        band = derive(b.name, [b, fb], _fill_masked, widest(b.pixel_type, fb.pixel_type)).replace(proj=b.proj)
        if sameFootprint and b.footprint is not None:
            band = _clip_band(band, b.footprint).replace(dimensions=b.dimensions)
        else:
            band = band.replace(footprint=None)
        out.append(band)
    return img.with_bands(out)


def _fill_masked(x: np.ma.MaskedArray, f: np.ma.MaskedArray) -> np.ma.MaskedArray:
    mx = np.ma.getmaskarray(x)
    return np.ma.MaskedArray(np.where(mx, f.filled(0), x.data), mx & np.ma.getmaskarray(f))


# -- clipping -----------------------------------------------------------------------------


def geometry_mask(shape_lonlat: shapely.Geometry, grid: PixelGrid) -> np.ndarray:
    """True for pixels whose centre lies inside ``shape_lonlat`` (an EPSG:4326 geometry)."""
    if grid.crs != "EPSG:4326":
        shape = in_crs(Geometry(shape_lonlat), grid.crs, 0.5 * abs(grid.transform[0]) or 1.0)
    else:
        shape = shape_lonlat
    if shape.is_empty:
        return np.zeros(grid.shape, dtype=bool)
    outside = rio_mask(
        [shapely.geometry.mapping(shape)], out_shape=grid.shape, transform=grid.affine, all_touched=False
    )
    return ~outside


def _clip_band(band: Band, shape_lonlat: shapely.Geometry) -> Band:
    footprint = shape_lonlat if band.footprint is None else band.footprint.intersection(shape_lonlat)

    def compute(grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
        x = band.compute(grid, ctx)
        inside = geometry_mask(shape_lonlat, grid)
        return np.ma.MaskedArray(x.data, np.ma.getmaskarray(x) | ~inside)

    return band.replace(compute=compute, footprint=footprint, masked_on=band.surely_masked, zero_on=band.surely_zero)


def geometry_lonlat(value: Any, name: str) -> shapely.Geometry:
    """An EPSG:4326 shapely geometry from a Geometry or Feature argument."""
    geom = value.geometry if isinstance(value, Feature) else value
    if not isinstance(geom, Geometry):
        raise EngineError(f"{name}: expected a Geometry, got {getattr(value, 'ee_type', type(value).__name__)}.")
    return geodesic_lonlat(geom, 1.0) if geom.proj.crs != "EPSG:4326" or geom.geodesic else geom.shape


@algorithm("Image.clip")
def clip(input, geometry):
    img = as_image("Image.clip", input)
    shape = geometry_lonlat(geometry, "Image.clip")
    return img.with_bands(_clip_band(b, shape) for b in img.bands)


def _clip_band_to_bounds(band: Band, shape_lonlat: shapely.Geometry) -> Band:
    """``band`` masked outside the bounding box, in the band's projection, of a lon/lat shape."""
    crs = band.proj.crs
    x0, y0, x1, y1 = bounds_in(shape_lonlat, crs)
    footprint = shapely.box(*shape_lonlat.bounds)
    footprint = footprint if band.footprint is None else band.footprint.intersection(footprint)

    def compute(grid: PixelGrid, ctx: Any) -> np.ma.MaskedArray:
        x = band.compute(grid, ctx)
        xs, ys = grid.pixel_centers()
        if grid.crs != crs:
            xs, ys = (np.asarray(v) for v in transformer(grid.crs, crs).transform(xs, ys))
        inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        return np.ma.MaskedArray(x.data, np.ma.getmaskarray(x) | ~inside)

    return band.replace(compute=compute, footprint=footprint, masked_on=band.surely_masked, zero_on=band.surely_zero)


@algorithm("Image.clipToBoundsAndScale")
def clip_to_bounds_and_scale(input, geometry, width, height, maxDimension, scale):  # noqa: N803
    """Clip to the geometry's bounding box in each band's projection (the docs' rule); exports and
    thumbnails read the requested output size from the ``gee_mining:output_size`` property it
    records. Without a geometry the image keeps its own bounds (``bounds`` is then None)."""
    img = as_image("Image.clipToBoundsAndScale", input)
    if geometry is None:
        out, bounds = img, None
    else:
        shape = geometry_lonlat(geometry, "Image.clipToBoundsAndScale")
        out, bounds = img.with_bands(_clip_band_to_bounds(b, shape) for b in img.bands), list(shape.bounds)
    props = dict(out.properties)
    props["gee_mining:output_size"] = {
        "bounds": bounds,
        "width": width,
        "height": height,
        "maxDimension": maxDimension,
        "scale": scale,
    }
    return out.copy_with(properties=props)


# -- helpers for pixel requests ------------------------------------------------------


def compute_bands(
    image: Image, grid: PixelGrid, ctx: Any, band_ids: Sequence[str] | None = None
) -> dict[str, np.ma.MaskedArray]:
    """Every (or the named) band's pixels on ``grid``, by band name."""
    bands = image.bands if not band_ids else [image.band(n) for n in band_ids]
    return {b.name: b.compute(grid, ctx) for b in bands}


@algorithm("Image.geometry")
def geometry(feature, maxError, proj, geodesics):  # noqa: N803
    """The image's footprint (the union of its bands'), planar in EPSG:4326; an unbounded
    image gives the whole world's rectangle."""
    img = as_image("Image.geometry", feature)
    footprint = img.footprint()
    geom = Geometry(footprint if footprint is not None else shapely.box(-180, -90, 180, 90), geodesic=False)
    if proj is not None:
        return geometry_algorithm("transform")(geometry=geom, proj=proj, maxError=maxError, geodesic=geodesics)
    if geodesics:
        return Geometry(geom.shape, geom.proj, geodesic=True)
    return geom


@promotion("ImageCollection", "FeatureCollection")
def _images_of(value: FeatureCollection) -> Any:
    """ee.ImageCollection(fc) is only a cast on Earth Engine: a collection of images is one (see ``types``)."""
    if all(isinstance(f, Image) for f in value.features):
        return ImageCollection(value.features, value.properties, value.id)
    return value
