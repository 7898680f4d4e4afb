"""Steps 2-3 assembled: one cell's image, as every export, quicklook and pixel table reads it.

``cell_image(row, polygons, spec)`` stacks, on the cell's 10 m lattice:

1. the cloud-masked median composite (``sentinel2.composite``): B1..B12 as float reflectance;
2. the requested spectral indices (``indices.add_indices``): named ones (spyndex names or ``ND_a_b``),
   then every ``ND_a_b`` of the ``pairwise`` bands;
3. the labels (``labels.label_bands``): ``_mine`` (0/1) and the signed ``distance`` (m).

The image carries ``GEE_MINING_SIMULATED`` (``"true"``/``"false"``, ``sentinel2.simulated_flag``): the local
engine writes it as a GeoTIFF tag, so a cell exported from the simulated world says so in its file.

All bands are float32, so the stack exports as one GeoTIFF (Earth Engine refuses to mix
float and integer bands in one file) and as TFRecord float features. Pixels with no clear
observation are masked in every band (the labels take the composite's mask), so exports
write them as nodata and samples skip them.

Written once with the ``ee`` API: Earth Engine, the local engine and the Code Editor
(``ee_scripts/cell_image.js``) run the same graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import ee

from gee_mining.contracts.bands import LABEL_BANDS
from gee_mining.contracts.features import check_index, normalized_difference_names
from gee_mining.contracts.lattice import PixelGrid, pixel_grid
from gee_mining.errors import InputError
from gee_mining.steps.indices import add_indices
from gee_mining.steps.labels import label_bands
from gee_mining.steps.sentinel2 import SIMULATED_PROPERTY, CompositeSpec, composite, region_of, simulated_flag


@dataclass(frozen=True)
class ImagerySpec:
    """What a cell's image holds: the composite, the indices (named and pairwise) and the labels."""

    composite: CompositeSpec = field(default_factory=CompositeSpec)
    indices: tuple[str, ...] = ()
    pairwise: tuple[str, ...] | None = None
    labels: bool = True
    search_radius: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.indices, str):
            raise InputError(f"indices={self.indices!r}: give a list of index names, e.g. ['NDVI', 'NBR'].")
        object.__setattr__(self, "indices", tuple(self.indices))
        for name in self.indices:
            check_index(name)  # an unknown name fails here, with close-name suggestions
        if self.pairwise is not None:
            object.__setattr__(self, "pairwise", tuple(self.pairwise))

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ImagerySpec:
        """A spec from a job's or a CLI's flat parameters (``indices``, ``pairwise``, ``start``, ``mask``, ...)."""

        composite_names = {f.name for f in fields(CompositeSpec)}
        own = {"indices", "pairwise", "labels", "search_radius"}
        unknown = sorted(set(params) - composite_names - own - {"polygons"})
        if unknown:
            raise InputError(
                f"unknown imagery parameter(s) {', '.join(unknown)}: use {', '.join(sorted(composite_names | own))}."
            )
        comp = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in composite_names}
        pairwise = params.get("pairwise")
        if pairwise is True:
            pairwise = comp.get("bands", CompositeSpec().bands)
        return cls(
            composite=CompositeSpec(**comp),
            indices=tuple(params.get("indices", ())),
            pairwise=tuple(pairwise) if pairwise else None,
            labels=bool(params.get("labels", True)),
            search_radius=params.get("search_radius"),
        )

    @property
    def band_names(self) -> list[str]:
        """The bands of ``cell_image``, in order."""
        names = list(self.composite.bands) + list(self.indices)
        if self.pairwise:
            names += normalized_difference_names(self.pairwise)
        if self.labels:
            names += list(LABEL_BANDS)
        return names


def cell_image(
    row: dict[str, Any],
    polygons: Any = None,
    spec: ImagerySpec | None = None,
    region: Any = None,
    label_grid: PixelGrid | None = None,
    **overrides: Any,
):
    """The float32 image of one grid cell: composite bands, indices, and ``_mine`` / ``distance``.

    ``row`` is a grid-table row; ``polygons`` the mine polygons (a table asset id or an
    ``ee.FeatureCollection``), needed when ``spec.labels``. Keyword overrides build the spec:
    ``cell_image(row, mines, indices=["NDVI"], pairwise=BANDS, start="2020-01-01", end="2021-01-01")``.
    ``region`` (an ``ee.Geometry``): the scenes are those over it instead of over the cell, for a batch of
    cells exported in one task (``batch.batches``); the image stays on the cell's lattice, whose pixels
    every cell of the zone and level shares, so each cell's pixels are those of its own image.
    ``label_grid``: the lattice whose polygons label the image (a batch's rectangle, on the same lattice), so
    that every cell of a batch finds its own polygons, not only the first cell's.
    """

    if overrides:
        if spec is not None:
            raise InputError("give either spec= or keyword options to cell_image, not both.")
        spec = ImagerySpec.from_params(overrides)
    spec = spec or ImagerySpec()
    if spec.labels and polygons is None:
        raise InputError("cell_image needs the mine polygons (a table asset id) for its labels, or labels=False.")
    grid = pixel_grid(row)
    if region is None:
        image = composite(row, spec.composite)
    else:
        image = composite(region, spec.composite).reproject(crs=grid.crs, crsTransform=list(grid.transform))
    if spec.indices or spec.pairwise:
        image = add_indices(image, spec.indices, pairwise=spec.pairwise)
    if spec.labels:
        fc = polygons if isinstance(polygons, ee.FeatureCollection) else ee.FeatureCollection(polygons)
        lab = label_bands(fc, label_grid or row, search_radius=spec.search_radius).toFloat()
        image = image.addBands(lab.updateMask(image.select(0).mask()))
    image = image.toFloat().reproject(crs=grid.crs, crsTransform=list(grid.transform))
    # provenance: the local engine writes it as a GeoTIFF tag, so a simulated cell stays marked once copied
    return image.set(SIMULATED_PROPERTY, simulated_flag(region_of(row), spec.composite))
