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

    def __post_init__(self) -> None:
        pools = ("soil", "upper_soil", "bright_soil", "dark_soil")
        if self.mine_soil_pool not in pools or self.crop_soil_pool not in pools:
            raise ValueError(f"soil pools {self.mine_soil_pool!r}/{self.crop_soil_pool!r}: one of {pools}.")
        if self.spectra_per_material < 1:
            raise ValueError(f"spectra_per_material {self.spectra_per_material}: at least 1.")
        for k in ("soil_under_canopy", "remnants", "haze_scenes"):
            if not 0 <= getattr(self, k) <= 0.5 + 0.5 * (k == "haze_scenes"):
                raise ValueError(f"{k} {getattr(self, k)}: a share in [0, 0.5] (haze_scenes: [0, 1]).")

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
    deviation) of horizontally neighbouring differences, / sqrt 2 (the per-pixel variation, robust to edges)."""
    d = np.diff(np.asarray(b8, dtype=np.float64), axis=1).ravel()
    return float(np.median(np.abs(d - np.median(d))) * 1.4826 / np.sqrt(2))


def index_percentiles(a, b, q=(5, 50, 95)) -> list[float]:
    """Percentiles ``q`` of the normalised difference (a - b) / (a + b) of two reflectance arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = ((a - b) / (a + b)).ravel()
    return [round(float(v), 3) for v in np.nanpercentile(x, q)]
