"""The rehearsal on the real Amazon polygons (bench/rehearsal_amazon.py), at a small radius: the cells the plan
makes of the 5,232 polygons at 1375 m within 3.5 km of the centre of a 3 km SIMULATED world, every batched
product through the launcher and the real ``ee`` client, limits on: tasks as planned, no interactive request
(but the per-cell products' scene counts), no task failed, each world cell's batch window compared with its own cell-image band by band and its batch
rows with its own pixel-table; cells outside the world: no file or an all-nodata window, and a clear failure
(no scene covers it) when exported alone. Every band and row equal (the labels too: see the end of the test)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import ROOT, shared_file


def _bench():
    spec = importlib.util.spec_from_file_location("rehearsal_amazon", ROOT / "bench" / "rehearsal_amazon.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_rehearsal_on_the_amazon_polygons_near_a_simulated_world(tmp_path):
    shared_file("polygons/amazon_mining_2024_model.geojson")  # skips without the shared real data
    bench = _bench()
    rep = bench.rehearse(tmp_path, level_m=1375.0, size_km=3.0, months=1, radius_km=3.5, say=lambda msg: None)
    assert rep.submitted == {p: rep.planned[p] for p in bench.BATCHED}
    assert rep.interactive == dict.fromkeys(bench.BATCHED, 0)
    assert 0 < len(rep.world_cells) < rep.cells  # some cells in the world, some outside
    assert rep.outside_failed_clearly == rep.outside_tried > 0  # a cell with no imagery alone: failed, no file
    # outside cells: no file, or a window all nodata of a 2 x 2-cell file block it shares with a world cell
    assert rep.outside_no_file + rep.outside_in_shared_file == rep.cells - len(rep.world_cells)
    assert rep.compared_bands > 0 and rep.compared_rows > 1000
    # Found by this rehearsal and fixed: a batch's labels took the polygons near its FIRST cell only, so cells far
    # from it missed their polygons; they now take those near the batch's rectangle. Every band equal.
    assert rep.mismatches == {}, sorted(rep.mismatches)
