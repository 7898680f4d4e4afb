"""Surface spectra for the simulated world: earthlib's library resampled to Sentinel-2.

earthlib (MIT) ships 7,261 spectra at 10 nm from 0.40 to 2.45 um (water-vapour
gaps removed): measured soils (ICRAF-ISRIC), measured built surfaces, sand,
gravel and non-photosynthetic vegetation (ASD field spectra), and PROSAIL
canopy spectra (modelled, named ``v-LAI-...``). Its ``Sentinel2`` sensor covers
ten bands; B1 (443 nm) and B9 (945 nm) are added here with ESA's Sentinel-2A
centres and widths, and every spectrum is resampled with earthlib's own
``Spectra.to_sensor`` (Gaussian response functions, ``spectral.BandResampler``).

Water is not in earthlib: the two water spectra below are modelled band values
(clear inland water and sediment-laden pit water), labelled as such in the
manifest. Everything else a scene shows traces back to a library spectrum.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

import earthlib
import numpy as np
from earthlib.sensors import Sensor, Sentinel2

from gee_mining.contracts.bands import BANDS
from gee_mining.contracts.datasets import S2_SR

BAND_RES = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10, "B8A": 20, "B9": 60}
BAND_RES.update({"B11": 20, "B12": 20})
# ESA Sentinel-2A spectral response summary (centre, width in um) for the two bands earthlib's sensor lacks.
EXTRA_BANDS = {"B1": (0.4427, 0.021), "B9": (0.9451, 0.020)}

# Modelled water reflectance (not from earthlib): typical inland-water curves, falling to ~0 in the SWIR.
WATER_SPECTRA = {
    "modelled:clear_water": [0.045, 0.050, 0.060, 0.040, 0.035, 0.020, 0.015, 0.012, 0.010, 0.006, 0.004, 0.003],
    "modelled:turbid_pit_water": [0.060, 0.070, 0.100, 0.110, 0.100, 0.060, 0.050, 0.045, 0.040, 0.020, 0.008, 0.005],
}


@dataclass(frozen=True)
class Library:
    """earthlib's spectra resampled to the 12 Sentinel-2 L2A reflectance bands (rows: spectra, columns: BANDS)."""

    names: tuple[str, ...]
    level3: tuple[str, ...]
    source: tuple[str, ...]
    values: np.ndarray  # float32, reflectance 0..1
    version: str

    def where(self, *level3: str) -> np.ndarray:
        return np.flatnonzero(np.isin(np.array(self.level3), level3))


def s2_sensor():
    """earthlib's Sentinel2 sensor with B1 and B9 added, in BANDS order."""

    centres = dict(zip(Sentinel2.band_names, Sentinel2.band_centers, strict=True))
    widths = dict(zip(Sentinel2.band_names, Sentinel2.band_widths, strict=True))
    for band, (c, w) in EXTRA_BANDS.items():
        centres[band], widths[band] = c, w
    return Sensor(
        name="Sentinel2_L2A_12",
        band_names=list(BANDS),
        band_centers=[float(centres[b]) for b in BANDS],
        band_widths=[float(widths[b]) for b in BANDS],
        collection=S2_SR,
        scale=0.0001,
    )


@lru_cache(maxsize=1)
def library() -> Library:
    """The whole earthlib library resampled to Sentinel-2 (computed once per process, ~1 s; no network)."""

    full = earthlib.full_library
    resampled = full.to_sensor(s2_sensor())
    meta = full.metadata
    return Library(
        names=tuple(full.names),
        level3=tuple(meta["LEVEL_3"].astype(str)),
        source=tuple(meta["SOURCE"].astype(str)),
        values=np.clip(np.asarray(resampled.data, dtype=np.float32), 0.0, 1.0),
        version=earthlib.__version__,
    )


def lai(name: str) -> float | None:
    """Leaf area index of a PROSAIL canopy spectrum from its name (``v-LAI-3.9-...``)."""
    m = re.match(r"v-LAI-([0-9.]+)-", name)
    return float(m.group(1)) if m else None


# Materials of the simulated world: id -> (name, WorldCover class).
MATERIALS = {
    0: ("forest", 10),
    1: ("shrub", 20),
    2: ("grass", 30),
    3: ("crop", 40),
    4: ("roof", 50),
    5: ("paved_road", 50),
    6: ("natural_soil", 60),
    7: ("natural_rock", 60),
    8: ("water", 80),
    9: ("mine_soil", 60),
    10: ("tailings", 60),
    11: ("mine_rock", 60),
    12: ("haul_road", 60),
    13: ("pit_water", 80),
}
MATERIAL_ID = {name: i for i, (name, _) in MATERIALS.items()}
VEGETATED = (0, 1, 2, 3)
MINE_MATERIALS = (9, 10, 11, 12, 13)


@dataclass(frozen=True)
class Palette:
    """The spectra one world uses: ``values[k]`` is the S2 reflectance of palette entry k.

    ``choices[material]`` lists (dry/base entry, green entry) candidates: the base
    spectrum a pixel shows when its greenness is 0, and the one it reaches at 1.
    """

    names: tuple[str, ...]
    values: np.ndarray
    base: dict[int, np.ndarray]
    green: dict[int, np.ndarray]


LIBRARY_PARTS = ("train", "test")
"""The two disjoint halves of the library a world can be limited to (``build_palette(part=...)``)."""


def sample_stem(name: str) -> str:
    """The measured sample a library spectrum belongs to: replicate measurements share it (``mugexx.002-`` and
    ``mugexx.001-`` are two readings of sample ``mugexx``), so a split of the library keeps them together."""
    return re.sub(r"\.\d+-?$", "", name)


def library_part(name: str, by_sample: bool = True) -> str:
    """Which half of the library (``"train"`` or ``"test"``) a spectrum belongs to: a fixed hash (CRC-32, the same
    on every machine) of its sample's stem, so worlds limited to different halves share no spectrum and no
    replicate of one; with ``by_sample=False``, of its own name."""
    return LIBRARY_PARTS[zlib.crc32((sample_stem(name) if by_sample else name).encode()) % 2]


def split_pool(names: list[str], pool: np.ndarray, part: str) -> np.ndarray:
    """The entries of ``pool`` (library rows) in ``part``: split by sample, or by spectrum where every spectrum of
    the pool shares one stem (earthlib's 39 sand spectra are all ``lbxsxx.NNN-``), so each half keeps some."""
    by_sample = {library_part(names[i]) for i in pool} == set(LIBRARY_PARTS)
    return pool[np.array([library_part(names[i], by_sample) == part for i in pool], dtype=bool)]


def _pools(lib: Library) -> dict[str, np.ndarray]:
    """The library's rows grouped into the pools materials draw from (canopies by leaf area index, soils by
    brightness in B4, B8 and B11, built surfaces by kind)."""
    names = list(lib.names)
    canopy = lib.where("canopy")
    lais = np.array([lai(names[i]) or 0.0 for i in canopy])
    soils = lib.where("soil")
    brightness = lib.values[soils][:, [3, 7, 10]].mean(axis=1)  # B4, B8, B11
    return {
        "dense_canopy": canopy[lais >= 4.5],
        "mid_canopy": canopy[(lais >= 2.5) & (lais < 4.5)],
        "sparse_canopy": canopy[(lais >= 1.0) & (lais < 2.5)],
        "npv": lib.where("litter", "npv", "bark", "wood"),
        "dark_soil": soils[brightness < np.quantile(brightness, 0.5)],
        "soil": soils,
        "upper_soil": soils[brightness > np.quantile(brightness, 0.5)],
        "bright_soil": soils[brightness > np.quantile(brightness, 0.75)],
        "sand": lib.where("sand"),
        "gravel": lib.where("gravel"),
        "roof": lib.where("comp_shingle", "metal", "concrete_tile", "tile"),
        "pavement": lib.where("asphalt", "road"),
        "wide_roof": lib.where("metal", "concrete_tile", "tile", "paint"),
        "wide_pavement": lib.where("asphalt", "sidewalk", "driveway", "parking_lot"),
        "dirt": lib.where("dirt", "gravel"),
    }


def build_palette(rng: np.random.Generator, per_material: int = 5, part: str | None = None,
                  mine_soil: str = "bright_soil", crop_soil: str = "dark_soil", urban: str = "narrow") -> Palette:  # fmt: skip
    """Pick library spectra for each material (deterministic for ``rng``). ``part``: draw only from that half of
    the library (:func:`library_part`), so that worlds made for training and for testing share no spectrum; the
    two modelled water spectra are fixed constants, not draws, and every world has them. ``mine_soil`` and
    ``crop_soil``: the soil pools of mine soil and of bare fields; ``urban``: ``"narrow"`` (roofs of shingle,
    metal and tile; asphalt and roads) or ``"wide"`` (roofs of metal, tile and paint, no shingle; asphalt,
    sidewalks, driveways and parking lots: concrete and paint, some as bright as mine soil)
    (``world.realism.Realism``)."""
    if urban not in ("narrow", "wide"):
        raise ValueError(f"urban {urban!r}: 'narrow' or 'wide'.")
    if part is not None and part not in LIBRARY_PARTS:
        raise ValueError(f"part {part!r}: one of {', '.join(LIBRARY_PARTS)}, or None for the whole library.")
    lib = library()
    names = list(lib.names)
    pools = _pools(lib)
    recipe = {  # material -> (base pool, green pool or None)
        0: ("mid_canopy", "dense_canopy"),
        1: ("npv", "sparse_canopy"),
        2: ("npv", "mid_canopy"),
        3: (crop_soil, "dense_canopy"),
        4: ("roof" if urban == "narrow" else "wide_roof", None),
        5: ("pavement" if urban == "narrow" else "wide_pavement", None),
        6: ("soil", None),
        7: ("gravel", None),
        8: (None, None),
        9: (mine_soil, None),
        10: ("sand", None),
        11: ("gravel", None),
        12: ("dirt", None),
        13: (None, None),
    }
    entries: list[int | str] = []
    base: dict[int, np.ndarray] = {}
    green: dict[int, np.ndarray] = {}

    if part is not None:
        pools = {k: split_pool(names, v, part) for k, v in pools.items()}

    def take(pool: str) -> np.ndarray:
        candidates = pools[pool]
        picked = rng.choice(candidates, size=min(per_material, len(candidates)), replace=False)
        start = len(entries)
        entries.extend(int(i) for i in np.sort(picked))
        return np.arange(start, len(entries))

    for material, (b, g) in recipe.items():
        if material == 8 or material == 13:
            start = len(entries)
            entries.append("modelled:clear_water" if material == 8 else "modelled:turbid_pit_water")
            base[material] = np.array([start])
            continue
        base[material] = take(b)
        if g:
            green[material] = take(g)
    values = np.array(
        [lib.values[e] if isinstance(e, int) else np.asarray(WATER_SPECTRA[e], np.float32) for e in entries],
        dtype=np.float32,
    )
    out_names = tuple(names[e] if isinstance(e, int) else e for e in entries)
    return Palette(out_names, values, base, green)
