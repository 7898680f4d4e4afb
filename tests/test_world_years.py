"""The multi-year SIMULATED world: its truth per year against its rendered materials and its scenes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from rasterio.features import geometry_mask

from gee_mining.errors import InputError
from gee_mining.world.landscape import WorldGrid
from gee_mining.world.spectra import MATERIAL_ID, MINE_MATERIALS
from gee_mining.world.years import YearsSpec, generate_years, plan_history

SPEC = YearsSpec(years=(2019, 2020, 2021), size_km=4.2, known_mines=2, new_mines=2, abandoned=1,
                 changes=(("field", 1), ("fire", 1), ("flood", 1), ("urban", 1)))  # fmt: skip


def test_spec_refuses_gaps_and_unknown_change():
    with pytest.raises(InputError, match="consecutive"):
        YearsSpec(years=(2019, 2021))
    with pytest.raises(InputError, match="changes"):
        YearsSpec(changes=(("volcano", 1),))


def test_history_grows_outward_and_stops_when_abandoned():
    grid = WorldGrid.around(-55.75, -6.25, 6.0)
    history = plan_history(grid, YearsSpec(abandoned=2), np.random.default_rng(3))
    for m in history.mines:
        outlines = [m.outline(y) for y in range(m.appeared, 2024)]
        for a, b in zip(outlines, outlines[1:], strict=False):
            assert b.buffer(1e-6).covers(a)  # outward only
            assert b.area >= a.area - 1e-6
        if m.abandoned:
            assert m.bare_area_m2(m.abandoned) == 0.0
            assert m.outline(2023).equals(m.outline(m.abandoned - 1))
        else:
            growth = m.outline(2023).area - m.outline(m.appeared).area
            assert growth > 0 or m.appeared == 2023
    shapes = [m.outline(2023) for m in history.mines] + [c.shape for c in history.changes]
    for i, a in enumerate(shapes):  # every shape apart: a change is never mistaken for a mine's growth
        assert all(a.distance(b) > 200 for b in shapes[i + 1 :])


@pytest.fixture(scope="module")
def years_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("years")
    return out, generate_years(out, SPEC, seed=5, workers=1)


def _pixels(path, utm_geom, band=1):
    with rasterio.open(path) as ds:
        inside = ~geometry_mask([utm_geom], ds.shape, ds.transform)
        return ds.read(band).astype(float), inside


def _grid(manifest):
    return WorldGrid(int(manifest.grid["crs"].split(":")[1]), *manifest.grid["origin"], manifest.grid["size_m"])


def _utm(grid, wkt):
    tf = grid.to_utm()
    return shapely.transform(shapely.from_wkt(wkt), lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


@pytest.mark.slow
def test_truth_area_is_the_mine_ground_rendered_each_year(years_world):
    out, manifest = years_world
    truth = pd.read_parquet(out / "truth" / "mines_by_year.parquet")
    grid = _grid(manifest)
    assert set(truth["known"]) == {True, False} and (truth.groupby("mine_id")["appeared"].nunique() == 1).all()
    for row in truth.itertuples():
        utm = _utm(grid, row.geometry_wkt)
        material, inside = _pixels(out / "truth" / "years" / f"{row.year}_material.tif", utm)
        mine_px = np.isin(material[inside], MINE_MATERIALS).sum() * 100.0
        if row.state == "active":
            assert mine_px == pytest.approx(row.area_m2, rel=0.08)
        else:  # abandoned: revegetated
            assert mine_px == 0 and (material[inside] == MATERIAL_ID["grass"]).mean() > 0.9
        after = truth[(truth.mine_id == row.mine_id) & (truth.year == row.year + 1)]
        if row.state == "active" and len(after) and after.iloc[0].state == "active":
            # disturbed: the pit and the ring cleared ahead of it (bare soil), i.e. next year's outline laid bare
            m, inside_next = _pixels(
                out / "truth" / "years" / f"{row.year}_material.tif", _utm(grid, after.iloc[0].geometry_wkt)
            )
            bare = np.isin(m[inside_next], [*MINE_MATERIALS, MATERIAL_ID["natural_soil"]]).sum() * 100.0
            assert bare == pytest.approx(row.disturbed_m2, rel=0.08) and row.disturbed_m2 > row.area_m2
        if row.year > row.appeared or not row.known:  # before it appeared there was no mine there
            before = out / "truth" / "years" / f"{row.appeared - 1}_material.tif"
            if before.exists():
                m0, in0 = _pixels(before, utm)
                assert not np.isin(m0[in0], MINE_MATERIALS[:3]).any()


@pytest.mark.slow
def test_scenes_of_every_year_in_one_collection_and_new_mines_only_in_the_registry_later(years_world):
    out, manifest = years_world
    years = sorted({s["time_start"][:4] for s in manifest.scenes})
    assert years == ["2019", "2020", "2021"]
    assert len({s["index"] for s in manifest.scenes}) == len(manifest.scenes)
    table = json.loads((out / "tables" / "mines.geojson").read_text())
    truth = pd.read_parquet(out / "truth" / "mines_by_year.parquet")
    known = sorted(truth.loc[truth.known, "mine_id"].unique())
    assert sorted(str(f["properties"]["id"]) for f in table["features"]) == known
    changes = json.loads((out / "truth" / "changes.json").read_text())
    assert changes["SIMULATED"] and {c["kind"] for c in changes["changes"]} == {"field", "fire", "flood", "urban"}
    assert manifest.parameters["years"] == [2019, 2020, 2021]


@pytest.mark.slow
def test_a_new_mine_turns_green_ground_bare_in_the_scenes(years_world):
    """In the clearest scene of each year, NDVI (numpy, from the scene's DN) over a new mine drops when it appears."""
    out, manifest = years_world
    grid = _grid(manifest)
    truth = pd.read_parquet(out / "truth" / "mines_by_year.parquet")
    new = truth[~truth.known & (truth.year == truth.appeared)].iloc[0]
    utm = _utm(grid, new.geometry_wkt).buffer(-15)
    ndvi = {}
    for year in (new.appeared - 1, new.appeared):
        scenes = [s for s in manifest.scenes if s["time_start"].startswith(str(year))]
        clear = min(scenes, key=lambda s: s["cloud_cover"])
        path = out / "S2_SR_HARMONIZED" / clear["index"] / "10m.tif"
        red, inside = _pixels(path, utm, band=3)
        nir, _ = _pixels(path, utm, band=4)
        ndvi[year] = float(np.median(((nir - red) / (nir + red))[inside]))
    assert ndvi[new.appeared - 1] > 0.4 > ndvi[new.appeared] + 0.15
