"""Clouds, cirrus and cloud shadows of one scene, and how each product flags them.

The generator's truth, per 10 m pixel (``TRUTH_CLASSES``), follows from three
fields: cloud opacity ``alpha`` (0..1), cirrus optical depth ``tau`` and shadow
strength ``shadow`` (the cloud field moved along the sun direction). The
products flag that truth the way they behave in reality:

- Cloud Score+ (``cs``, ``cs_cdf``) flags every cloud, cirrus and shadow pixel
  of the truth: there ``cs_cdf < 0.6`` and ``cs < 0.6``; clear pixels have
  ``cs_cdf >= 0.6``. ``cs`` is noisier and dips below 0.6 over some bright bare
  ground (false alarms over mines and tailings, as the real score does).
- SCL (20 m) marks opaque cloud as 9, medium cloud as 8, cirrus as 10 and dark
  shadow as 3, but misses thin cloud edges (``thin_cloud`` truth) and faint
  shadows: those pixels keep their surface class (4, 5 or 6).
- MSK_CLDPRB (20 m, %) follows the cloud opacity; QA60 (60 m) sets bit 10
  where most of a 60 m pixel is opaque cloud and bit 11 for cirrus, so small
  clouds are missed, as in the real bitmask.
- s2cloudless ``probability`` is computed from a 160 m view of the clouds and
  interpolated to 10 m, so it is smooth and blurs small clouds.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from gee_mining.world.fields import _weights, block_mean, octaves, sample_octaves

TRUTH_CLASSES = {0: "clear", 1: "thin_cloud", 2: "cloud", 3: "opaque_cloud", 4: "cirrus", 5: "shadow"}
THIN, MEDIUM, OPAQUE = 0.03, 0.25, 0.6  # opacity thresholds of the truth classes
CIRRUS_MIN, SHADOW_MIN, SHADOW_SCL = 0.02, 0.08, 0.25
# Reflectance of a thick cloud top in the 12 bands (bright, flat in the visible, darker in the SWIR).
CLOUD_SPECTRUM = np.array([0.62, 0.6, 0.59, 0.58, 0.58, 0.58, 0.58, 0.57, 0.57, 0.5, 0.45, 0.32], dtype=np.float32)
# Haze (path radiance) relative to its blue value: falls with wavelength, about lambda^-1.5 (B1..B12 centres).
HAZE_SHAPE = (np.array([443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1610, 2190], dtype=np.float32) / 490) ** -1.5
CIRRUS_SPECTRUM = np.array([0.35, 0.33, 0.32, 0.31, 0.31, 0.31, 0.31, 0.3, 0.3, 0.25, 0.25, 0.2], dtype=np.float32)


@dataclass(frozen=True)
class Sky:
    """The random fields of one scene's sky; evaluate at any resolution with ``at``."""

    cover: float
    threshold: float
    softness: float
    cloud: list
    cirrus: list | None
    cirrus_scale: float
    shadow_dx: float
    shadow_dy: float
    extent: float

    def at(self, res: float, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(alpha, tau, shadow) on a lattice of ``res`` metres (shadow offsets rounded to whole pixels)."""
        h, w = shape
        if self.cover <= 0 and self.cirrus is None:
            z = np.zeros(shape, dtype=np.float32)
            return z, z, z
        sy, sx = int(round(self.shadow_dy / res)), int(round(self.shadow_dx / res))
        top, left = min(0, sy), min(0, sx)
        margin = self.extent * 0.25
        n = sample_octaves(self.cloud, h + abs(sy), w + abs(sx), res, left * res, top * res, margin)
        opacity = np.clip((n - self.threshold) / self.softness, 0, 1) ** 1.5
        alpha = np.ascontiguousarray(opacity[-top : -top + h, -left : -left + w])
        cast = opacity[sy - top : sy - top + h, sx - left : sx - left + w]
        shadow = 0.7 * cast * (1 - np.minimum(alpha / THIN, 1))
        if self.cover <= 0:
            alpha = np.zeros(shape, dtype=np.float32)
            shadow = alpha
        if self.cirrus is not None:
            tau = np.clip(sample_octaves(self.cirrus, h, w, res) * 0.5 - 0.1, 0, 1) * self.cirrus_scale
        else:
            tau = np.zeros(shape, dtype=np.float32)
        return alpha.astype(np.float32), tau.astype(np.float32), shadow.astype(np.float32)


def draw_sky(rng: np.random.Generator, extent: float, mean_cover: float) -> Sky:
    """A random sky: cloud cover around ``mean_cover`` (some scenes clear, some overcast), moving clouds."""
    clear = rng.random() < 0.18
    cover = 0.0 if clear else float(np.clip(rng.beta(1.2, 1.2 * (1 - mean_cover) / max(mean_cover, 1e-3)), 0.02, 0.95))
    margin = extent * 0.25
    cloud = octaves(rng, extent, [4000.0, 1200.0, 300.0, 80.0], [1.0, 0.5, 0.22, 0.08], margin)
    # the threshold that leaves ``cover`` of a ~unit-variance field above it (normal quantile)

    sd = float(np.sqrt(1 + 0.25 + 0.0484 + 0.0064))
    threshold = NormalDist(0, sd).inv_cdf(1 - cover) if cover > 0 else 99.0
    cirrus = octaves(rng, extent, [6000.0, 1500.0], [1.0, 0.3]) if rng.random() < 0.3 else None
    height = rng.uniform(1000, 3000)  # cloud height (m), sun ~35 degrees from zenith
    azimuth = rng.uniform(0, 2 * np.pi)
    length = height * np.tan(np.radians(rng.uniform(25, 45)))
    return Sky(
        cover,
        float(threshold),
        0.35,
        cloud,
        cirrus,
        float(rng.uniform(0.05, 0.2)),
        float(length * np.cos(azimuth)),
        float(length * np.sin(azimuth)),
        extent,
    )


def truth_classes(alpha: np.ndarray, tau: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    out = np.zeros(alpha.shape, dtype=np.uint8)
    out[shadow >= SHADOW_MIN] = 5
    out[tau >= CIRRUS_MIN] = 4
    out[alpha >= THIN] = 1
    out[alpha >= MEDIUM] = 2
    out[alpha >= OPAQUE] = 3
    return out


def composite(reflectance: np.ndarray, alpha: np.ndarray, tau: np.ndarray, shadow: np.ndarray, bands: list[int]):
    """Surface reflectance (bands, h, w) seen through cirrus and cloud, darkened by shadow (in place)."""
    keep = (1 - shadow) * (1 - alpha)
    cirrus = bool(tau.any())
    for j, b in enumerate(bands):
        reflectance[j] *= keep
        reflectance[j] += alpha * CLOUD_SPECTRUM[b]
        if cirrus:
            reflectance[j] += tau * CIRRUS_SPECTRUM[b]
    return reflectance


def scl(alpha: np.ndarray, tau: np.ndarray, shadow: np.ndarray, surface_class: np.ndarray) -> np.ndarray:
    """Scene classification at 20 m: clouds, cirrus and dark shadows flagged; thin edges and faint shadows missed."""
    out = surface_class.copy()
    out[shadow >= SHADOW_SCL] = 3
    out[tau >= CIRRUS_MIN] = 10
    out[alpha >= MEDIUM] = 8
    out[alpha >= OPAQUE] = 9
    return out


def scl_snow(scl20: np.ndarray, alpha: np.ndarray, tau: np.ndarray, snowy: np.ndarray, false: np.ndarray,
             cloud_miss: float) -> np.ndarray:  # fmt: skip
    """SCL over snow (20 m): 11 (snow) where mostly snow, also under cloud thinner than ``cloud_miss`` (missed
    cloud; shadow stays 3); 8 (medium cloud) on the clear snow in ``false`` (snow taken for cloud), as Sen2Cor
    confuses the two."""
    out = scl20.copy()
    surface = np.isin(scl20, (4, 5, 6)) | ((alpha < cloud_miss) & (tau < CIRRUS_MIN) & (scl20 != 3))
    out[snowy & surface] = 11
    out[false & snowy & (alpha < THIN) & (tau < CIRRUS_MIN)] = 8
    return out


@dataclass(frozen=True)
class SnowConfusion:
    """What a scene's snow does to Cloud Score+: ``snowy`` pixels (mostly snow); ``false``: those it scores as
    cloud; cloud over snow thinner than ``cloud_miss`` opacity is scored as clear."""

    snowy: np.ndarray
    false: np.ndarray
    cloud_miss: float


def cloud_probability_msk(alpha: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """MSK_CLDPRB (0..100): Sen2Cor's cloud probability, here a function of opacity and cirrus."""
    p = np.maximum(np.clip(alpha * 110, 0, 100), np.clip(tau * 300, 0, 60))
    return np.round(p).astype(np.uint8)


def qa60(alpha60: np.ndarray, tau60: np.ndarray) -> np.ndarray:
    """QA60 at 60 m: bit 10 opaque clouds (most of the pixel), bit 11 cirrus."""
    out = np.zeros(alpha60.shape, dtype=np.uint16)
    out[tau60 >= 0.05] = 1 << 11
    out[alpha60 >= 0.5] = 1 << 10
    return out


def cloud_score_plus(
    alpha: np.ndarray,
    tau: np.ndarray,
    shadow: np.ndarray,
    bright: np.ndarray,
    texture: np.ndarray,
    thin_miss: float = 0.0,
    shadow_miss: float = 0.0,
    snow: SnowConfusion | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(cs, cs_cdf) at 10 m: below 0.6 on every truth cloud, cirrus and shadow pixel; 0.6..1 elsewhere.

    ``texture`` (0..1) varies the clear-sky score; ``bright`` (0..1, bright bare
    ground) lowers ``cs`` but not ``cs_cdf``, whose per-pixel normalisation
    removes that bias in the real product. ``thin_miss`` / ``shadow_miss`` (the hard world,
    ``world.realism``): cloud thinner than that opacity and shadow fainter than that strength are
    missed (scored as clear), as the real score misses thin edges and faint shadows. ``snow``: over snow, cloud
    thinner than ``snow.cloud_miss`` is missed and the ``snow.false`` pixels are flagged (snow taken for cloud).
    """
    flagged = (alpha >= max(THIN, thin_miss)) | (tau >= CIRRUS_MIN) | (shadow >= max(SHADOW_MIN, shadow_miss))
    if snow is not None:
        faint = (alpha < snow.cloud_miss) & (tau < CIRRUS_MIN) & (shadow < max(SHADOW_MIN, shadow_miss))
        flagged &= ~(snow.snowy & faint)
        flagged |= snow.false
    severity = np.maximum(alpha * np.float32(1 / OPAQUE), tau * np.float32(10))
    np.maximum(severity, shadow * np.float32(2), out=severity)
    np.minimum(severity, 1, out=severity)
    clear = np.float32(0.97) - np.float32(0.35) * severity - np.float32(0.1) * texture
    cloudy = np.float32(0.55) - np.float32(0.5) * severity
    cs_cdf = np.where(flagged, cloudy, clear)
    cs = np.where(flagged, cloudy * np.float32(0.9), clear - np.float32(0.12) * texture - np.float32(0.25) * bright)
    return _quantise(cs), _quantise(cs_cdf)


def _quantise(x: np.ndarray) -> np.ndarray:
    """Round to 1/1000 (the stored files compress; the values keep three decimals)."""
    x *= np.float32(1000)
    np.rint(x, out=x)
    x *= np.float32(1 / 1000)
    return x


def s2cloudless(sky: Sky, shape10: tuple[int, int], bright: np.ndarray) -> np.ndarray:
    """s2cloudless ``probability`` (0..100) at 10 m: a 160 m view of clouds and cirrus, interpolated."""
    h, w = shape10
    if sky.cover <= 0 and sky.cirrus is None:
        base = np.zeros(shape10, dtype=np.float32)
    else:
        hc, wc = -(-h // 16), -(-w // 16)
        alpha, tau, _ = sky.at(160.0, (hc, wc))
        coarse = np.clip(alpha * 100 + tau * 250, 0, 100)

        ys = ((np.arange(h) + 0.5) * 10.0 - 80.0).clip(0)
        xs = ((np.arange(w) + 0.5) * 10.0 - 80.0).clip(0)
        base = _weights(ys, 160.0, hc) @ coarse @ _weights(xs, 160.0, wc).T
    prob = np.clip(base + 25 * bright, 0, 100)
    return np.round(prob).astype(np.uint8)


def coarse_truth(alpha: np.ndarray, tau: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    return block_mean(alpha, f), block_mean(tau, f)
