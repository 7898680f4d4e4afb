"""Projection: a CRS plus an affine transform (Earth Engine's ``ee.Projection``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyproj

from .errors import EngineError

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@functools.lru_cache(maxsize=256)
def crs_object(crs: str) -> pyproj.CRS:
    """A pyproj CRS for an EPSG code or WKT, cached; bad input gets EE's wording."""
    try:
        return pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError:
        raise EngineError(f"Projection: Unknown projection '{crs}'.") from None


@dataclass(frozen=True)
class Projection:
    """``crs`` is an ``EPSG:n`` code or WKT; ``transform`` maps projected units to
    the projection's pixels' inverse: ``[scaleX, shearX, translateX, shearY,
    scaleY, translateY]`` as Earth Engine writes it (from pixel to crs units)."""

    crs: str = "EPSG:4326"
    transform: tuple[float, float, float, float, float, float] = IDENTITY

    ee_type = "Projection"

    @classmethod
    def from_crs(cls, crs: str, transform=None) -> Projection:
        crs_object(crs)
        if transform is None:
            return cls(crs)
        if len(transform) != 6:
            raise EngineError("Projection: the transform must have 6 numbers.")
        return cls(crs, tuple(float(t) for t in transform))

    @property
    def pyproj_crs(self) -> pyproj.CRS:
        return crs_object(self.crs)

    @property
    def is_geographic(self) -> bool:
        return self.pyproj_crs.is_geographic

    @property
    def is_wgs84(self) -> bool:
        return self.crs.upper() in ("EPSG:4326", "WGS84") and self.transform == IDENTITY

    def to_info(self) -> dict:
        info = {"type": "Projection"}
        if self.crs.upper().startswith("EPSG:"):
            info["crs"] = self.crs
        else:
            info["wkt"] = self.crs
        info["transform"] = list(self.transform)
        return info


WGS84 = Projection()
