"""Projection: a CRS plus an affine transform (Earth Engine's ``ee.Projection``).

The transform maps projected coordinates ("pixels") to the base CRS, in Earth
Engine's order ``[scaleX, shearX, translateX, shearY, scaleY, translateY]``:
``x = scaleX*u + shearX*v + translateX``, ``y = shearY*u + scaleY*v + translateY``.
``atScale`` and ``scale`` compose a scaling *before* that transform, so the
grid of a scaled projection stays aligned on the base CRS origin (a UTM
projection ``atScale(5500)`` has cell corners at multiples of 5500 m).

Pyproj objects are cached by CRS string (:func:`crs_object`, :func:`transformer`)
because building them costs far more than using them.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import pyproj

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.core.types import promotion, signature_default

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

# Earth Engine's nominal length of one degree: the equatorial circumference of
# the WGS84 sphere (2 * pi * 6378137 m) over 360.
METERS_PER_DEGREE = 2 * math.pi * 6378137.0 / 360.0


def _normalise_crs(crs: str) -> str:
    text = crs.strip()
    if re.fullmatch(r"(?i)epsg:\d+", text):
        return text.upper()
    return text


@functools.lru_cache(maxsize=512)
def crs_object(crs: str) -> pyproj.CRS:
    """A pyproj CRS for an EPSG code, PROJ string or WKT, cached; bad input gets EE's wording."""
    try:
        return pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError:
        raise EngineError(f"Projection: Unknown projection '{crs}'.") from None


LOCAL_PREFIX = "+proj=aeqd "


@functools.lru_cache(maxsize=4096)
def is_geographic(crs: str) -> bool:
    """Whether ``crs`` has longitude/latitude coordinates (fast for the common cases)."""
    if crs == "EPSG:4326":
        return True
    if crs.startswith(LOCAL_PREFIX):
        return False
    return crs_object(crs).is_geographic


@functools.lru_cache(maxsize=4096)
def transformer(src: str, dst: str) -> pyproj.Transformer:
    """A cached ``always_xy`` transformer between two CRS strings.

    Between EPSG:4326 and a local AEQD (``+proj=aeqd ... +ellps=WGS84``, no datum
    shift) the transformer is built from a PROJ pipeline, which costs 0.1 ms
    instead of the 10 ms of an operation search: there is one such CRS per
    locality, so this keeps many-feature maps fast."""
    if src == "EPSG:4326" and dst.startswith(LOCAL_PREFIX):
        return pyproj.Transformer.from_pipeline(_aeqd_pipeline(dst))
    if dst == "EPSG:4326" and src.startswith(LOCAL_PREFIX):
        return pyproj.Transformer.from_pipeline(_aeqd_pipeline(src, inverse=True))
    return pyproj.Transformer.from_crs(crs_object(src), crs_object(dst), always_xy=True)


def _aeqd_pipeline(local: str, inverse: bool = False) -> str:
    params = local.replace(" +type=crs", "")
    if inverse:
        return f"+proj=pipeline +step +inv {params} +step +proj=unitconvert +xy_in=rad +xy_out=deg"
    return f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step {params}"


@functools.lru_cache(maxsize=512)
def meters_per_unit(crs: str) -> float:
    """Metres in one unit of ``crs``'s first axis (degrees count as Earth Engine counts them)."""
    if crs.startswith(LOCAL_PREFIX):
        return 1.0
    obj = crs_object(crs)
    if obj.is_geographic:
        return METERS_PER_DEGREE
    axes = obj.axis_info
    if axes and axes[0].unit_conversion_factor:
        return float(axes[0].unit_conversion_factor)
    return 1.0


@dataclass(frozen=True)
class Projection:
    """``crs`` is an ``EPSG:n`` code, a PROJ string or WKT; ``transform`` maps the
    projection's coordinates to the base CRS (Earth Engine's six numbers)."""

    crs: str = "EPSG:4326"
    transform: tuple[float, float, float, float, float, float] = IDENTITY

    ee_type = "Projection"

    @classmethod
    def from_crs(cls, crs: str, transform=None) -> Projection:
        crs = _normalise_crs(crs)
        crs_object(crs)
        if transform is None:
            return cls(crs)
        if len(transform) != 6:
            raise EngineError("Projection: The transform must have 6 elements.")
        return cls(crs, tuple(float(t) for t in transform))

    @classmethod
    def coerce(cls, value: Any) -> Projection:
        """A Projection from a Projection, a CRS string or its getInfo dictionary."""
        if isinstance(value, Projection):
            return value
        if isinstance(value, str):
            return cls.from_crs(value)
        if isinstance(value, dict) and value.get("type") == "Projection":
            return cls.from_crs(value.get("crs") or value.get("wkt"), value.get("transform"))
        raise EngineError(f"Projection: Invalid projection {value!r}.")

    @property
    def pyproj_crs(self) -> pyproj.CRS:
        return crs_object(self.crs)

    @property
    def is_geographic(self) -> bool:
        return is_geographic(self.crs)

    @property
    def is_wgs84(self) -> bool:
        return self.crs.upper() in ("EPSG:4326", "WGS84") and self.transform == IDENTITY

    @property
    def is_identity(self) -> bool:
        return self.transform == IDENTITY

    @property
    def base(self) -> Projection:
        """The CRS alone, with the identity transform."""
        return self if self.is_identity else Projection(self.crs)

    @property
    def linear_scale(self) -> float:
        """Base CRS units per projection unit: the square root of the transform's determinant."""
        a, b, _, d, e, _ = self.transform
        return math.sqrt(abs(a * e - b * d))

    def nominal_scale(self) -> float:
        """Metres per projection unit at the point of true scale."""
        return meters_per_unit(self.crs) * self.linear_scale

    def scaled(self, x: float, y: float) -> Projection:
        a, b, c, d, e, f = self.transform
        return Projection(self.crs, (a * x, b * y, c, d * x, e * y, f))

    def translated(self, x: float, y: float) -> Projection:
        a, b, c, d, e, f = self.transform
        return Projection(self.crs, (a, b, c + a * x + b * y, d, e, f + d * x + e * y))

    def forward(self) -> tuple[float, float, float, float, float, float]:
        """The transform in shapely's ``affine_transform`` order (projection units to base CRS)."""
        a, b, c, d, e, f = self.transform
        return (a, b, d, e, c, f)

    def inverse(self) -> tuple[float, float, float, float, float, float]:
        """Shapely ``affine_transform`` parameters from base CRS to projection units."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        if det == 0:
            raise EngineError("Projection: The transform is not invertible.")
        ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
        return (ia, ib, id_, ie, -(ia * c + ib * f), -(id_ * c + ie * f))

    def authority_code(self) -> str | None:
        if re.fullmatch(r"EPSG:\d+", self.crs):
            return self.crs
        auth = self.pyproj_crs.to_authority()
        return f"{auth[0]}:{auth[1]}" if auth else None

    def to_info(self) -> dict:
        info: dict[str, Any] = {"type": "Projection"}
        if re.fullmatch(r"EPSG:\d+", self.crs):
            info["crs"] = self.crs
        else:
            info["wkt"] = self.crs
        info["transform"] = [_plain_number(t) for t in self.transform]
        return info


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


WGS84 = Projection()


def _affine_wkt(transform: tuple[float, ...]) -> str:
    """The OGC ``PARAM_MT["Affine", ...]`` text of a transform; elements equal to
    the identity's are left out, as OGC WKT 1 writers do."""
    a, b, c, d, e, f = transform
    elements = {(0, 0): a, (0, 1): b, (0, 2): c, (1, 0): d, (1, 1): e, (1, 2): f}
    params = ['PARAM_MT["Affine", ', '  PARAMETER["num_row", 3], ', '  PARAMETER["num_col", 3]']
    for (row, col), value in elements.items():
        if value != (1.0 if row == col else 0.0):
            params[-1] += ", "
            params.append(f'  PARAMETER["elt_{row}_{col}", {float(value)!r}]')
    return "\n".join(params) + "]"


def _parse_affine_wkt(text: str) -> tuple[float, ...]:
    if "Affine" not in text:
        raise EngineError(f"Projection: Unable to parse the transform WKT '{text}'.")
    values = {(0, 0): 1.0, (0, 1): 0.0, (0, 2): 0.0, (1, 0): 0.0, (1, 1): 1.0, (1, 2): 0.0}
    for row, col, num in re.findall(r'"elt_(\d)_(\d)"\s*,\s*([-+0-9.eE]+)', text):
        key = (int(row), int(col))
        if key in values:
            values[key] = float(num)
    return tuple(values[k] for k in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)])


# -- algorithms -----------------------------------------------------------------


@algorithm("Projection")
def projection(crs, transform, transformWkt):  # noqa: N803 - Earth Engine's argument names
    """``crs`` may be a code, WKT or a Projection (whose base CRS is kept)."""
    if isinstance(crs, Projection):
        crs = crs.crs
    if not isinstance(crs, str):
        raise EngineError(f"Projection: Invalid projection {crs!r}.")
    if transform is not None and transformWkt is not None:
        raise EngineError("Projection: Only one of 'transform' and 'transformWkt' may be specified.")
    if transformWkt is not None:
        transform = _parse_affine_wkt(transformWkt)
    if transform is not None:
        if len(transform) != 6 or not all(isinstance(t, int | float) for t in transform):
            raise EngineError("Projection: The transform must be a list of 6 numbers.")
    return Projection.from_crs(crs, transform)


@algorithm("Projection.atScale")
def at_scale(projection, meters):
    k = meters / projection.nominal_scale()
    return projection.scaled(k, k)


@algorithm("Projection.crs")
def crs(projection):
    return projection.authority_code()


@algorithm("Projection.nominalScale")
def nominal_scale(proj):
    return proj.nominal_scale()


@algorithm("Projection.scale")
def scale(projection, x, y):
    return projection.scaled(x, y)


@algorithm("Projection.translate")
def translate(projection, x, y):
    return projection.translated(x, y)


@algorithm("Projection.transform")
def transform_wkt(projection):
    return _affine_wkt(projection.transform)


@algorithm("Projection.wkt")
def wkt(projection):
    return projection.pyproj_crs.to_wkt(pyproj.enums.WktVersion.WKT1_GDAL)


# the promotions and signature defaults the argument checks apply (see ``types``)
promotion("Projection", "String")(Projection.from_crs)


@signature_default("Projection")
def _default_projection(default: dict) -> Projection:
    return Projection.from_crs(default["crs"], default.get("transform"))
