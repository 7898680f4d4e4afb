"""Scenes of the simulated world: the acquisition rhythm, rendering and the files of each scene.

Each scene is rendered at its bands' native resolutions from the static surface
(``landscape.Surface``): reflectance = brightness x spectrum (mixed towards the
green spectrum by the day's greenness), plus sensor noise, seen through the
scene's clouds (``clouds.py``); stored as DN = reflectance x 10000 (uint16), as
in ``COPERNICUS/S2_SR_HARMONIZED``.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from gee_mining.contracts.bands import BANDS
from gee_mining.contracts.datasets import CLOUD_SCORE_PLUS, S2_CLOUD_PROBABILITY, S2_SR
from gee_mining.errors import InputError
from gee_mining.world import clouds
from gee_mining.world.fields import Field, block_mean, octaves, sample_octaves
from gee_mining.world.landscape import Surface, WorldGrid, greenness
from gee_mining.world.realism import EASY, Realism
from gee_mining.world.spectra import MATERIAL_ID

GROUPS = {10: ["B2", "B3", "B4", "B8"], 20: ["B5", "B6", "B7", "B8A", "B11", "B12"], 60: ["B1", "B9"]}
NOISE_SIGMA = 0.004  # reflectance; additive sensor and retrieval noise per pixel and scene
SNOW_MONTHS = (12, 1, 2, 3)  # months the hard world's scenes may have snow (a borrowed temperate winter)
# Modelled snow reflectance (not in earthlib): fresh and aged snow, bright and flat in the visible, falling in the
# near infrared, dark in the SWIR (B11, B12), which is what tells snow from cloud (NDSI).
SNOW_SPECTRA = np.array([[0.95, 0.95, 0.94, 0.92, 0.90, 0.88, 0.86, 0.83, 0.80, 0.65, 0.12, 0.08],
                         [0.75, 0.74, 0.72, 0.70, 0.68, 0.66, 0.63, 0.60, 0.58, 0.45, 0.08, 0.05]], dtype=np.float32)  # fmt: skip
GTIFF = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "ZSTD", "zstd_level": 1}


@dataclass(frozen=True)
class SceneSpec:
    number: int
    sensing: dt.datetime
    granule: dt.datetime
    spacecraft: str
    orbit: int
    tile: str

    @property
    def index(self) -> str:
        """Earth Engine's ``system:index`` for Sentinel-2: datatake time, granule time, tile."""
        return f"{self.sensing:%Y%m%dT%H%M%S}_{self.granule:%Y%m%dT%H%M%S}_T{self.tile}"

    @property
    def doy(self) -> float:
        return float(self.sensing.timetuple().tm_yday)


def check_extra_months(months: int, extra_months) -> list[int]:
    """``extra_months`` sorted, or an error naming them: months after the first ``months``, up to 12."""
    extra = sorted({int(m) for m in extra_months})
    if any(not min(months, 12) < m <= 12 for m in extra):
        raise InputError(f"extra months {list(extra_months)}: months of the year after the first {months}, up to 12 "
                         "(e.g. 6 with one month: January and June).")  # fmt: skip
    return extra


def schedule(grid: WorldGrid, year: int, months: int, extra_months: tuple[int, ...] = ()) -> list[SceneSpec]:
    """Sentinel-2A and 2B alternating every 5 days (the constellation's revisit) over the world's tile: the passes of
    the first ``months`` months of ``year``, then those of each month in ``extra_months`` (later months of the same
    year, e.g. ``(6,)``: a winter and a summer month, for the seasonal cue). The first months' scenes are the same
    with or without extra months (same numbers, times and ids)."""
    lon, _ = grid.centre_lonlat()
    tile = grid.mgrs_tile()
    offset = (grid.zone * 3 + sum(map(ord, tile))) % 5
    start = dt.datetime(year, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=offset)
    end_month = min(months, 12)
    extra = check_extra_months(months, extra_months)
    end = dt.datetime(year + (max([end_month, *extra]) // 12), max([end_month, *extra]) % 12 + 1, 1, tzinfo=dt.UTC)
    hours = (10.5 - lon / 15.0) % 24  # descending node ~10:30 local solar time
    orbit = 1 + (grid.zone * 37 + 11) % 143
    specs = []
    day = start
    n = 0
    while day < end:
        if day.month <= end_month or day.month in extra:
            # a few seconds' drift per pass, as datatake times vary
            seconds = int(hours * 3600) + (n * 7919) % 41 - 20
            sensing = day.replace(hour=0, minute=0, second=0) + dt.timedelta(seconds=seconds)
            granule = sensing + dt.timedelta(seconds=60 + (n * 104729) % 1500)
            specs.append(SceneSpec(n, sensing, granule, "Sentinel-2A" if n % 2 == 0 else "Sentinel-2B", orbit, tile))
            n += 1
        day += dt.timedelta(days=5)
    return specs


def sun_angles(lon: float, lat: float, when: dt.datetime) -> tuple[float, float]:
    """(zenith, azimuth) in degrees from a standard low-precision solar position formula."""
    doy = when.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365)
    solar_hours = when.hour + when.minute / 60 + lon / 15.0
    ha = math.radians(15 * (solar_hours - 12))
    phi = math.radians(lat)
    cos_z = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(ha)
    zen = math.acos(max(-1.0, min(1.0, cos_z)))
    az = math.atan2(math.sin(ha), math.cos(ha) * math.sin(phi) - math.tan(decl) * math.cos(phi)) + math.pi
    return math.degrees(zen), math.degrees(az) % 360


def mean_cover(doy: float, lat: float) -> float:
    """Seasonal mean cloud cover: a wet season peaking in the local summer."""
    peak = 45 if lat < 0 else 225
    return float(0.38 + 0.22 * math.cos(2 * math.pi * (doy - peak) / 365.25))


@dataclass
class Static:
    """What every scene shares (read-only while scenes render in threads)."""

    grid: WorldGrid
    surface: Surface
    noise: np.ndarray  # (2, H + pad, W + pad) float32 normal, standard deviation NOISE_SIGMA
    bright: np.ndarray  # (h, w) float32 0..1: bright bare ground (cloud detectors' false alarms)
    texture: np.ndarray  # (H + pad, W + pad) float32 0..1: smooth variation of clear-sky cloud scores
    seed: int
    out: Path
    realism: Realism = EASY
    relief: np.ndarray | None = None  # (h, w) float32 ~N(0, 1): where snow lies first (None: no snow)


def make_static(grid: WorldGrid, surface: Surface, seed: int, out: Path, realism: Realism = EASY) -> Static:
    relief = None
    if realism.snow_scenes > 0:  # its own generator: the other static draws do not move
        parts = octaves(np.random.default_rng([seed, 8]), float(grid.size), [3000.0, 800.0, 200.0], [1.0, 0.4, 0.15])
        relief = sample_octaves(parts, *grid.shape(10), 10.0)
    rng = np.random.default_rng([seed, 7])
    h, w = grid.shape(10)
    noise = rng.standard_normal((2, h + 64, w + 64), dtype=np.float32)
    noise *= np.float32(NOISE_SIGMA)
    vis = surface.A[10][:3].mean(axis=0)
    bright = np.clip((vis - 0.12) / 0.15, 0, 1).astype(np.float32)
    bright[np.isin(surface.material, (0, 1, 2, 3))] = 0

    texture = np.clip(Field.random(rng, grid.size + 640.0, 250.0).sample(h + 64, w + 64, 10.0) * 0.25 + 0.5, 0, 1)
    return Static(grid, surface, noise, bright, texture.astype(np.float32), seed, out, realism, relief)


def write_tif(path: Path, data: np.ndarray, grid: WorldGrid, res: int, names: list[str], **extra) -> None:

    path.parent.mkdir(parents=True, exist_ok=True)
    data = data if data.ndim == 3 else data[None]
    opts = dict(GTIFF)
    if data.dtype == np.float32:
        opts["predictor"] = 3
    elif data.dtype != np.uint8:
        opts["predictor"] = 2
    opts.update(extra)
    with rasterio.open(
        path,
        "w",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=grid.crs,
        transform=grid.transform(res),
        interleave="band",
        **opts,
    ) as ds:
        ds.write(data)
        for i, n in enumerate(names):
            ds.set_band_description(i + 1, n)


@dataclass
class _SceneBands:
    """What rendering a scene's spectral bands leaves for its QA layers and its catalog entry."""

    bands: dict[str, list]  # band name -> [file relative to the world's folder, band number]
    layers: dict[int, tuple]  # resolution -> the sky's (alpha, tau, shadow) at that resolution
    b4_20: np.ndarray  # B4 before clouds, block means at 20 m (for the scene classification's NDVI)
    nir_20: np.ndarray  # B8A before clouds at 20 m


@dataclass(frozen=True)
class _CloudFiles:
    """The scene's cloud truth and the files of its cloud products."""

    truth: np.ndarray  # uint8 (h, w) true cloud classes at 10 m
    truth_path: Path
    csp_path: Path
    prob_path: Path


def render_scene(static: Static, spec: SceneSpec) -> dict[str, Any]:
    """Render and write one scene; returns its catalog entries and properties.

    The scene draws from its own generator in a fixed order (sky, per-band noise windows,
    Cloud Score+ texture window), so its bytes do not depend on which process renders it.
    """
    rng = np.random.default_rng([static.seed, 1000 + spec.number])
    lon, lat = static.grid.centre_lonlat()
    zen, az = sun_angles(lon, lat, spec.sensing)
    sky = _draw_sky(rng, static.grid, spec, lat, az)
    folder = static.out / "S2_SR_HARMONIZED" / spec.index
    snow = _snow(static, spec)
    rendered = _render_bands(static, spec, sky, rng, folder, snow)
    scl = _write_qa(static, folder, rendered, snow)
    cloud_files = _write_cloud_products(static, spec, sky, rendered.layers[10], rng, snow)
    props = _scene_properties(static, spec, scl, zen, az)
    entry = _catalog_entry(static, spec, sky, rendered.bands, cloud_files, props)
    if snow is not None:
        entry["truth"]["snow"] = _write_snow_truth(static, spec, snow)
    return entry


@dataclass(frozen=True)
class _Snow:
    """A scene's snow: its share of each 10 m pixel, its spectrum, and the snow the cloud products call cloud."""

    fraction: np.ndarray  # float32 (h, w) 0..1
    spectrum: np.ndarray  # (12,) float32 reflectance
    cs_false: np.ndarray  # bool (h, w): snow Cloud Score+ flags as cloud
    scl_false: np.ndarray  # bool (h, w): snow SCL calls medium-probability cloud (half as much)

    @property
    def snowy(self) -> np.ndarray:
        """Pixels mostly under snow (the truth the flags are measured against)."""
        return self.fraction >= 0.5


def _snow(static: Static, spec: SceneSpec) -> _Snow | None:
    """The scene's snow, or None: in December-March, ``realism.snow_scenes`` of the scenes have snow on the world's
    higher ground (``static.relief`` above a snowline that leaves 15-80 % of it white), patchy, half hidden under
    forest, none on water. A smooth field picks the snow the cloud products take for cloud (``snow_cs_false`` of it
    for Cloud Score+, half that for SCL). Its own generator (seed, 4000 + scene): the scene's other draws do not
    move."""
    r = static.realism
    if static.relief is None or spec.sensing.month not in SNOW_MONTHS:
        return None
    rng = np.random.default_rng([static.seed, 4000 + spec.number])
    if rng.random() >= r.snow_scenes:
        return None
    h, w = static.grid.shape(10)
    extent = float(static.grid.size)
    line = float(np.quantile(static.relief[::4, ::4], 1 - rng.uniform(0.15, 0.8)))
    frac = np.clip((static.relief - line) / 0.25 + 0.5, 0, 1)
    frac *= np.clip(0.75 + 0.5 * Field.random(rng, extent, 150.0).sample(h, w, 10.0), 0, 1)
    material = static.surface.material
    frac[material == MATERIAL_ID["forest"]] *= 0.5
    frac[(material == MATERIAL_ID["water"]) | (material == MATERIAL_ID["pit_water"])] = 0
    frac = np.round(frac * 100).astype(np.float32) / np.float32(100)  # whole percent, as the truth file stores it
    age = rng.random()
    spectrum = (SNOW_SPECTRA[0] * (1 - age) + SNOW_SPECTRA[1] * age).astype(np.float32)
    confusion = Field.random(rng, extent, 200.0).sample(h, w, 10.0)
    snowy = frac >= 0.5
    cs_false, scl_false = np.zeros((h, w), dtype=bool), np.zeros((h, w), dtype=bool)
    if snowy.any() and r.snow_cs_false > 0:
        t_cs, t_scl = np.quantile(confusion[snowy], [1 - r.snow_cs_false, 1 - r.snow_cs_false / 2])
        cs_false, scl_false = snowy & (confusion > t_cs), snowy & (confusion > t_scl)
    return _Snow(frac.astype(np.float32), spectrum, cs_false, scl_false)


def _write_snow_truth(static: Static, spec: SceneSpec, snow: _Snow) -> dict[str, Any]:
    """Write the scene's snow truth (``truth/snow/<index>.tif``, percent of each 10 m pixel); its catalog entry."""
    path = static.out / "truth" / "snow" / f"{spec.index}.tif"
    write_tif(path, np.round(snow.fraction * 100).astype(np.uint8), static.grid, 10, ["snow_percent"])
    return {"path": str(path.relative_to(static.out)), "pixels": int(np.count_nonzero(snow.snowy))}


def _draw_sky(rng: np.random.Generator, grid: WorldGrid, spec: SceneSpec, lat: float, az: float) -> clouds.Sky:
    """The scene's clouds (cover from the season), with their shadows cast away from the sun.

    The shadow at p is the cloud at p minus the displacement, so the cloud field is sampled
    at +(L sin az) east and -(L cos az) in image rows (y down).
    """
    sky = clouds.draw_sky(rng, float(grid.size), mean_cover(spec.doy, lat))
    length = math.hypot(sky.shadow_dx, sky.shadow_dy)
    shift = {"shadow_dx": length * math.sin(math.radians(az)), "shadow_dy": -length * math.cos(math.radians(az))}
    return clouds.Sky(**{**sky.__dict__, **shift})


def _render_bands(
    static: Static, spec: SceneSpec, sky: clouds.Sky, rng: np.random.Generator, folder: Path, snow: _Snow | None = None
) -> _SceneBands:
    """Each band group at its native resolution: clear-sky reflectance (under the scene's snow, a linear mix by
    snow fraction) seen through the sky, written as DN."""
    grid = static.grid
    g = greenness(static.surface.groups, spec.doy)
    bands: dict[str, list] = {}
    layers: dict[int, tuple] = {}
    b4_20 = nir_20 = None
    haze = _haze(static, spec)
    for res in (10, 20, 60):
        names = GROUPS[res]
        refl = _clear_reflectance(static, res, g, rng)
        if snow is not None:
            f = block_mean(snow.fraction, res // 10) if res > 10 else snow.fraction
            for j, b in enumerate(names):
                refl[j] *= 1 - f
                refl[j] += f * snow.spectrum[BANDS.index(b)]
        if haze is not None:  # path radiance no product flags: added to the surface, seen under the clouds too
            h_res = block_mean(haze, res // 10) if res > 10 else haze
            for j, b in enumerate(names):
                refl[j] += h_res * np.float32(clouds.HAZE_SHAPE[BANDS.index(b)])
        if res == 10:
            b4_20 = block_mean(refl[2], 2)
            layers[10] = sky.at(10.0, grid.shape(res))
        else:  # a coarser detector pixel sees the mean of the finer sky
            layers[res] = tuple(block_mean(x, res // 10) for x in layers[10])
        alpha, tau, shadow = layers[res]
        if res == 20:
            nir_20 = refl[3].copy()  # B8A before clouds
        if sky.cover > 0 or sky.cirrus is not None:
            clouds.composite(refl, alpha, tau, shadow, [BANDS.index(b) for b in names])
        path = folder / f"{res}m.tif"
        write_tif(path, _to_dn(refl), grid, res, names)
        for i, b in enumerate(names):
            bands[b] = [str(path.relative_to(static.out)), i + 1]
    return _SceneBands(bands, layers, b4_20, nir_20)


def _haze(static: Static, spec: SceneSpec) -> np.ndarray | None:
    """The scene's haze (10 m, added blue reflectance) or None: ``realism.haze_scenes`` of the scenes have a smooth
    patchy haze up to ``haze_max``. Its own generator (seed, 3000 + scene), so a scene's other draws do not move."""
    r = static.realism
    if r.haze_scenes <= 0:
        return None
    rng = np.random.default_rng([static.seed, 3000 + spec.number])
    if rng.random() >= r.haze_scenes:
        return None
    h, w = static.grid.shape(10)
    field = Field.random(rng, float(static.grid.size), 3000.0).sample(h, w, 10.0)
    return (np.clip(0.5 + 0.35 * field, 0, 1) * np.float32(r.haze_max * rng.uniform(0.4, 1.0))).astype(np.float32)


def _clear_reflectance(static: Static, res: int, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(bands, h, w) float32 clear-sky reflectance of the ``res`` band group: the surface at the day's
    greenness ``g`` (per phenology group) plus sensor noise (a random window of the shared noise per band)."""
    surface = static.surface
    shape = static.grid.shape(res)
    gmap = g[surface.group[res]]
    refl = surface.D[res] * gmap[None]
    refl += surface.A[res]
    for j in range(len(GROUPS[res])):
        k = int(rng.integers(2))
        oy, ox = rng.integers(0, 64, 2)
        refl[j] += static.noise[k, oy : oy + shape[0], ox : ox + shape[1]]
    return refl


def _to_dn(refl: np.ndarray) -> np.ndarray:
    """Reflectance to uint16 DN (x 10000, clipped to 1..65535), as the L2A product stores it; scales ``refl`` in place."""
    refl *= np.float32(10000)
    refl += np.float32(0.5)  # round half up on truncation (values are positive after the clip)
    np.clip(refl, 1, 65535, out=refl)
    return refl.astype(np.uint16)


def _write_qa(static: Static, folder: Path, rendered: _SceneBands, snow: _Snow | None = None) -> np.ndarray:
    """Write the scene classification and cloud probability (20 m) and QA60 (60 m), add them to
    ``rendered.bands``, and return the SCL band (with snow: 11 where mostly snow, see :func:`clouds.scl_snow`)."""
    grid = static.grid
    alpha20, tau20, shadow20 = rendered.layers[20]
    material20 = static.surface.material[1::2, 1::2]
    nir, b4 = rendered.nir_20, rendered.b4_20
    ndvi = (nir - b4) / np.maximum(nir + b4, 1e-6)
    water = (material20 == MATERIAL_ID["water"]) | (material20 == MATERIAL_ID["pit_water"])
    surface_class = np.where(water, 6, np.where(ndvi > 0.4, 4, 5)).astype(np.uint8)
    scl = clouds.scl(alpha20, tau20, shadow20, surface_class)
    if snow is not None:
        snowy20 = block_mean(snow.fraction, 2) >= 0.5
        false20 = block_mean(snow.scl_false.astype(np.float32), 2) >= 0.5
        scl = clouds.scl_snow(scl, alpha20, tau20, snowy20, false20, static.realism.snow_cloud_miss)
    msk = clouds.cloud_probability_msk(alpha20, tau20)
    path = folder / "20m_qa.tif"
    write_tif(path, np.stack([scl, msk]), grid, 20, ["SCL", "MSK_CLDPRB"])
    rendered.bands["SCL"] = [str(path.relative_to(static.out)), 1]
    rendered.bands["MSK_CLDPRB"] = [str(path.relative_to(static.out)), 2]
    alpha60, tau60, _ = rendered.layers[60]
    path = folder / "QA60.tif"
    write_tif(path, clouds.qa60(alpha60, tau60), grid, 60, ["QA60"])
    rendered.bands["QA60"] = [str(path.relative_to(static.out)), 1]
    return scl


def _write_cloud_products(
    static: Static,
    spec: SceneSpec,
    sky: clouds.Sky,
    layers10: tuple,
    rng: np.random.Generator,
    snow: _Snow | None = None,
) -> _CloudFiles:
    """Write the scene's cloud truth, its Cloud Score+ image and its s2cloudless probability (all 10 m). Snow is
    bright ground to both scores, and confuses Cloud Score+ both ways (:func:`clouds.cloud_score_plus`)."""
    grid = static.grid
    alpha10, tau10, shadow10 = layers10
    truth = clouds.truth_classes(alpha10, tau10, shadow10)
    truth_path = static.out / "truth" / "clouds" / f"{spec.index}.tif"
    write_tif(truth_path, truth, grid, 10, ["cloud_truth"])
    oy, ox = rng.integers(0, 64, 2)
    texture = static.texture[oy : oy + alpha10.shape[0], ox : ox + alpha10.shape[1]]
    bright = static.bright if snow is None else np.maximum(static.bright, snow.fraction)
    confusion = (
        None if snow is None else clouds.SnowConfusion(snow.snowy, snow.cs_false, static.realism.snow_cloud_miss)
    )
    cs, cs_cdf = clouds.cloud_score_plus(alpha10, tau10, shadow10, bright, texture, static.realism.cs_thin_miss,
                                         static.realism.cs_shadow_miss, confusion)  # fmt: skip
    csp_path = static.out / "CLOUD_SCORE_PLUS" / f"{spec.index}.tif"
    write_tif(csp_path, np.stack([cs, cs_cdf]), grid, 10, ["cs", "cs_cdf"])
    prob_path = static.out / "S2_CLOUD_PROBABILITY" / f"{spec.index}.tif"
    write_tif(prob_path, clouds.s2cloudless(sky, grid.shape(10), bright), grid, 10, ["probability"])
    return _CloudFiles(truth, truth_path, csp_path, prob_path)


def _scene_properties(static: Static, spec: SceneSpec, scl: np.ndarray, zen: float, az: float) -> dict[str, Any]:
    """The scene's ``COPERNICUS/S2_SR_HARMONIZED`` properties: class percentages of its SCL, product metadata
    and sun angles."""
    n20 = scl.size
    pct = {c: round(100.0 * float(np.count_nonzero(scl == c)) / n20, 6) for c in (3, 4, 5, 6, 8, 9, 10, 11)}
    cloudy = round(pct[8] + pct[9] + pct[10], 6)
    return {
        "CLOUDY_PIXEL_PERCENTAGE": cloudy,
        "CLOUD_COVERAGE_ASSESSMENT": cloudy,
        "HIGH_PROBA_CLOUDS_PERCENTAGE": pct[9],
        "MEDIUM_PROBA_CLOUDS_PERCENTAGE": pct[8],
        "THIN_CIRRUS_PERCENTAGE": pct[10],
        "CLOUD_SHADOW_PERCENTAGE": pct[3],
        "VEGETATION_PERCENTAGE": pct[4],
        "NOT_VEGETATED_PERCENTAGE": pct[5],
        "WATER_PERCENTAGE": pct[6],
        "SNOW_ICE_PERCENTAGE": pct[11],
        "NODATA_PIXEL_PERCENTAGE": 0.0,
        "MGRS_TILE": spec.tile,
        "SPACECRAFT_NAME": spec.spacecraft,
        "SENSING_ORBIT_NUMBER": spec.orbit,
        "SENSING_ORBIT_DIRECTION": "DESCENDING",
        "PROCESSING_BASELINE": "02.12",
        "PRODUCT_ID": f"S2{spec.spacecraft[-1]}_MSIL2A_{spec.sensing:%Y%m%dT%H%M%S}_N0212_R{spec.orbit:03d}_T{spec.tile}_"
        f"{spec.granule:%Y%m%dT%H%M%S}",
        "DATATAKE_TYPE": "INS-NOBS",
        "MEAN_SOLAR_ZENITH_ANGLE": round(zen, 6),
        "MEAN_SOLAR_AZIMUTH_ANGLE": round(az, 6),
        "GEE_MINING_SIMULATED": True,
        "GEE_MINING_WORLD_SEED": static.seed,
    }


def _catalog_entry(
    static: Static,
    spec: SceneSpec,
    sky: clouds.Sky,
    bands: dict[str, list],
    files: _CloudFiles,
    props: dict[str, Any],
) -> dict[str, Any]:
    """The scene's entries in the world's catalog: the S2 image, its Cloud Score+ and cloud probability
    images, and its cloud truth (file and pixel counts per class)."""
    when = spec.sensing.strftime("%Y-%m-%dT%H:%M:%SZ")
    truth_counts = {name: int(np.count_nonzero(files.truth == c)) for c, name in clouds.TRUTH_CLASSES.items()}
    return {
        "index": spec.index,
        "time_start": when,
        "s2": {
            "id": f"{S2_SR}/{spec.index}",
            "time_start": when,
            "bands": {b: bands[b] for b in [*BANDS, "SCL", "MSK_CLDPRB", "QA60"]},
            "pyramiding": {"SCL": "sample", "QA60": "sample"},
            "properties": props,
        },
        "csplus": {
            "id": f"{CLOUD_SCORE_PLUS}/{spec.index}",
            "time_start": when,
            "bands": {
                "cs": [str(files.csp_path.relative_to(static.out)), 1],
                "cs_cdf": [str(files.csp_path.relative_to(static.out)), 2],
            },
            "properties": {"GEE_MINING_SIMULATED": True},
        },
        "probability": {
            "id": f"{S2_CLOUD_PROBABILITY}/{spec.index}",
            "time_start": when,
            "bands": {"probability": [str(files.prob_path.relative_to(static.out)), 1]},
            "properties": {"MGRS_TILE": spec.tile, "SPACECRAFT_NAME": spec.spacecraft, "GEE_MINING_SIMULATED": True},
        },
        "truth": {"path": str(files.truth_path.relative_to(static.out)), "pixels": truth_counts},
        "cover": sky.cover,
        "cirrus": sky.cirrus is not None,
    }


_WORKER: dict[str, Static] = {}  # per worker process: the shared static world, inherited through fork


def _init_worker(static: Static) -> None:
    _WORKER["static"] = static


def _render_in_worker(spec: SceneSpec) -> dict[str, Any]:
    return render_scene(_WORKER["static"], spec)


def render_all(static: Static, specs: list[SceneSpec], workers: int, progress=None) -> list[dict[str, Any]]:
    """Render every scene, in ``workers`` forked processes (scenes are independent: same bytes in any order)."""

    results: list[dict[str, Any]] = []

    def note(r: dict[str, Any]) -> None:
        results.append(r)
        if progress:
            progress(f"scene {len(results)}/{len(specs)} {r['index']} cloud cover {r['cover']:.2f}")

    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        for spec in specs:
            note(render_scene(static, spec))
        return results
    ctx = mp.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(static,)) as pool:
        for r in pool.map(_render_in_worker, specs):
            note(r)
    return results
