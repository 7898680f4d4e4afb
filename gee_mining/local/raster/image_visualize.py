"""Visualisation: ``Image.visualize`` (data to 8-bit RGB or grey) and ``Image.blend``.

Earth Engine's rules (guide "Image Visualization", ``ee.Image.visualize``,
REST ``VisualizationOptions``):

- ``bands``: the bands to show, 1 or 3; by default the first 3 (or the only one).
- Each band is stretched linearly from ``[min, max]`` to ``[0, 255]`` and
  clamped; ``gain``/``bias`` give the same stretch as ``x * gain + bias``
  (they cannot be combined with min/max). Without either, the stretch follows
  the band's type: floats over [0, 1], integers over the full range of their type.
- ``gamma`` corrects the stretched value ``t`` in [0, 1] as ``t ** (1 / gamma)``.
- ``palette`` (one band only): CSS colour names or hex strings; the stretched
  value runs along the palette, interpolating linearly between neighbours;
  with gain/bias the stretched value is a palette index.
- The output is ``vis-red``, ``vis-green``, ``vis-blue`` (uint8), or one
  ``vis-gray`` band for one band without palette unless ``forceRgbOutput``.
  A pixel is masked where any shown band is masked.
- ``opacity`` scales the output's mask. The local engine's masks are binary,
  so an opacity strictly between 0 and 1 is carried as the image property
  ``gee_mining:opacity``; PNG alpha and ``Image.blend`` use it.

``Image.blend(bottom, top)`` composites ``top`` over ``bottom`` with top's mask
(times its opacity) as alpha: ``top * a + bottom * (1 - a)`` where both are
valid, ``top`` where only top is, ``bottom`` where top is masked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from PIL import ImageColor

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.raster.image import Band, Image, as_image, derive, select_bands
from gee_mining.local.raster.pixeltype import PixelType, widest

VIS_RGB = ("vis-red", "vis-green", "vis-blue")
VIS_GRAY = "vis-gray"
OPACITY_PROPERTY = "gee_mining:opacity"
UINT8 = PixelType.int_range(0, 255)

_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


# -- parameters ---------------------------------------------------------------------


def parse_color(text: Any, name: str = "Image.visualize") -> tuple[int, int, int]:
    """An (r, g, b) triple from a CSS colour name or a hex string with or without '#'."""
    if not isinstance(text, str):
        raise EngineError(f"{name}: Invalid color {text!r}: expected a CSS color name or a hex string.")
    s = text.strip()
    m = _HEX.fullmatch(s)
    if m:
        digits = m.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    hex_value = ImageColor.colormap.get(s.lower())
    if isinstance(hex_value, str):
        return parse_color(hex_value, name)
    raise EngineError(f"{name}: Unknown color '{text}'.")


def parse_palette(palette: Any, name: str = "Image.visualize") -> np.ndarray | None:
    """The palette as an (n, 3) float array, from a list or a comma-separated string."""
    if palette is None:
        return None
    items = palette.split(",") if isinstance(palette, str) else palette
    if not isinstance(items, list | tuple) or not items:
        raise EngineError(f"{name}: The palette must be a non-empty list of colors.")
    return np.array([parse_color(c, name) for c in items], dtype=np.float64)


def _numbers(value: Any, arg: str, count: int, name: str) -> list[float] | None:
    """One number per band from a number, a list, or a comma-separated string (None if absent)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.split(",")]
        except ValueError:
            raise EngineError(f"{name}: Invalid value for '{arg}': {value!r}.") from None
    if isinstance(value, bool) or not isinstance(value, int | float | list | tuple):
        raise EngineError(f"{name}: Invalid value for '{arg}': {value!r}.")
    values = [value] if isinstance(value, int | float) else list(value)
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise EngineError(f"{name}: Invalid value for '{arg}': {value!r}.")
    if len(values) == 1:
        return [float(values[0])] * count
    if len(values) != count:
        raise EngineError(
            f"{name}: The number of values for '{arg}' ({len(values)}) must be 1 or the number of bands ({count})."
        )
    return [float(v) for v in values]


def default_range(ptype: PixelType) -> tuple[float, float]:
    """The stretch without min/max: [0, 1] for floats, the type's full range for integers."""
    if ptype.is_int:
        return float(ptype.min), float(ptype.max)
    return 0.0, 1.0


# -- pixels -------------------------------------------------------------------------


def stretch(x: np.ndarray, lo: float, hi: float, gamma: float) -> np.ndarray:
    """Values mapped linearly from [lo, hi] to [0, 1], clamped, then gamma-corrected."""
    if hi == lo:
        t = (x >= hi).astype(np.float64)
    else:
        t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    if gamma != 1.0:
        t = t ** (1.0 / gamma)
    return t


def to_byte(t: np.ndarray) -> np.ndarray:
    """[0, 1] to 0..255, rounded to the nearest integer (as float64, the engine's pixel carrier)."""
    return np.clip(np.floor(t * 255.0 + 0.5), 0, 255)


def palette_lookup(t: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """(..., 3) colours at positions ``t`` in [0, 1] along the palette, linearly interpolated."""
    n = len(colors)
    if n == 1:
        return np.broadcast_to(colors[0], t.shape + (3,)).copy()
    pos = t * (n - 1)
    i = np.clip(np.floor(pos).astype(np.int64), 0, n - 2)
    f = (pos - i)[..., None]
    return colors[i] * (1.0 - f) + colors[i + 1] * f


def _any_mask(arrays: Sequence[np.ma.MaskedArray]) -> np.ndarray:
    mask = np.ma.getmaskarray(arrays[0]).copy()
    for a in arrays[1:]:
        mask |= np.ma.getmaskarray(a)
    return mask


# -- Image.visualize ----------------------------------------------------------------


def visualize_image(
    img: Image,
    bands: Any = None,
    gain: Any = None,
    bias: Any = None,
    min: Any = None,  # noqa: A002 - Earth Engine's argument names
    max: Any = None,  # noqa: A002
    gamma: Any = None,
    opacity: Any = None,
    palette: Any = None,
    force_rgb: bool = False,
    name: str = "Image.visualize",
) -> Image:
    """The visualisation of ``img`` (see the module docstring for the rules)."""
    shown = _shown_bands(img, bands, name)
    colors = parse_palette(palette, name)
    if colors is not None and len(shown) != 1:
        raise EngineError(f"{name}: Cannot provide a palette when visualizing more than one band.")
    n = len(shown)
    ranges = _stretch_ranges(shown, gain, bias, min, max, 255.0 if colors is None else float(len(colors) - 1), name)
    gammas = _numbers(gamma, "gamma", n, name) or [1.0] * n
    if any(g <= 0 for g in gammas):
        raise EngineError(f"{name}: The gamma must be positive.")
    out = _visual_bands(shown, colors, ranges, gammas, force_rgb)
    footprint = shapely.intersection_all([b.footprint for b in shown]) if all(b.footprint for b in shown) else None
    out = [b.replace(footprint=footprint) for b in out]
    props = dict(img.properties)
    if opacity is not None:
        if isinstance(opacity, bool) or not isinstance(opacity, int | float) or not 0 <= opacity <= 1:
            raise EngineError(f"{name}: The opacity must be a number between 0 and 1, got {opacity!r}.")
        if opacity == 0:
            out = [_masked_everywhere(b) for b in out]
        elif opacity < 1:
            props[OPACITY_PROPERTY] = float(props.get(OPACITY_PROPERTY, 1.0)) * float(opacity)
    return Image(out, props, img.id)


def _shown_bands(img: Image, bands: Any, name: str) -> list[Band]:
    """The bands a visualisation shows: those named, else the first three (or the only one or two)."""
    if bands is not None and not (isinstance(bands, list | tuple) and len(bands) == 0):
        selectors = bands.split(",") if isinstance(bands, str) else list(bands)
        shown = select_bands(name, img, [s.strip() if isinstance(s, str) else s for s in selectors])
    elif len(img.bands) >= 3:
        shown = list(img.bands[:3])
    else:
        shown = list(img.bands)
    if len(shown) not in (1, 3):
        raise EngineError(f"{name}: Expected 1 or 3 bands to visualize, but got {len(shown)}.")
    return shown


def _stretch_ranges(
    shown: list[Band],
    gain: Any,
    bias: Any,
    min: Any,  # noqa: A002 - Earth Engine's argument names
    max: Any,  # noqa: A002
    value_range: float,
    name: str,
) -> list[tuple[float, float]]:
    """Each shown band's (low, high) values: from gain and bias, from min and max, or its type's default."""
    n = len(shown)
    gains, biases = _numbers(gain, "gain", n, name), _numbers(bias, "bias", n, name)
    mins, maxes = _numbers(min, "min", n, name), _numbers(max, "max", n, name)
    if (gains or biases) and (mins or maxes):
        raise EngineError(f"{name}: Gain and bias cannot be specified together with min and max.")
    ranges: list[tuple[float, float]] = []
    for i, band in enumerate(shown):
        if gains or biases:
            g = gains[i] if gains else 1.0
            b = biases[i] if biases else 0.0
            if g == 0:
                raise EngineError(f"{name}: The gain must not be zero.")
            lo = -b / g
            ranges.append((lo, lo + value_range / g))
        elif mins or maxes:
            ranges.append((mins[i] if mins else 0.0, maxes[i] if maxes else 1.0))
        else:
            ranges.append(default_range(band.pixel_type))
    return ranges


def _visual_bands(
    shown: list[Band], colors: Any, ranges: list[tuple[float, float]], gammas: list[float], force_rgb: bool
) -> list[Band]:
    """The byte bands of the visualisation: a palette's red, green and blue, or the stretched grays."""
    n = len(shown)
    if colors is not None:
        (lo, hi), gm = ranges[0], gammas[0]

        def channel(k: int):
            def fn(x: np.ma.MaskedArray) -> np.ma.MaskedArray:
                rgb = palette_lookup(stretch(x.data, lo, hi, gm), colors)
                return np.ma.MaskedArray(np.clip(np.floor(rgb[..., k] + 0.5), 0, 255), np.ma.getmaskarray(x))

            return fn

        return [derive(VIS_RGB[k], shown, channel(k), UINT8) for k in range(3)]

    def gray(i: int):
        (lo, hi), gm = ranges[i], gammas[i]

        def fn(*xs: np.ma.MaskedArray) -> np.ma.MaskedArray:
            return np.ma.MaskedArray(to_byte(stretch(xs[i].data, lo, hi, gm)), _any_mask(xs))

        return fn

    if n == 1 and not force_rgb:
        return [derive(VIS_GRAY, shown, gray(0), UINT8)]
    idx = [0, 0, 0] if n == 1 else [0, 1, 2]
    return [derive(VIS_RGB[k], shown, gray(idx[k]), UINT8) for k in range(3)]


def _masked_everywhere(band: Band) -> Band:
    def fn(x: np.ma.MaskedArray) -> np.ma.MaskedArray:
        return np.ma.MaskedArray(x.data, np.ones(x.shape, dtype=bool))

    return derive(band.name, [band], fn, band.pixel_type).replace(footprint=band.footprint)


def opacity_of(img: Image) -> float:
    """The image's overall opacity (1 unless a visualisation with ``opacity`` made it)."""
    return float(img.properties.get(OPACITY_PROPERTY, 1.0))


@algorithm("Image.visualize")
def visualize(image, bands, gain, bias, min, max, gamma, opacity, palette, forceRgbOutput):  # noqa: A002, N803
    return visualize_image(
        as_image("Image.visualize", image),
        bands=bands,
        gain=gain,
        bias=bias,
        min=min,
        max=max,
        gamma=gamma,
        opacity=opacity,
        palette=palette,
        force_rgb=bool(forceRgbOutput),
    )


# -- Image.blend --------------------------------------------------------------------


@algorithm("Image.blend")
def blend(bottom, top):
    """``top`` over ``bottom`` with top's mask (times its opacity) as alpha.

    A single-band image is replicated to the other's band count; band names
    are the bottom's (the top's when the bottom was replicated).
    """
    lower = as_image("Image.blend", bottom)
    upper = as_image("Image.blend", top)
    lb, ub = list(lower.bands), list(upper.bands)
    if not lb or not ub:
        raise EngineError("Image.blend: Both images must have at least one band.")
    if len(lb) == 1 and len(ub) > 1:
        names = [b.name for b in ub]
        lb = lb * len(ub)
    else:
        names = [b.name for b in lb]
        if len(ub) == 1:
            ub = ub * len(lb)
    if len(lb) != len(ub):
        raise EngineError(
            f"Image.blend: Images must contain the same number of bands or only 1 band. Got {len(lb)} and {len(ub)}."
        )
    if opacity_of(lower) != 1.0:
        raise EngineError(
            "Image.blend: a bottom image with a fractional opacity gives fractional masks, "
            "which the local engine does not represent."
        )
    alpha = opacity_of(upper)

    def fn(b: np.ma.MaskedArray, t: np.ma.MaskedArray) -> np.ma.MaskedArray:
        bm, tm = np.ma.getmaskarray(b), np.ma.getmaskarray(t)
        if alpha < 1.0 and np.any(bm & ~tm):
            raise EngineError(
                "Image.blend: where the bottom image is masked, a top image with a fractional opacity gives "
                "fractional masks, which the local engine does not represent."
            )
        mixed = t.data * alpha + b.data * (1.0 - alpha)
        return np.ma.MaskedArray(np.where(tm, b.data, mixed), bm & tm)

    out = []
    for name, bb, tb in zip(names, lb, ub, strict=True):
        fp = None if bb.footprint is None or tb.footprint is None else shapely.union(bb.footprint, tb.footprint)
        ptype = widest(bb.pixel_type, tb.pixel_type)
        if alpha < 1.0 and ptype.is_int:
            ptype = PixelType("float")
        out.append(derive(name, [bb, tb], fn, ptype).replace(proj=bb.proj, footprint=fp))
    props = {k: v for k, v in lower.properties.items() if k != OPACITY_PROPERTY}
    return Image(out, props, lower.id)
