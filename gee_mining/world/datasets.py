"""The Earth Engine datasets the pipeline joins to the scenes: WorldCover, LSIB and the mine polygons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import shapely
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject

from gee_mining.contracts.datasets import WORLDCOVER
from gee_mining.errors import InputError
from gee_mining.io.polygons import read_polygons
from gee_mining.world.landscape import Surface, WorldGrid
from gee_mining.world.spectra import MATERIALS

WORLDCOVER_PIXEL = 1 / 12000  # degrees: WorldCover's native lattice (~8.3 m at the equator)


def natural_earth_path() -> Path:

    path = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "naturalearth_lowres" / "naturalearth_lowres.shp"
    if not path.exists():
        raise InputError(f"{path} is missing: reinstall pyogrio (`pip install --force-reinstall pyogrio`).")
    return path


def write_worldcover(grid: WorldGrid, surface: Surface, out: Path) -> dict:
    """The land-cover map the scenes were drawn from, on WorldCover's EPSG:4326 lattice (band ``Map``)."""

    lut = np.zeros(256, dtype=np.uint8)
    for m, (_, wc) in MATERIALS.items():
        lut[m] = wc
    classes = lut[surface.material]
    west, south, east, north = grid.bounds_lonlat().bounds
    p = WORLDCOVER_PIXEL
    west, north = np.floor(west / p) * p, np.ceil(north / p) * p
    width, height = int(np.ceil((east - west) / p)), int(np.ceil((north - south) / p))
    transform = Affine(p, 0, west, 0, -p, north)
    dst = np.zeros((height, width), dtype=np.uint8)
    reproject(
        classes,
        dst,
        src_transform=grid.transform(10),
        src_crs=grid.crs,
        dst_transform=transform,
        dst_crs="EPSG:4326",
        resampling=Resampling.nearest,
        src_nodata=0,
        dst_nodata=0,
    )
    path = out / "WorldCover" / "ESA_WorldCover_10m_2021_v200_Map.tif"
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8", crs="EPSG:4326",
        transform=transform, nodata=0, tiled=True, blockxsize=256, blockysize=256, compress="ZSTD",
    ) as ds:  # fmt: skip
        ds.write(dst, 1)
        ds.set_band_description(1, "Map")
    return {
        "id": f"{WORLDCOVER}/2021",
        "collection": WORLDCOVER,
        "time_start": "2021-01-01T00:00:00Z",
        "time_end": "2022-01-01T00:00:00Z",
        "bands": {"Map": str(path.relative_to(out))},
        "pyramiding": {"Map": "sample"},
        "properties": {"GEE_MINING_SIMULATED": True},
    }


def write_lsib(out: Path) -> Path:
    """Natural Earth 1:110m countries with LSIB_SIMPLE's column names, as GeoJSON."""

    meta, _, wkb, fields = pyogrio.raw.read(natural_earth_path())
    cols = dict(zip(meta["fields"], fields, strict=True))
    features = []
    for i, geom in enumerate(shapely.from_wkb(wkb)):
        features.append(
            {
                "type": "Feature",
                "geometry": json.loads(shapely.to_geojson(geom)),
                "properties": {
                    "country_na": str(cols["name"][i]),
                    "country_co": str(cols["iso_a3"][i]),
                    "wld_rgn": str(cols["continent"][i]),
                    "abbreviati": str(cols["name"][i])[:16],
                },
            }
        )
    path = out / "tables" / "lsib_simple_2017.geojson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def write_polygons(polygons_lonlat: list[shapely.Geometry], props: list[dict], out: Path) -> Path:
    features = [
        {"type": "Feature", "geometry": json.loads(shapely.to_geojson(g)), "properties": p}
        for g, p in zip(polygons_lonlat, props, strict=True)
    ]
    path = out / "tables" / "mines.geojson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def mine_polygons(path: str | Path) -> tuple[list[shapely.Geometry], list[dict]]:
    """The (Multi)Polygons of a polygon file in EPSG:4326, each made valid, with their attributes."""

    polygons = read_polygons(path)
    geoms, props = [], []
    for g, p in zip(polygons.geometries, polygons.properties, strict=True):
        if g is not None and g.geom_type in ("Polygon", "MultiPolygon"):
            geoms.append(shapely.make_valid(g))
            props.append(p)
    return geoms, props
