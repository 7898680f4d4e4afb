"""Pictures of boxes on patches: the true boxes (labels) and the predicted ones, side by side per patch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.patches as mpatches
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from gee_mining.ml.detect.dataset import DetectDataset


def patch_rgb(ds: DetectDataset, name: str) -> np.ndarray:
    """An RGB (H, W, 3) uint8 view of a dataset image: the PNG itself, or the first three pages of a TIFF.

    For a multispectral dataset the view shows B4, B3, B2 when the dataset has them (natural colour),
    else its first three bands.
    """

    c = ds.cell(name)
    path = ds.root / "images" / c["image"]
    if path.suffix == ".png":
        return np.asarray(Image.open(path).convert("RGB"))
    bands = list(ds.spec.bands)
    wanted = [bands.index(b) for b in ("B4", "B3", "B2")] if {"B4", "B3", "B2"} <= set(bands) else [0, 1, 2]
    pages = []
    with Image.open(path) as im:
        for i in range(im.n_frames):
            im.seek(i)
            pages.append(np.asarray(im))
    if len(pages) < 3:
        return np.repeat(pages[0][..., None], 3, axis=2)
    return np.stack([pages[i] for i in wanted], axis=2)


def boxes_figure(
    ds: DetectDataset,
    names: Sequence[str],
    detections: Sequence = (),
    title: str = "",
    columns: int = 6,
    size: float = 1.9,
):
    """A matplotlib figure: each patch with its label boxes (yellow, dashed) and detections (red, with scores)."""

    matplotlib.use("Agg")

    by_cell: dict[str, list] = {}
    for d in detections:
        by_cell.setdefault(d.cell, []).append(d)
    n = max(1, len(names))
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + (0.4 if title else 0)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names, strict=False):
        ax.imshow(patch_rgb(ds, name), interpolation="nearest")
        for b in ds.cell(name)["boxes"]:
            ax.add_patch(mpatches.Rectangle((b["x0"] - 0.5, b["y0"] - 0.5), b["x1"] - b["x0"], b["y1"] - b["y0"],
                                            fill=False, edgecolor="yellow", lw=1.0, ls="--"))  # fmt: skip
        for d in by_cell.get(name, []):
            x0, y0, x1, y1 = d.pixel_box
            ax.add_patch(
                mpatches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red", lw=1.2)
            )
            ax.text(x0, y0 - 1, f"{d.score:.2f}", color="red", fontsize=6, va="bottom")
        ax.set_title(name, fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_boxes_figure(path: str | os.PathLike, *args, dpi: int = 80, **kwargs) -> Path:
    """:func:`boxes_figure` saved as PNG or JPEG (by the suffix)."""

    fig = boxes_figure(*args, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **({"pil_kwargs": {"quality": 85}} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
    plt.close(fig)
    return path
