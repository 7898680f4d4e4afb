"""The world's manifest: what was generated, from what, and what is simulated."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WORLD_PACKAGE = Path(__file__).resolve().parent


def generator_digest(package: Path = WORLD_PACKAGE) -> str:
    """A digest of the world generator's source (every ``.py`` file of ``package``, by name and content).

    Worlds are deterministic for a seed and settings *and* code: an evaluation that reuses a prepared world
    (``io.prepared``) keys it on this too, so a world made by older generator code is rebuilt, not reused."""
    h = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


SIMULATED = [
    "Every Sentinel-2 scene (COPERNICUS/S2_SR_HARMONIZED items with GEE_MINING_SIMULATED = true): no pixel is a "
    "real observation. Surfaces are earthlib library spectra resampled to Sentinel-2 bands, scaled by a texture "
    "factor, mixed towards green canopy spectra by a simulated phenology, plus Gaussian noise (sigma 0.004).",
    "Water reflectance: modelled band values (earthlib has no water spectra).",
    "Clouds, cirrus and shadows: random fields; their reflectance is a fixed bright cloud spectrum.",
    "SCL, MSK_CLDPRB, QA60, Cloud Score+ (cs, cs_cdf) and s2cloudless probability: derived from the simulated "
    "clouds by rules that imitate each product, including the misses of SCL and QA60 on thin or small clouds.",
    "ESA/WorldCover/v200: the simulated land-cover map the scenes were drawn from, not ESA's product.",
    "Scene metadata (times on the real 5-day rhythm, orbit, angles, ids in Earth Engine's form).",
]
REAL = [
    "Country boundaries (USDOS/LSIB_SIMPLE/2017): Natural Earth 1:110m countries (public domain), columns renamed "
    "to LSIB's (country_na = name, country_co = ISO 3166 alpha-3 (LSIB uses FIPS codes), wld_rgn = continent).",
    "Surface spectra: measured soil, sand, gravel, litter and built-surface spectra of earthlib; its canopy spectra "
    "are PROSAIL model runs.",
]


@dataclass
class WorldManifest:
    """What ``generate_world`` wrote (also saved as ``manifest.json`` beside the catalog)."""

    out_dir: str
    catalog: str
    seed: int
    parameters: dict[str, Any]
    grid: dict[str, Any]
    mgrs_tile: str
    scenes: list[dict[str, Any]]
    polygons: dict[str, Any]
    sources: dict[str, Any]
    spectra: dict[str, list[str]]
    asset_ids: dict[str, str]
    simulated: list[str] = field(default_factory=lambda: list(SIMULATED))
    real: list[str] = field(default_factory=lambda: list(REAL))
    truth: dict[str, Any] = field(default_factory=dict)
    timing_s: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def read(cls, path: str | Path) -> WorldManifest:
        data = json.loads(Path(path).read_text())
        return cls(**data)
