"""How hard a simulated world is: the knobs that separate an easy world from one that resembles Sentinel-2.

The first simulated world made mines easy to find and every figure measured on it flattering (issue 25): each
material painted from 5 library spectra, mine soil drawn from the brightest quarter of the soils, every pixel
inside a polygon mine material, perfect Cloud Score+ flags, NIR texture about half of real Sentinel-2's, and
vegetation whose NBR2 reaches 0.6 (real patches: at most 0.39). :data:`EASY` keeps that world byte for byte (the
tests and the demo that assert exact pixels use it); :data:`HARD` turns every knob, and is what the out-of-sample
evaluations (``gee-mining evaluate``) build. Each knob is a plain number so a study can turn one at a time.

The targets were measured on the real Level-2A patches in ``../shared/data`` (``bench/world_stats.py`` measures
both sides; the table is in docs/world.md): NIR texture (robust standard deviation of neighbouring B8
differences, / sqrt 2) 0.009-0.014 on the five snow-free BigEarthNet patches, NBR2 95th percentile 0.36-0.39.

The hard world also has what the easy one never shows: mines from 0.005 to 20 km2 (capped at 5 % of the world),
clusters of artisanal pits (0.005-0.05 km2) strung along the river with turbid water below them, camps of roofs
inside some mine polygons, crop fields bare from harvest through winter, and snow on higher ground in some
December-March scenes, which the cloud products confuse with cloud both ways (``snow_cs_false``,
``snow_cloud_miss``). The simulated world borrows that temperate winter whatever its latitude: the point is that
models meet snow, as they do on the real February scenes in ``../shared/data``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Realism:
    """The knobs of a simulated world's difficulty (see the module's docstring). Defaults: the easy world."""

    name: str = "easy"
    spectra_per_material: int = 5  # library spectra drawn per material (and per season end for vegetation)
    mine_soil_pool: str = "bright_soil"  # "upper_soil": the brighter half of the soils, which natural soil overlaps
    crop_soil_pool: str = "dark_soil"  # "soil": bare fields between crops show any soil, mine-like ones too
    natural_soil_bias: float = -0.75  # land-use score of natural bare soil (higher: more of it)
    soil_under_canopy: float = 0.0  # mean share of soil seen through vegetation (mixed pixels), 0..0.5
    speckle: float = 0.0  # per-pixel surface texture: sd of a multiplicative brightness factor, fixed in time
    remnants: float = 0.0  # share of a mine polygon left as it was (vegetation, water) in patches
    ragged_edge_m: float = 0.0  # mine material wanders this far in and out of the polygon's outline
    cs_thin_miss: float = 0.0  # Cloud Score+ misses thin cloud below this opacity (truth thin cloud: >= 0.03)
    cs_shadow_miss: float = 0.0  # Cloud Score+ misses shadow below this strength (truth shadow: >= 0.08)
    haze_scenes: float = 0.0  # share of scenes with haze no cloud product flags
    haze_max: float = 0.0  # haze's largest added blue reflectance (falls with wavelength)
    smallest_mine_km2: float = 0.01  # generated mines' areas: log-normal around 0.23 km2, clipped to these bounds
    largest_mine_km2: float = 0.0  # 0: 2 % of the world's area; else this, but at most 5 % of the world's area
    mine_area_sigma: float = 1.1  # sigma of the log-normal mine areas (wider: more tiny and more huge mines)
    artisanal_per_100km2: float = 0.0  # clusters of small pits strung along the river (at least one when > 0)
    mine_buildings: float = 0.0  # share of mines over 0.05 km2 with a camp of roofs inside the polygon
    seasonal_crops: float = 0.0  # share of crop fields sown in spring (bare from autumn harvest through winter)
    snow_scenes: float = 0.0  # share of December-March scenes with snow on the world's higher ground
    snow_cs_false: float = 0.0  # share of snow pixels Cloud Score+ flags as cloud (SCL: half of it, as cloud)
    snow_cloud_miss: float = 0.0  # cloud over snow thinner than this opacity: Cloud Score+ and SCL miss it
    urban_pool: str = "narrow"  # "wide": metal, tile, painted roofs; sidewalks, driveways (some as bright as mines)
    villages: int = 1  # villages (roofs and paved roads), the first drawn as the easy world draws it

    def __post_init__(self) -> None:
        pools = ("soil", "upper_soil", "bright_soil", "dark_soil")
        if self.mine_soil_pool not in pools or self.crop_soil_pool not in pools:
            raise ValueError(f"soil pools {self.mine_soil_pool!r}/{self.crop_soil_pool!r}: one of {pools}.")
        if self.urban_pool not in ("narrow", "wide") or self.villages < 1:
            raise ValueError(
                f"urban_pool {self.urban_pool!r} / villages {self.villages}: 'narrow' or 'wide' / 1 or more."
            )
        if self.spectra_per_material < 1:
            raise ValueError(f"spectra_per_material {self.spectra_per_material}: at least 1.")
        for k in ("soil_under_canopy", "remnants", "haze_scenes", "mine_buildings", "seasonal_crops", "snow_scenes",
                  "snow_cs_false"):  # fmt: skip
            top = 0.5 if k in ("soil_under_canopy", "remnants") else 1.0
            if not 0 <= getattr(self, k) <= top:
                raise ValueError(f"{k} {getattr(self, k)}: a share in [0, {top:g}].")
        lo, hi = self.smallest_mine_km2, self.largest_mine_km2
        if not (0 < lo and (hi == 0 or lo < hi)):
            raise ValueError(f"mine areas {self.smallest_mine_km2}-{self.largest_mine_km2} km2: 0 < smallest < largest "
                             "(largest 0: 2 % of the world).")  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


EASY = Realism()
HARD = Realism(
    name="hard",
    spectra_per_material=25,
    mine_soil_pool="upper_soil",
    crop_soil_pool="soil",
    natural_soil_bias=-0.65,
    soil_under_canopy=0.25,
    speckle=0.02,
    remnants=0.12,
    ragged_edge_m=30.0,
    cs_thin_miss=0.08,
    cs_shadow_miss=0.14,
    haze_scenes=0.3,
    haze_max=0.04,
    smallest_mine_km2=0.005,
    largest_mine_km2=20.0,
    mine_area_sigma=1.4,
    artisanal_per_100km2=1.0,
    mine_buildings=0.3,
    seasonal_crops=0.7,
    snow_scenes=0.35,
    snow_cs_false=0.15,
    snow_cloud_miss=0.25,
    urban_pool="wide",
    villages=3,
)
REALISMS = {r.name: r for r in (EASY, HARD)}


def realism_of(value: str | Realism | None) -> Realism:
    """A :class:`Realism` from its name (``"easy"``, ``"hard"``), itself, or None (easy)."""
    if value is None:
        return EASY
    if isinstance(value, Realism):
        return value
    if value not in REALISMS:
        raise ValueError(f"realism {value!r}: one of {', '.join(REALISMS)}.")
    return REALISMS[value]


def nir_texture(b8) -> float:
    """NIR texture of a B8 reflectance array: the robust standard deviation (1.4826 x the median absolute
    deviation) of horizontally neighbouring differences, / sqrt 2 (the per-pixel variation, robust to edges).
    NaN pixels (masked out) are left out."""
    d = np.diff(np.asarray(b8, dtype=np.float64), axis=1).ravel()
    d = d[np.isfinite(d)]
    return float(np.median(np.abs(d - np.median(d))) * 1.4826 / np.sqrt(2))


def index_percentiles(a, b, q=(5, 50, 95)) -> list[float]:
    """Percentiles ``q`` of the normalised difference (a - b) / (a + b) of two reflectance arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = ((a - b) / (a + b)).ravel()
    return [round(float(v), 3) for v in np.nanpercentile(x, q)]
