"""The local catalog: asset ids mapped to table files of every supported format."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyproj
import pytest
import shapely

import gee_mining
from gee_mining.io.catalog import CatalogEntry, catalog_text, table_entry
from gee_mining.io.polygons import read_polygons, register_polygon_file
from gee_mining.local import Catalog, CatalogError

POLYS = [
    shapely.Polygon([(10, 45), (10.01, 45), (10.01, 45.01), (10, 45.01)]),
    shapely.Polygon([(-60, -3), (-59.98, -3), (-59.98, -2.99), (-60, -3)]),
]
NAMES = ["north", "south"]


def _write_ogr(path, driver, crs="EPSG:4326", geoms=POLYS):
    pyogrio.raw.write(
        path,
        geometry=shapely.to_wkb(np.array(geoms, dtype=object)),
        field_data=[np.array(NAMES, dtype=object), np.array([1, 2], dtype=np.int64)],
        fields=["name", "rank"],
        crs=crs,
        driver=driver,
        geometry_type="Polygon",
    )


def _write_parquet(path):
    geo = {"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
    table = pa.table({"name": NAMES, "rank": [1, 2], "geometry": [shapely.to_wkb(g) for g in POLYS]})
    table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    pq.write_table(table, path)


def _write_csv(path):
    lines = ["name,rank,.geo"] + [
        f'{n},{r},"{json.dumps(shapely.geometry.mapping(g)).replace(chr(34), chr(34) * 2)}"'
        for n, r, g in zip(NAMES, [1, 2], POLYS, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


WRITERS = {
    "geojson": lambda p: _write_ogr(p, "GeoJSON"),
    "gpkg": lambda p: _write_ogr(p, "GPKG"),
    "shp": lambda p: _write_ogr(p, "ESRI Shapefile"),
    "parquet": _write_parquet,
    "csv": _write_csv,
}


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_every_table_format_loads_the_same_features(tmp_path, suffix):
    path = tmp_path / f"t.{suffix}"
    WRITERS[suffix](path)
    catalog = Catalog()
    catalog.add_table("projects/gee-mining-test/assets/t", path)
    fc = catalog.table("projects/gee-mining-test/assets/t")
    assert [f.properties["name"] for f in fc.features] == NAMES
    assert [int(f.properties["rank"]) for f in fc.features] == [1, 2]
    for feature, expected in zip(fc.features, POLYS, strict=True):
        assert feature.geometry.shape.normalize().equals_exact(expected.normalize(), 1e-9)
    assert [f.id for f in fc.features] == [f"{i:020x}" for i in range(2)]


def test_projected_tables_are_reprojected_to_wgs84(tmp_path):
    utm = pyproj.Transformer.from_crs(4326, 32632, always_xy=True)
    projected = [shapely.transform(g, lambda xy: np.column_stack(utm.transform(xy[:, 0], xy[:, 1]))) for g in POLYS[:1]]
    path = tmp_path / "utm.gpkg"
    pyogrio.raw.write(
        path,
        geometry=shapely.to_wkb(np.array(projected, dtype=object)),
        field_data=[np.array(["north"], dtype=object), np.array([1])],
        fields=["name", "rank"],
        crs="EPSG:32632",
        driver="GPKG",
        geometry_type="Polygon",
    )
    catalog = Catalog()
    catalog.add_table("projects/gee-mining-test/assets/utm", path)
    (feature,) = catalog.table("projects/gee-mining-test/assets/utm").features
    assert shapely.equals_exact(feature.geometry.shape.normalize(), POLYS[0].normalize(), 1e-7)


def test_catalog_toml_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    WRITERS["geojson"](tmp_path / "data" / "t.geojson")
    (tmp_path / "catalog.toml").write_text(
        '[[table]]\nid = "projects/gee-mining-test/assets/rel"\npath = "data/t.geojson"\n'
    )
    catalog = Catalog.from_file(tmp_path / "catalog.toml")
    assert catalog.asset_ids() == ["projects/gee-mining-test/assets/rel"]
    assert len(catalog.table("projects/gee-mining-test/assets/rel").features) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[table]]\nid = 'projects/x-project/assets/a'\n", "needs 'id' and 'path'"),
        ("[[table]]\nid = 'projects/x-project/assets/a'\npath = 'a.xlsx'\n", "not a supported table file"),
        ("[[table]]\nid = 'projects/x-project/assets/a'\npath = 'a.gpkg'\ncolour = 'red'\n", "unknown keys"),
        ("[[table]\n", "not valid TOML"),
    ],
)
def test_bad_catalogs_name_the_entry_and_the_fix(tmp_path, text, message):
    (tmp_path / "catalog.toml").write_text(text)
    with pytest.raises(CatalogError, match=message):
        Catalog.from_file(tmp_path / "catalog.toml")


def test_missing_file_is_an_earth_engine_error_naming_the_asset(tmp_path, engine_catalog):
    import ee

    (tmp_path / "catalog.toml").write_text(
        '[[table]]\nid = "projects/gee-mining-test/assets/gone"\npath = "gone.gpkg"\n'
    )
    gee_mining.connect("local", project="gee-mining-test", catalog=tmp_path / "catalog.toml")
    try:
        with pytest.raises(ee.EEException, match="file for asset 'projects/gee-mining-test/assets/gone' is missing"):
            ee.FeatureCollection("projects/gee-mining-test/assets/gone").getInfo()
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


def test_get_asset_answers_for_catalog_tables(ee_local):
    ee = ee_local
    info = ee.data.getAsset("projects/gee-mining-test/assets/squares")
    assert info["type"] == "TABLE"
    assert info["name"] == "projects/gee-mining-test/assets/squares"


def test_catalog_text_escapes_paths_for_toml(tmp_path):
    """A path with quotes, backslashes, a newline and non-ASCII letters round-trips through tomllib."""
    path = 'C:\\data\\"mines"\n\té ü/x.geojson'
    entries = [
        table_entry("projects/p/assets/a", path),
        CatalogEntry("image", {"id": "x", "path": path, "band_names": ["B1", 'q"'], "properties": {"a b": 1.5}}),
    ]
    data = tomllib.loads(catalog_text(entries, include=[path], header='one "line"\nand another'))
    assert data["include"] == [path]
    assert data["table"] == [{"id": "projects/p/assets/a", "path": path}]
    assert data["image"] == [{"id": "x", "path": path, "band_names": ["B1", 'q"'], "properties": {"a b": 1.5}}]


def test_register_polygon_file_writes_an_escaped_catalog(tmp_path):
    """A user's polygon file in a folder whose name needs escaping is served under its asset id."""
    folder = tmp_path / 'we"ird\\name'
    folder.mkdir()
    src = folder / "mines.geojson"
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])  # self-intersecting: repaired
    square = shapely.box(2, 2, 3, 3)
    features = [
        {"type": "Feature", "geometry": json.loads(shapely.to_geojson(g)), "properties": {"id": i}}
        for i, g in enumerate([bowtie, square])
    ]
    src.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.warns(UserWarning, match="1 invalid"):
        asset, catalog, repaired = register_polygon_file(src, tmp_path / "cat", "my-project", base=src)
    assert (asset, repaired) == ("projects/my-project/assets/mines", 1)
    data = tomllib.loads(catalog.read_text())
    assert data["include"] == [str(src.resolve())]
    served = read_polygons(catalog.parent / data["table"][0]["path"])  # relative to the catalog, as the engine reads it
    assert [p["id"] for p in served.properties] == [0, 1]
    assert all(shapely.is_valid(g) for g in served.geometries)
    assert shapely.equals(served.geometries[1], square)
    assert abs(served.geometries[0].area - shapely.make_valid(bowtie).area) < 1e-12


def test_collections_carry_their_global_coverage_and_composites_warn_before_it(ee_local, tmp_path):
    """Earth Engine's catalog page for Sentinel-2 Level-2A: "WARNING: 2017-2018 L2 coverage in the EE
    collection is not yet global." (https://developers.google.com/earth-engine/datasets/catalog/COPERNICUS_S2_SR):
    the catalog marks the collection global from 2019-01-01 and a composite period starting earlier warns,
    naming the asset, the date and the fix."""
    import warnings

    from gee_mining.io.catalog import COVERAGE, coverage_entry
    from gee_mining.steps.sentinel2 import S2_SR, CompositeSpec, collection

    assert COVERAGE[S2_SR].global_from == "2019-01-01"
    path = tmp_path / "catalog.toml"
    path.write_text(catalog_text([coverage_entry(S2_SR)]))
    assert tomllib.loads(path.read_text())["image_collection"] == [{"id": S2_SR, "global_from": "2019-01-01"}]
    assert Catalog.from_file(path).asset_info(S2_SR)["properties"] == {"global_from": 1546300800000}  # 2019-01-01Z

    region = ee_local.Geometry.Point([-60.0, -3.0])
    with pytest.warns(UserWarning) as caught:
        collection(region, CompositeSpec(start="2018-06-01", end="2019-06-01"))
    text = str(caught[0].message)
    assert S2_SR in text and "2018-06-01" in text and "Start the period on 2019-01-01 or later" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        collection(region, CompositeSpec(start="2020-01-01", end="2021-01-01"))
        collection(region, CompositeSpec(start="2019-01-01", end="2019-02-01"))  # the first global day


def test_a_catalog_folder_copied_whole_serves_its_own_files(ee_local, tmp_path):
    """write_catalog writes the files inside its folder relative to it: after the folder is copied and the
    original deleted, the copy's engine serves the copy's table and raster (counted and averaged against the
    files read with shapely and numpy), and a file outside the folder keeps its absolute path."""
    import shutil

    import rasterio
    from rasterio.transform import from_origin

    from gee_mining.io.catalog import CatalogEntry, write_catalog

    first, outside = tmp_path / "first", tmp_path / "outside.geojson"
    (first / "sub").mkdir(parents=True)
    _write_ogr(first / "mines.geojson", "GeoJSON")
    shutil.copy(first / "mines.geojson", outside)
    pixels = np.arange(16, dtype=np.uint16).reshape(4, 4)
    with rasterio.open(first / "sub" / "b1.tif", "w", driver="GTiff", width=4, height=4, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 5000040, 10, 10)) as ds:  # fmt: skip
        ds.write(pixels, 1)
    entries = [table_entry("projects/copy-test/assets/inside", (first / "mines.geojson").resolve()),
               table_entry("projects/copy-test/assets/outside", outside.resolve()),
               CatalogEntry("image", {"id": "projects/copy-test/assets/img", "bands": {"B1": (first / "sub" / "b1.tif").resolve()}})]  # fmt: skip
    write_catalog(first / "catalog.toml", entries)
    data = tomllib.loads((first / "catalog.toml").read_text())
    assert [t["path"] for t in data["table"]] == ["mines.geojson", str(outside.resolve())]
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    shutil.rmtree(first)
    gee_mining.connect("local", project="copy-test", catalog=copy / "catalog.toml", storage_root=tmp_path / "storage")
    assert ee_local.FeatureCollection("projects/copy-test/assets/inside").size().getInfo() == len(POLYS)
    assert ee_local.FeatureCollection("projects/copy-test/assets/outside").size().getInfo() == len(POLYS)
    region = ee_local.Geometry.Rectangle([500000, 5000000, 500040, 5000040], "EPSG:32633", False)
    mean = ee_local.Image("projects/copy-test/assets/img").reduceRegion(ee_local.Reducer.mean(), region, 10).getInfo()
    assert mean["B1"] == pytest.approx(float(pixels.mean()))
