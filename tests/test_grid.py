"""Step 1, the grid: checked against an independent shapely + pyproj reference."""

from __future__ import annotations

import functools
import json
import math
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pyproj
import pytest
import shapely
from conftest import shared_file

from gee_mining.contracts.cells import (
    NEGATIVE_REACH,
    GridSpec,
    cell_name,
    check_nesting,
    decode_coordinate,
    encode_coordinate,
    parse_cell_name,
)
from gee_mining.errors import InputError
from gee_mining.io.grid_table import read_grid_table, write_table
from gee_mining.steps.grid import build_grid

MINES = "projects/gee-mining-test/assets/mining_tropics_demo"


@functools.cache
def reference_positives(path, size):
    """Cells of each polygon's UTM zone (by its centroid) overlapping the union of all polygons."""
    _, _, wkb, _ = pyogrio.raw.read(path)
    polys = list(shapely.from_wkb(wkb))
    zones = {}
    for p in polys:
        c = p.centroid
        epsg = (32600 if c.y >= 0 else 32700) + min(60, int(math.floor((c.x + 180) / 6)) + 1)
        zones.setdefault(epsg, []).append(p)
    out = {}
    for epsg, members in zones.items():
        # Polygons of other continents fall outside the zone's projection (infinite coordinates); none
        # of them can reach its cells.
        all_union = shapely.union_all(utm_polygons(polys, epsg))
        own = utm_polygons(members, epsg)
        zone_union = shapely.union_all(own)
        # every cell over the bounds of one of the zone's polygons (the only cells that can touch them)
        ij = set()
        for q in own:
            x0, y0, x1, y1 = q.bounds
            for i in range(math.floor(x0 / size), math.ceil(x1 / size)):
                for j in range(math.floor(y0 / size), math.ceil(y1 / size)):
                    ij.add((i, j))
        i, j = np.array(sorted(ij)).T
        cells = shapely.box(i * size, j * size, (i + 1) * size, (j + 1) * size)
        touch = shapely.intersects(cells, zone_union)
        frac = shapely.area(shapely.intersection(cells[touch], all_union)) / size**2
        for a, b, f in zip(i[touch].tolist(), j[touch].tolist(), frac.tolist(), strict=True):
            if f >= 0.001:
                out[(epsg, a, b)] = f
    return out, polys


@pytest.fixture(scope="module", params=[5500, 2750, 1375])
def grid_case(request, ee_local):
    path = shared_file("polygons/mining_tropics_demo.gpkg")
    spec = GridSpec.of(request.param)
    table = build_grid(ee_local, MINES, spec)
    return spec, table, path


def test_positives_and_overlaps_equal_reference(grid_case):
    spec, table, path = grid_case
    expected, _ = reference_positives(path, spec.cell_size)
    got = {(r["epsg"], r["cell_x"], r["cell_y"]): r["overlap"] for r in table.positives}
    assert set(got) == set(expected)
    worst = max(abs(got[k] - expected[k]) for k in got)
    assert worst < 1e-4, worst


def test_negatives_are_distinct_nearest_free_cells(grid_case):
    spec, table, path = grid_case
    _, polys = reference_positives(path, spec.cell_size)
    check_negatives(table, polys, spec.cell_size)


def check_negatives(table, polys, size):
    """One negative per positive, distinct, touching no polygon (shapely, pyproj), in its positive's zone, at
    the distance its row says, within the pairing's reach."""
    negatives = table.negatives
    assert len(negatives) == len(table.positives)
    keys = [(r["epsg"], r["cell_x"], r["cell_y"]) for r in negatives]
    assert len(set(keys)) == len(keys)
    by_name = {r["name"]: r for r in table.rows}
    tfs = {}
    for neg in negatives:
        epsg = neg["epsg"]
        tf = tfs.setdefault(epsg, pyproj.Transformer.from_crs(epsg, 4326, always_xy=True))
        x, y = neg["cell_x"] * size, neg["cell_y"] * size
        square = shapely.segmentize(shapely.box(x, y, x + size, y + size), size / 64)
        lonlat = shapely.transform(square, lambda xy, tf=tf: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        assert not any(lonlat.intersects(p) for p in polys), neg["name"]
        pos = by_name[neg["pair"]]
        d = size * math.hypot(pos["cell_x"] - neg["cell_x"], pos["cell_y"] - neg["cell_y"])
        assert neg["distance_m"] == pytest.approx(d)
        assert pos["epsg"] == neg["epsg"]
        assert max(abs(pos["cell_x"] - neg["cell_x"]), abs(pos["cell_y"] - neg["cell_y"])) <= NEGATIVE_REACH


def test_negatives_are_the_nearest_free_cells(grid_case, request):
    """No negative is farther from its positive than a cell that touches no polygon and that no pair at most
    as near took (pairs are taken nearest first)."""
    spec, table, path = grid_case
    _, polys = reference_positives(path, spec.cell_size)
    if spec.cell_size == 1375:
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "library bug (gee_mining/steps/grid.py pair_negatives): the search widens by Chebyshev radius "
            "(1, 3, 6, ...), so the radius-3 round takes a corner cell at 3*sqrt(2) = 4.24 cells while a free "
            "cell 4 cells away, outside that square, is never weighed: 020356_069911_16_neg")))  # fmt: skip
    far = nearer_free_cells(table, polys, spec.cell_size)
    assert not far, f"{len(far)} nearer free cell(s), e.g. (negative, cell, its distance, the negative's) {far[:3]}"


def nearer_free_cells(table, polys, size, tol=5.0):
    """The cells nearer to a positive (centre to centre) than its negative that are more than ``tol`` metres
    from every polygon (shapely, in the zone's UTM projection by pyproj) and that no pair at most as near took.

    Pairs are taken nearest first, so each such cell is a negative placed farther than it had to be."""
    by_name = {r["name"]: r for r in table.rows}
    taken = {}  # (epsg, x, y) -> the distance in cells from the positive that took it
    for neg in table.negatives:
        pos = by_name[neg["pair"]]
        taken[(neg["epsg"], neg["cell_x"], neg["cell_y"])] = math.hypot(
            pos["cell_x"] - neg["cell_x"], pos["cell_y"] - neg["cell_y"]
        )
    trees = {}
    out = []
    for neg in table.negatives:
        epsg, pos = neg["epsg"], by_name[neg["pair"]]
        px, py = pos["cell_x"], pos["cell_y"]
        d = math.hypot(px - neg["cell_x"], py - neg["cell_y"])
        if epsg not in trees:
            trees[epsg] = shapely.STRtree(utm_polygons(polys, epsg))
        reach = math.ceil(d)
        for x in range(px - reach, px + reach + 1):
            for y in range(py - reach, py + reach + 1):
                dc = math.hypot(x - px, y - py)
                if dc >= d - 1e-9:
                    continue
                if taken.get((epsg, x, y), math.inf) <= dc + 1e-9:
                    continue
                cell = shapely.box(x * size, y * size, (x + 1) * size, (y + 1) * size)
                if not len(trees[epsg].query(cell, predicate="dwithin", distance=tol)):
                    out.append((neg["name"], (epsg, x, y), dc * size, d * size))
    return out


def utm_polygons(polys, epsg):
    """The polygons (longitude, latitude) in a UTM zone, less those its projection cannot hold (infinite)."""
    tf = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    projected = [shapely.transform(p, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))) for p in polys]
    return [q for q in projected if np.isfinite(shapely.get_coordinates(q)).all()]


def test_names_round_trip_and_are_unique(grid_case):
    _, table, _ = grid_case
    names = [r["name"] for r in table.rows]
    assert len(names) == len(set(names))
    for r in table.rows:
        parsed = parse_cell_name(r["name"])
        assert parsed.lat == pytest.approx(r["lat"], abs=5e-4)
        assert parsed.lon == pytest.approx(r["lon"], abs=5e-4)
        assert parsed.is_negative == (r["label"] == 0)


def test_seed_name_example_and_signs():
    assert encode_coordinate(-29.5) == "029500"
    assert encode_coordinate(29.5) == "29500"
    assert decode_coordinate("029500") == -29.5
    assert decode_coordinate("29500") == 29.5
    assert decode_coordinate(encode_coordinate(-0.25)) == -0.25
    name = cell_name(-29.5, -70.125, 14, 0.1234)
    assert name == "029500_070125_14_12.3"
    parsed = parse_cell_name(name)
    assert (parsed.lat, parsed.lon, parsed.zoom, parsed.overlap_pct) == (-29.5, -70.125, 14, 12.3)
    assert parse_cell_name(cell_name(10.0, 20.0, 15, None)).is_negative
    with pytest.raises(InputError, match="not a cell name"):
        parse_cell_name("10_20_neg")


def test_bad_specs_are_clear():
    with pytest.raises(InputError, match="no zoom label"):
        GridSpec.of(3000)
    assert GridSpec.of(3000, zoom=13).cell_size == 3000
    with pytest.raises(InputError, match="break the nesting"):
        check_nesting([GridSpec.of(5500), GridSpec.of(1375)])
    check_nesting([GridSpec.of(5500), GridSpec.of(2750), GridSpec.of(1375)])
    with pytest.raises(InputError, match="positive size"):
        GridSpec(-5, 14)


def test_empty_polygon_set_is_an_error(ee_local):
    ee = ee_local
    empty = ee.FeatureCollection(MINES).filter(ee.Filter.eq("COUNTRY_NAME", "Atlantis"))
    shared_file("polygons/mining_tropics_demo.gpkg")
    with pytest.raises(InputError, match="empty"):
        build_grid(ee, empty, GridSpec.of(5500))


def test_outputs_are_written(grid_case, tmp_path):
    import pyarrow.parquet as pq

    spec, table, _ = grid_case
    if spec.cell_size != 5500:
        pytest.skip("written once")
    for suffix in ("parquet", "gpkg", "csv"):
        path = write_table(table, tmp_path / f"grid.{suffix}")
        assert path.exists()
    assert pq.read_table(tmp_path / "grid.parquet").num_rows == len(table.rows)
    meta, _, wkb, fields = pyogrio.raw.read(tmp_path / "grid.gpkg")
    assert len(wkb) == len(table.rows)
    assert list(meta["fields"])[:4] == ["name", "zoom", "cell_size", "label"]
    lines = (tmp_path / "grid.csv").read_text().splitlines()
    assert len(lines) == len(table.rows) + 1 and lines[0].startswith("name,zoom")
    with pytest.raises(InputError, match="parquet"):
        write_table(table, tmp_path / "grid.xlsx")


def test_levels_nest(ee_local):
    """Every 2750 m positive lies inside a 5500 m positive (parents kept for nesting are flagged)."""
    shared_file("polygons/mining_tropics_demo.gpkg")
    from gee_mining.steps.grid import build_levels

    coarse, fine = build_levels(ee_local, MINES, [GridSpec.of(5500), GridSpec.of(2750)])
    parents = {(r["epsg"], r["cell_x"], r["cell_y"]) for r in coarse.positives}
    for r in fine.positives:
        assert (r["epsg"], r["cell_x"] // 2, r["cell_y"] // 2) in parents, r["name"]
    kept = [r for r in coarse.positives if r["nesting_only"]]
    assert kept and all(r["overlap"] < 0.001 for r in kept)
    assert all(r["overlap"] >= 0.001 for r in coarse.positives if not r["nesting_only"])
    coarse_negatives = {(r["epsg"], r["cell_x"], r["cell_y"]) for r in coarse.negatives}
    assert not any((r["epsg"], r["cell_x"] // 2, r["cell_y"] // 2) in coarse_negatives for r in fine.positives)


def _write_polygons(path, geoms):
    pyogrio.raw.write(
        path,
        geometry=shapely.to_wkb(np.array(geoms, dtype=object)),
        field_data=[np.arange(len(geoms))],
        fields=["id"],
        crs="EPSG:4326",
        driver="GPKG",
        geometry_type="Polygon",
        layer="mines",
    )


def test_cli_grid_from_a_file_with_an_invalid_polygon(tmp_path, engine_catalog, capsys):
    import gee_mining
    from gee_mining.cli.main import main

    bowtie = shapely.Polygon([(10.0, 45.0), (10.02, 45.02), (10.02, 45.0), (10.0, 45.02)])  # self-intersecting
    square = shapely.box(10.1, 45.1, 10.12, 45.12)
    assert not bowtie.is_valid
    src = tmp_path / "mines.gpkg"
    _write_polygons(src, [bowtie, square])
    try:
        with pytest.warns(UserWarning, match="1 invalid polygon"):
            rc = main(["grid", "--polygons", str(src), "--cell", "5500", "--out", str(tmp_path / "grid.csv")])
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    assert rc == 0
    rows = (tmp_path / "grid.csv").read_text().splitlines()[1:]
    labels = [r.split(",")[3] for r in rows]
    assert labels.count("1") == labels.count("0") >= 2
    assert "positives" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cell", "5500", "--region", "170,0,190,10"], "outside the world"),
        (["--cell", "3000"], "no zoom label"),
        (["--levels", "5500,1375"], "break the nesting"),
    ],
)
def test_cli_grid_bad_input(tmp_path, capsys, args, message, engine_catalog):
    import gee_mining
    from gee_mining.cli.main import main

    src = tmp_path / "mines.gpkg"
    _write_polygons(src, [shapely.box(10.1, 45.1, 10.12, 45.12)])
    try:
        assert main(["grid", "--polygons", str(src), "--out", str(tmp_path / "g.csv"), *args]) == 2
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


def graph_algorithms(ee, obj) -> set[str]:
    """Every algorithm name in an object's expression graph."""
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            fi = node.get("functionInvocationValue")
            if isinstance(fi, dict) and "functionName" in fi:
                names.add(fi["functionName"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(ee.serializer.encode(obj, for_cloud_api=True))
    return names


def test_grid_graphs_use_only_earth_engine_algorithms(ee_local):
    from gee_mining.contracts.signatures import signatures
    from gee_mining.steps.grid import measured_cells, positive_cells, tag_zones, touching_cells

    ee = ee_local
    spec = GridSpec.of(5500)
    table = ee.FeatureCollection(MINES)
    tagged = tag_zones(ee, table, spec)
    pos = positive_cells(ee, table, tagged, 32633, spec, "id", ee.Geometry.Rectangle([10, 0, 20, 10]), ["1,2"])
    graph = ee.List([pos, touching_cells(ee, tagged, 32633, spec, 100.0), measured_cells(ee, 32633, spec, [(1, 2)])])
    used = graph_algorithms(ee, graph)
    assert used and used <= set(signatures()), used - set(signatures())


def _bounds_filters(encoded: dict) -> list[dict]:
    """Every ``Collection.filter`` node of an encoded graph whose filter is a bounds filter (``filterBounds``),
    with its ``collection`` argument resolved to the node it names."""
    values = encoded["values"]

    def node(v):
        return values[v["valueReference"]] if isinstance(v, dict) and "valueReference" in v else v

    found = []
    for value in values.values():
        call = value.get("functionInvocationValue") if isinstance(value, dict) else None
        if not call or call["functionName"] != "Collection.filter":
            continue
        flt = node(call["arguments"]["filter"]).get("functionInvocationValue", {})
        if flt.get("functionName") == "Filter.intersects":
            found.append(node(call["arguments"]["collection"]))
    return found


def test_each_cells_polygons_are_filtered_on_the_table_not_a_computed_collection(ee_local):
    """The per-cell ``filterBounds`` in :func:`positive_cells` runs on the polygon table as loaded
    (``Collection.loadTable`` of the asset), which Earth Engine answers from the table's spatial index;
    on the zone-tagged collection (a ``Collection.map``) every cell would scan every polygon. Read from the
    serialized graph: the bounds filter inside the per-cell function takes the table itself."""
    from gee_mining.steps.grid import positive_cells, tag_zones

    ee = ee_local
    spec = GridSpec.of(5500)
    table = ee.FeatureCollection(MINES)
    tagged = tag_zones(ee, table, spec)
    encoded = ee.serializer.encode(positive_cells(ee, table, tagged, 32719, spec, "id"), for_cloud_api=True)
    sources = [c.get("functionInvocationValue", {}).get("functionName") for c in _bounds_filters(encoded)]
    assert sources == ["Collection.loadTable"], sources  # the cell's polygons, from the table
    # The same check refuses the old graph: the cell's polygons filtered from the tagged collection.
    wrong = ee.serializer.encode(positive_cells(ee, tagged, tagged, 32719, spec, "id"), for_cloud_api=True)
    assert "Collection.map" in [c.get("functionInvocationValue", {}).get("functionName")
                                for c in _bounds_filters(wrong)]  # fmt: skip


def test_margin_keeps_negatives_away_from_polygons(ee_local):
    path = shared_file("polygons/mining_tropics_demo.gpkg")
    margin = 3000.0
    ee = ee_local
    region = ee.Geometry.Rectangle([-75, -25, -60, -15], None, False)  # the Chilean and Peruvian mines
    table = build_grid(ee, MINES, GridSpec.of(5500), region=region, margin=margin)
    _, polys = reference_positives(path, 5500)
    assert table.negatives
    for neg in table.negatives:
        epsg, size = neg["epsg"], neg["cell_size"]
        tf = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
        x, y = neg["cell_x"] * size, neg["cell_y"] * size
        cell = shapely.box(x, y, x + size, y + size)
        for p in polys:
            if abs(p.centroid.x - neg["lon"]) < 3 and abs(p.centroid.y - neg["lat"]) < 3:
                utm = shapely.transform(p, lambda xy, tf=tf: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
                assert utm.distance(cell) >= margin - 2.0, neg["name"]


@pytest.fixture(scope="module")
def world_grid(sim_world, _session_connection):
    """Step 1 on the session's small simulated world, whose catalog holds LSIB and WorldCover."""
    import ee

    import gee_mining

    world = sim_world
    gee_mining.connect("local", project="gee-mining-test", catalog=world.catalog)
    try:
        table = build_grid(ee, world.asset_ids["mines"], GridSpec.of(1375))
    finally:
        options, _ = _session_connection
        gee_mining.connect("local", **options)
    return world, table


def test_cells_carry_country_and_landcover(world_grid):
    import json
    from pathlib import Path

    import rasterio
    from rasterio.features import geometry_mask
    from shapely.geometry import shape

    world, table = world_grid
    root = Path(world.catalog).parent
    lsib = json.loads((root / "tables" / "lsib_simple_2017.geojson").read_text())["features"]
    item = json.loads((root / "worldcover.jsonl").read_text().splitlines()[0])
    with rasterio.open(root / item["bands"]["Map"]) as ds:
        classes, transform = ds.read(1), ds.transform
    assert not table.warnings
    for row in table.rows:
        centre = shapely.Point(row["lon"], row["lat"])
        expected = next((f["properties"]["country_na"] for f in lsib if shape(f["geometry"]).contains(centre)), None)
        assert row["country"] == expected
        shares = {k: v for k, v in row.items() if k.startswith("lc_")}
        inside = ~geometry_mask([cell_polygon_of(row)], classes.shape, transform)
        if not inside.any():
            continue  # a cell beyond the simulated land cover
        assert sum(shares.values()) == pytest.approx(1.0)
        values, counts = np.unique(classes[inside], return_counts=True)
        reference = dict(zip(values.tolist(), (counts / counts.sum()).tolist(), strict=True))
        dominant = max(reference, key=reference.get)
        assert max(shares, key=shares.get) == f"lc_{dominant}" or reference[dominant] < 0.5
        for cls, share in reference.items():
            assert shares.get(f"lc_{cls}", 0.0) == pytest.approx(share, abs=0.1)


def cell_polygon_of(row):
    from gee_mining.contracts.cells import cell_polygon

    return cell_polygon(row)


def test_metadata_columns_are_written(world_grid, tmp_path):
    _, table = world_grid
    path = write_table(table, tmp_path / "grid.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert "country" in header and any(h.startswith("lc_") for h in header)


def test_global_run_through_export_tasks_equals_interactive_run(ee_local, _session_connection):
    """The global route (Export.table per zone, then negatives from the files) gives the same grid."""
    import time

    from gee_mining.steps.grid import NO_METADATA, export_grid, grid_from_exports

    shared_file("polygons/mining_tropics_demo.gpkg")
    ee = ee_local
    spec = GridSpec.of(5500)
    region = ee.Geometry.Rectangle([-80, -30, -30, 10], None, False)  # South America
    tasks = export_grid(ee, MINES, spec, "grid-bucket", "run1", region=region, metadata=NO_METADATA)
    assert tasks and all(t.status()["description"].startswith("grid_z14_") for t in tasks)
    for task in tasks:
        for _ in range(600):
            state = task.status()["state"]
            if state in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            time.sleep(0.05)
        assert state == "COMPLETED", task.status()
    options, _ = _session_connection
    folder = options["storage_root"] / "grid-bucket" / "run1" / "z14"
    from_exports = grid_from_exports(ee, folder, spec, metadata=NO_METADATA)
    direct = build_grid(ee, MINES, spec, region=region, metadata=NO_METADATA)

    def cells(table):
        return {(r["epsg"], r["cell_x"], r["cell_y"], r["label"]): round(r["overlap"], 9) for r in table.rows}

    assert cells(from_exports) == cells(direct)
    assert sorted(r["name"] for r in from_exports.rows) == sorted(r["name"] for r in direct.rows)
    # Negatives measured 2 cells a request: the same table, in ceil(n / 2) requests per zone, none larger.
    engine = _session_connection[1].local_engine
    engine.router.calls.clear()
    bounded = grid_from_exports(ee, folder, spec, metadata=NO_METADATA, measure_block=2)
    per_zone = {}
    for r in bounded.negatives:
        per_zone[r["epsg"]] = per_zone.get(r["epsg"], 0) + 1
    assert cells(bounded) == cells(direct) and len(per_zone) >= 1
    assert engine.router.calls["compute_features"] == sum(-(-n // 2) for n in per_zone.values()) > 1
    with pytest.raises(InputError, match="no positives"):
        grid_from_exports(ee, folder.parent / "z99", spec)


def test_cli_grid_extra_metadata_columns_equal_rasterio_and_shapely(tmp_path, engine_catalog):
    """--image-stat: the mean of the real L1C crop's B4 over each cell, at the image's own 10 m, equals
    numpy over the pixels whose centres lie in the cell (rasterio); --table-property: the property of the
    table's feature at the cell's centre equals shapely's point-in-polygon answer."""
    import json

    import rasterio

    import gee_mining
    from gee_mining.cli.main import main
    from gee_mining.steps.grid import parse_image_stat, parse_table_property

    l1c = shared_file("imagery/s2_l1c_T33UUU_20170216/T33UUU_20170216T102101_B04.jp2")
    mine = shapely.box(12.60, 52.48, 12.605, 52.483)
    src = tmp_path / "mines.gpkg"
    _write_polygons(src, [mine])
    halves = [shapely.box(12.0, 52.0, 12.6, 53.0), shapely.box(12.6, 52.0, 13.0, 53.0)]
    regions = tmp_path / "regions.geojson"
    regions.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"side": side}, "geometry": shapely.geometry.mapping(g)}
        for side, g in zip(("west", "east"), halves, strict=True)]}))  # fmt: skip
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'include = ["{engine_catalog}"]\n\n[[table]]\nid = "projects/gee-mining-test/assets/regions"\n'
                       f'path = "{regions}"\n')  # fmt: skip
    image_id = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
    out = tmp_path / "grid.csv"
    try:
        rc = main(["grid", "--polygons", str(src), "--cell", "2750", "--catalog", str(catalog), "--project",
                   "gee-mining-test", "--out", str(out), "--image-stat", f"b4_mean={image_id}:B4:mean",
                   "--table-property", "side=projects/gee-mining-test/assets/regions:side"])  # fmt: skip
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    assert rc == 0
    import csv

    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and {r["label"] for r in rows} == {"0", "1"}
    with rasterio.open(l1c) as ds:
        band = ds.read(1).astype(float)
        t = ds.transform
        xs = t.c + (np.arange(ds.width) + 0.5) * t.a
        ys = t.f + (np.arange(ds.height) + 0.5) * t.e
    for r in rows:
        size = float(r["cell_size"])
        x0, y0 = int(r["cell_x"]) * size, int(r["cell_y"]) * size
        cols = (xs >= x0) & (xs < x0 + size)
        lines = (ys >= y0) & (ys < y0 + size)
        expected = band[np.ix_(lines, cols)].mean() if cols.any() and lines.any() else None
        if expected is None:
            assert r["b4_mean"] in ("", "None")
        else:
            assert float(r["b4_mean"]) == pytest.approx(expected, rel=1e-9)
        centre = pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(x0 + size / 2, y0 + size / 2)
        want = next(side for side, g in zip(("west", "east"), halves, strict=True) if g.contains(shapely.Point(centre)))
        assert r["side"] == want
    assert {int(r["epsg"]) for r in rows} == {32633}
    with pytest.raises(InputError, match="COLUMN=IMAGE_ID:BAND:REDUCER"):
        parse_image_stat("b4=onlyanid")
    with pytest.raises(InputError, match="not one of"):
        parse_image_stat("b4=an/id:B4:average")
    with pytest.raises(InputError, match="COLUMN=TABLE_ID:PROPERTY"):
        parse_table_property("side")


def test_reach_is_clear_of_antimeridian():
    """Zones near the antimeridian keep every neighbour's polygons. At 1375 m the reach is 50 cells
    across a diagonal, 97.2 km: 8.4 degrees of longitude at 84 degrees of latitude, plus a zone's width,
    14.4 degrees; zone 4 starts 18 degrees from the antimeridian, zone 3 only 12."""
    from gee_mining.contracts.cells import reach_is_clear_of_antimeridian

    reach = 50 * 1375 * math.sqrt(2)
    assert [z for z in range(1, 61) if reach_is_clear_of_antimeridian(32700 + z, reach)] == list(range(4, 58))
    assert not reach_is_clear_of_antimeridian(3857, 1.0)
    assert not reach_is_clear_of_antimeridian(32601, 1.0) and not reach_is_clear_of_antimeridian(32760, 1.0)


@pytest.mark.slow
def test_blocked_grid_equals_the_unblocked_grid_and_the_reference(ee_local):
    """Positives asked for in blocks of 3 x 3 cells (hundreds of requests, blocks across zone and antimeridian
    edges) give the same positive rows as one request per zone, and the shapely reference's cells; their
    negatives, paired group by group (where two groups' positives want one free cell, the earlier group's
    gets it), are as valid: one each, distinct, free of every polygon, within reach."""
    path = shared_file("polygons/mining_tropics_demo.gpkg")
    spec = GridSpec.of(5500)
    blocked = build_grid(ee_local, MINES, spec, block=3)
    whole = build_grid(ee_local, MINES, spec, block=None)

    def positives(table):
        return sorted(({k: v for k, v in r.items() if k != "pair"} for r in table.positives), key=lambda r: r["name"])

    assert positives(blocked) == positives(whole)
    expected, polys = reference_positives(path, spec.cell_size)
    assert {(r["epsg"], r["cell_x"], r["cell_y"]) for r in blocked.positives} == set(expected)
    check_negatives(blocked, polys, spec.cell_size)


@pytest.mark.slow
def test_a_large_box_grids_within_8_gib(tmp_path):
    """A 6 x 6 degree box at 5500 m (14,736 positives, most far from any free cell) under an 8 GiB
    address-space cap: it used to build every positive's 97 x 97 window of candidates at once and died with
    MemoryError here (a Brazil-sized box grew to 22.5 GB); now it succeeds."""
    box = [[-55.0, -10.0], [-49.0, -10.0], [-49.0, -4.0], [-55.0, -4.0], [-55.0, -10.0]]
    polygons = tmp_path / "box.geojson"
    feature = {"type": "Feature", "properties": {"id": 1}, "geometry": {"type": "Polygon", "coordinates": [box]}}
    polygons.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out = tmp_path / "grid.parquet"
    cap = 8 << 30

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    command = [sys.executable, "-m", "gee_mining.cli.main", "grid", "--polygons", str(polygons), "--cell", "5500"]
    done = subprocess.run(
        [*command, "--out", str(out)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        env={**os.environ, "MPLCONFIGDIR": str(tmp_path)},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_grid_table(out)
    positives = [r for r in rows if r["label"] == 1]
    assert len(positives) > 14_000
    assert len({r["name"] for r in rows}) == len(rows)


@pytest.mark.slow
def test_cli_grid_export_on_the_local_engine_keeps_its_files_for_from_exports(tmp_path, capsys, engine_catalog):
    """`grid --export` on the local engine waits for its tasks and leaves their files in a kept folder (printed,
    or --storage): before, they went into the command's scratch folder, deleted as it ended (and the tasks
    with the process). `grid --from-exports` of that folder gives the shapely reference's positives."""
    import re

    import gee_mining
    from gee_mining.cli.main import main

    squares = [shapely.box(10.1, 45.1, 10.16, 45.14), shapely.box(10.3, 45.3, 10.32, 45.32)]
    src = tmp_path / "mines.gpkg"
    _write_polygons(src, squares)
    try:
        args = ["grid", "--polygons", str(src), "--cell", "5500", "--export", "gs://grid-bucket/run"]
        assert main(args) == 0
        out = capsys.readouterr().out
        kept = Path(re.search(r"land in the folder (\S+)", out).group(1))
        assert main([*args, "--storage", str(tmp_path / "storage")]) == 0
        for root in (kept, tmp_path / "storage"):
            folder = root / "grid-bucket" / "run" / "z14"
            assert len(list(folder.glob("positives_EPSG*.geojson"))) == 1, list(root.rglob("*"))
        table = tmp_path / "grid.csv"
        args = ["grid", "--from-exports", str(kept / "grid-bucket/run/z14"), "--polygons", str(src), "--cell", "5500"]
        assert main([*args, "--out", str(table)]) == 0
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    rows = read_grid_table(table)
    tf = pyproj.Transformer.from_crs(4326, 32632, always_xy=True)
    union = shapely.union_all([shapely.transform(s, lambda xy: np.column_stack(tf.transform(*xy.T))) for s in squares])
    size = 5500.0
    x0, y0, x1, y1 = union.bounds
    expected = {
        (x, y)
        for x in range(math.floor(x0 / size), math.ceil(x1 / size))
        for y in range(math.floor(y0 / size), math.ceil(y1 / size))
        if shapely.box(x * size, y * size, (x + 1) * size, (y + 1) * size).intersection(union).area >= 0.001 * size**2
    }
    assert {(int(r["cell_x"]), int(r["cell_y"])) for r in rows if int(r["label"]) == 1} == expected
    assert sum(int(r["label"]) == 0 for r in rows) == len(expected)
