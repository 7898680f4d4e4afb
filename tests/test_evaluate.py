"""The pyramid's out-of-sample evaluation (SIMULATED): train and test worlds share nothing, and the reported
figures agree with independent references.

Two tiny worlds (5.52 km, one mine cluster each): seed 1 trains and calibrates, seed 2 is held out. References:
the worlds' own files read with json and shapely (squares, mine polygons, palettes in the manifests), earthlib's
library names, scipy's ``binomtest`` for the interval, and plain counting for the pooled figures.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import shlex
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import shapely
from scipy.stats import binomtest

from gee_mining.cli.evaluate import by_size, pyramid_spec
from gee_mining.cli.main import build_parser, command_line
from gee_mining.errors import InputError
from gee_mining.io.prepared import refuse_links
from gee_mining.pyramid.calibration import (
    clopper_pearson,
    cross_world_margin,
    level_threshold,
    margin_threshold,
    world_bootstrap_interval,
)
from gee_mining.pyramid.core import LevelStats, PyramidResult, PyramidSpec
from gee_mining.pyramid.evaluate import (
    EvaluationSpec,
    WorldsSpec,
    _prepare,
    check_disjoint,
    evaluate_pyramid,
    fine_cell_ratio_at_share,
    lost_mines,
    prepare_worlds,
    rates,
)
from gee_mining.pyramid.evaluate_yolo import YoloEvaluationSpec
from gee_mining.pyramid.world import seed_corner
from gee_mining.tools.heldout import HeldoutSpec
from gee_mining.tools.heldout_report import _ratio_at_share, pyramid_report
from gee_mining.world.spectra import LIBRARY_PARTS, build_palette, library_part, sample_stem


@pytest.mark.parametrize("k,n", [(0, 5), (3, 7), (200, 200), (190, 200)])
def test_clopper_pearson_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_margin_threshold_lowers_the_weakest_kept_mine():
    best = {f"m{i}": s for i, s in enumerate([0.9, 0.5, 0.2, 0.1, 0.0])}
    # keeping all 4 mines with signal puts the threshold at 0.1; the zero-signal mine cannot be kept
    assert margin_threshold(best, 1.0, 0.5) == pytest.approx(0.05)
    assert margin_threshold(best, 0.5, 1.0) == pytest.approx(0.2)  # keep ceil(0.5 * 5) = 3 mines: the 3rd best
    with pytest.raises(InputError, match="margin"):
        margin_threshold(best, 1.0, 0.0)


def test_cross_world_margin_is_the_worst_left_out_world():
    best = {("a", 1): 0.8, ("a", 2): 0.4, ("b", 1): 0.6, ("b", 2): 0.5, ("c", 1): 0.9, ("c", 2): 0.1}
    # keep every mine: leaving a out, b and c's weakest is 0.1 -> a's own 0.4 needs no lowering (factor 1);
    # leaving b out: 0.1 -> 1; leaving c out: min(a, b) = 0.4, c's weakest 0.1 -> 0.25
    assert cross_world_margin(best, 1.0) == pytest.approx(0.25)
    # keep half: a's own 0.8, b's 0.6, c's 0.9; leaving c out, the others' threshold keeping 2 of 4 is 0.6 -> 1
    # leaving a out: of (0.6, 0.5, 0.9, 0.1) the 2nd best 0.6 -> 0.8 / 0.6 > 1 -> 1; leaving b out: 0.8 -> 0.75
    assert cross_world_margin(best, 0.5) == pytest.approx(0.75)
    with pytest.raises(InputError, match="two calibration worlds"):
        cross_world_margin({("a", 1): 0.5}, 1.0)
    with pytest.raises(InputError, match="two train worlds"):
        EvaluationSpec((1,), (2,))  # the cross-world margin (the default) needs two


def test_a_level_that_prunes_few_cells_is_not_screened():
    best = {("a", 1): 0.4, ("b", 1): 0.2}  # keep both: threshold 0.2, halved by the margin: 0.1
    cells = [0.0, 0.05, 0.15, 0.3, 0.5, 0.6, 0.7, 0.8]  # 0.1 drops 2 of these 8 cells: 25 %
    assert level_threshold(best, cells, 1.0, 0.5) == pytest.approx((0.1, 0.2, 0.5, 0.25))
    assert level_threshold(best, cells, 1.0, 0.5, min_prune=0.25)[0] == pytest.approx(0.1)  # prunes enough
    t, unmargined, margin, pruned = level_threshold(best, cells, 1.0, 0.5, min_prune=0.3)
    assert t is None and unmargined == pytest.approx(0.2) and pruned == pytest.approx(0.25)
    # the cross-world margin: leaving a out, b's 0.2 is under a's own 0.4 (factor 1); leaving b out, 0.2 / 0.4
    assert level_threshold(best, cells, 1.0, None)[2] == pytest.approx(0.5)
    with pytest.raises(InputError, match="min_prune"):
        EvaluationSpec((1, 2), (3,), min_prune=1.0)


def test_spec_refuses_a_seed_in_both_sets():
    with pytest.raises(InputError, match="both train and test"):
        EvaluationSpec((1, 2), (2, 3))
    with pytest.raises(InputError, match="at least one"):
        EvaluationSpec((), (3,))
    with pytest.raises(InputError, match="screening 'svm'"):
        EvaluationSpec((1, 2), (3,), screening="svm")
    assert EvaluationSpec((1, 2), (3,)).screening == "forest"  # context screening unless asked otherwise
    with pytest.raises(InputError, match="extra months"):
        EvaluationSpec((1, 2), (3,), seasons=(1,))  # January is the worlds' first month already
    assert EvaluationSpec((1, 2), (3,), seasons=(9, 6, 6)).seasons == (6, 9)
    assert set(EvaluationSpec((1, 2), (3,)).pyramid_spec().islands) == {None}  # the plain share unless asked
    islands = EvaluationSpec((1, 2), (3,), island_weight=20).pyramid_spec().islands
    assert islands[:2] == (None, None) and [i.weight for i in islands[2:]] == [20, 20]  # the two finest levels
    with pytest.raises(InputError, match="island_weight"):
        EvaluationSpec((1, 2), (3,), island_weight=-1)


def test_mine_strata_option_reaches_the_spec_and_bad_strata_are_refused():
    """``evaluate pyramid --mine-strata 0.05,1`` sets the forest sample's size classes; unsorted, repeated or
    non-positive areas, or strata with the logistic screening (which draws no context sample), are refused."""
    base = ["evaluate", "pyramid", "--train-seeds", "1,2", "--test-seeds", "3", "--out", "o"]
    assert pyramid_spec(build_parser().parse_args(base)).mine_strata_km2 == ()
    assert pyramid_spec(build_parser().parse_args([*base, "--mine-strata", "0.05,1"])).mine_strata_km2 == (0.05, 1)
    for bad in ("1,0.05", "0.05,0.05", "0,1"):
        with pytest.raises(InputError, match=r"--mine-strata\).*ascending"):
            pyramid_spec(build_parser().parse_args([*base, "--mine-strata", bad]))
    with pytest.raises(InputError, match="--mine-strata 'small'"):
        pyramid_spec(build_parser().parse_args([*base, "--mine-strata", "small"]))
    with pytest.raises(InputError, match="--screening forest"):
        EvaluationSpec((1, 2), (3,), mine_strata_km2=(0.05,), screening="logistic")


def test_hard_negatives_option_reaches_the_spec_and_bad_counts_are_refused():
    """``evaluate pyramid --hard-negatives 1000`` asks for the second forest; a negative count, or hard negatives
    with the logistic screening (which fits no forest), are refused naming the option."""
    base = ["evaluate", "pyramid", "--train-seeds", "1,2", "--test-seeds", "3", "--out", "o"]
    assert pyramid_spec(build_parser().parse_args(base)).hard_negatives == 0
    assert pyramid_spec(build_parser().parse_args([*base, "--hard-negatives", "1000"])).hard_negatives == 1000
    with pytest.raises(InputError, match="--hard-negatives"):
        pyramid_spec(build_parser().parse_args([*base, "--hard-negatives", "-5"]))
    with pytest.raises(InputError, match="--hard-negatives"):
        EvaluationSpec((1, 2), (3,), hard_negatives=500, screening="logistic")


def test_evaluate_pyramid_builds_seasonal_worlds_unless_told_none():
    """`evaluate pyramid` gives its worlds June's scenes by default (the held-out goal's recall was reached with
    them); `--seasons none` is January alone, and the spec the library's own callers build keeps no season."""
    base = ["evaluate", "pyramid", "--train-seeds", "1,2", "--test-seeds", "3", "--out", "o"]
    assert pyramid_spec(build_parser().parse_args(base)).seasons == (6,)
    assert pyramid_spec(build_parser().parse_args([*base, "--seasons", "none"])).seasons == ()
    assert pyramid_spec(build_parser().parse_args([*base, "--seasons", "6,9"])).seasons == (6, 9)
    with pytest.raises(InputError, match="--seasons 'june'"):
        pyramid_spec(build_parser().parse_args([*base, "--seasons", "june"]))
    assert EvaluationSpec((1, 2), (3,)).seasons == ()  # the shared WorldsSpec default: tests' small worlds stay fast


def test_evaluate_pyramid_screens_five_levels_unless_told_otherwise():
    """`evaluate pyramid` screens five levels by default, each half the last's side, down to 171.875 m (the held-out
    figure's pyramid: a small pit is 4-16 % of such a cell, 1-4 % of a 343.75 m one); `--levels` and `--zooms`
    give the four-level pyramid of earlier runs, and the library's spec keeps four (tests' worlds stay fast)."""
    base = ["evaluate", "pyramid", "--train-seeds", "1,2", "--test-seeds", "3", "--out", "o"]
    spec = pyramid_spec(build_parser().parse_args(base))
    assert len(spec.levels) == 5 and spec.levels[-1] == 171.875
    assert all(a == 2 * b for a, b in zip(spec.levels, spec.levels[1:], strict=False))
    assert list(spec.zooms) == list(range(spec.zooms[0], spec.zooms[0] + 5))
    four = pyramid_spec(build_parser().parse_args([*base, "--levels", "2750,1375,687.5,343.75",
                                                   "--zooms", "15,16,17,18"]))  # fmt: skip
    assert four.levels == (2750, 1375, 687.5, 343.75) and EvaluationSpec((1, 2), (3,)).levels == four.levels


def test_library_halves_share_no_spectrum_and_no_sample():
    rng = np.random.default_rng
    drawn = {p: set(build_palette(rng(7), part=p).names) - {"modelled:clear_water", "modelled:turbid_pit_water"}
             for p in LIBRARY_PARTS}  # fmt: skip
    assert drawn["train"] and drawn["test"] and not drawn["train"] & drawn["test"]
    for part, names in drawn.items():
        assert all(library_part(n, by_sample=True) == part or library_part(n, by_sample=False) == part for n in names)
    # replicates of one gravel sample land in the same half
    assert sample_stem("mugexx.002-") == sample_stem("mugexx.001-") == "mugexx"
    assert library_part("mugexx.002-") == library_part("mugexx.001-")


def test_seed_corners_do_not_overlap():
    size = 11.04e3
    squares = [shapely.box(x, y - size, x + size, y) for x, y in (seed_corner(s, 11.04) for s in range(20))]
    for i, a in enumerate(squares):
        for b in squares[i + 1 :]:
            assert a.intersection(b).area == 0
    assert all(x % 16500 == 561000 % 16500 for x, _ in (seed_corner(s, 11.04) for s in range(20)))


@pytest.fixture(scope="module")
def sim(ee_local, engine_catalog, tmp_path_factory):
    import gee_mining

    out = tmp_path_factory.mktemp("evaluate")
    # the pixel-only screening: these tests are about the protocol, and the forest (tests/test_context.py) is slower
    spec = EvaluationSpec((1,), (2,), size_km=5.52, clusters=1, pixels=500, margin=0.5, screening="logistic")
    report = evaluate_pyramid(out, spec)
    yield out, spec, report
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


def _world(out: Path, seed: int) -> tuple[list[shapely.Geometry], set[str]]:
    """A world's mine polygons and drawn spectra, read from its own files."""
    world = out / f"seed_{seed}" / "world"
    manifest = json.loads((world / "manifest.json").read_text())
    mines = json.loads((world / "tables" / "mines.geojson").read_text())["features"]
    polys = [shapely.geometry.shape(f["geometry"]) for f in mines]
    return polys, {n for n in manifest["truth"]["palette"] if not n.startswith("modelled:")}


def test_train_and_test_worlds_share_no_seed_mine_or_spectrum(sim):
    out, spec, report = sim
    assert report["protocol"]["train_seeds"] == [1] and report["protocol"]["test_seeds"] == [2]
    assert [w["seed"] for w in report["worlds"]] == [2]  # only held-out worlds are reported
    train_mines, train_spectra = _world(out, 1)
    test_mines, test_spectra = _world(out, 2)
    assert train_mines and test_mines
    assert not any(a.intersects(b) for a in train_mines for b in test_mines)
    assert shapely.union_all(train_mines).distance(shapely.union_all(test_mines)) > 0.05  # degrees: other squares
    assert train_spectra and test_spectra and not train_spectra & test_spectra
    manifests = [json.loads((out / f"seed_{s}" / "world" / "manifest.json").read_text()) for s in (1, 2)]
    assert [m["seed"] for m in manifests] == [1, 2]
    assert [m["parameters"]["library_part"] for m in manifests] == ["train", "test"]


def test_check_disjoint_refuses_a_world_used_twice(sim):
    out, _, _ = sim
    # the held-out world offered as train and test: the same seed, then (under another seed) the same square,
    # mines and spectra
    same = SimpleNamespace(world=SimpleNamespace(out_dir=str(out / "seed_2" / "world")), epsg=32721,
                           bounds=(0.0, 0.0, 10.0, 10.0))  # fmt: skip
    with pytest.raises(InputError, match="both train and test"):
        check_disjoint({2: same}, {2: same})
    with pytest.raises(InputError, match="overlaps"):
        check_disjoint({3: same}, {2: same})
    moved = SimpleNamespace(world=same.world, epsg=32721, bounds=(100.0, 0.0, 110.0, 10.0))
    with pytest.raises(InputError, match="mine"):
        check_disjoint({3: same}, {2: moved})


def test_pooled_figures_are_counts_of_the_world_figures(sim):
    out, spec, report = sim
    (w,) = report["worlds"]
    pooled = report["pooled"]
    assert pooled["SIMULATED"] is True and w["SIMULATED"] is True
    assert pooled["mines"] == w["mines"] > 0
    assert pooled["recall"] == pytest.approx(w["detected"] / w["mines"])
    ci = binomtest(w["detected"], w["mines"]).proportion_ci(method="exact")
    assert (pooled["recall_ci_low"], pooled["recall_ci_high"]) == pytest.approx((ci.low, ci.high))
    # at the worlds' own mine share the projected fine-cell ratio is the measured one
    own = pooled["mine_area_km2"] / pooled["area_km2"]
    assert fine_cell_ratio_at_share(pooled["fine_cells"], pooled["false_alarm_cells"], pooled["exhaustive_fine_cells"],
                                    pooled["area_km2"], pooled["mine_area_km2"], own) == pytest.approx(
        pooled["exhaustive_fine_cells"] / pooled["fine_cells"])  # fmt: skip
    # one world: every resample of the worlds is that world, so the world interval is the point
    assert pooled["recall_ci_low_worlds"] == pooled["recall_ci_high_worlds"] == pytest.approx(pooled["recall"])
    assert pooled["exhaustive_fine_cells"] == 4 * 4**3  # 2 x 2 start cells of 2750 m, three halvings
    assert 0 < pooled["fine_cells"] <= pooled["exhaustive_fine_cells"]
    assert pooled["area_km2"] == pytest.approx(5.52**2)
    assert pooled["false_alarms_per_1000km2"] == pytest.approx(
        1000 * w["false_alarm_boxes"] / (w["area_km2"] - w["mine_area_km2"])
    )
    assert sum(b["mines"] for b in pooled["recall_by_size"]) == pooled["mines"]
    # the thresholds in the report are the ones calibrated on the train world only
    cal = report["protocol"]["calibration"]
    assert cal["worlds"] == ["seed_1"] and all(t is None or 0 < t < 1 for t in cal["thresholds"])
    assert cal["thresholds"][-1] is not None  # the fine level always screens (a coarse one may keep every cell)
    assert json.loads((out / "evaluation.json").read_text())["pooled"]["mines"] == pooled["mines"]
    lines = [json.loads(line) for line in (out / "worlds.jsonl").read_text().splitlines()]
    assert [(x["seed"], x["detected"], x["fine_cells"]) for x in lines] == [(w["seed"], w["detected"], w["fine_cells"])]


def test_each_missed_mine_names_the_stage_that_lost_it():
    """A mine dropped by a screening level is lost there; one a kept fine cell still touched but no box did is lost
    to the detector; a found mine is not listed, even where the screening had dropped it (a box of a neighbouring
    cell touched it)."""
    spec = PyramidSpec.of((1375, 687.5), (16, 17))
    levels = [LevelStats(16, 1375, 21.5, 0.1, 4, 2, 100, mines_dropped=["a"]),
              LevelStats(17, 687.5, 10.7, 0.2, 8, 3, 100, mines_dropped=["b", "d"])]  # fmt: skip
    result = PyramidResult(spec, levels, [[], []], [[], []], known_mines=["a", "b", "c", "d", "e"],
                           detected_mines=["d", "e"])  # fmt: skip
    lost = lost_mines(result, {"a": 0.01, "b": 2.0, "c": 0.3}, {"a": "artisanal"})
    assert [(m["id"], m["lost_at"], m["kind"], m["area_km2"]) for m in lost] == [
        ("a", "z16", "artisanal", 0.01), ("b", "z17", "mine", 2.0), ("c", "detector", "mine", 0.3)]  # fmt: skip


def test_the_held_out_worlds_list_their_missed_mines(sim):
    out, spec, report = sim
    (w,) = report["worlds"]
    features = json.loads((out / "seed_2" / "world" / "tables" / "mines.geojson").read_text())["features"]
    props = {str(f["properties"]["id"]): f["properties"] for f in features}
    assert len(w["lost"]) == w["mines"] - w["detected"]
    missed = report["pooled"]["missed"]
    assert sum(missed["lost_at"].values()) == sum(missed["kind"].values()) == w["mines"] - w["detected"]
    for m in w["lost"]:
        assert m["area_km2"] == pytest.approx(props[m["id"]]["area_m2"] / 1e6)
        assert m["kind"] == props[m["id"]].get("kind", "mine")
    # the report lists each of them; a world that missed none gets a made-up miss to show the section
    doc = json.loads(json.dumps(report))
    doc["worlds"][0]["lost"] = w["lost"] or [{"id": "7", "area_km2": 0.0123, "kind": "artisanal", "lost_at": "z18"}]
    page = pyramid_report(out, doc).read_text()
    section = page.rsplit("Where the missed mines were lost", 1)[1].split("</table>")[0]  # after the heading
    assert section.count("<tr>") - 1 == len(doc["worlds"][0]["lost"])
    cells = {f"z{z}": size for z, size in zip(spec.zooms, spec.levels, strict=True)}
    assert all(f">{m['lost_at']} ({cells[m['lost_at']]:g} m cells)</td>" in section for m in doc["worlds"][0]["lost"])


def test_the_cli_prints_recall_by_size_as_one_line_a_size_class(sim):
    """The pooled figures a person reads: each size class as found/mines = recall, counted here from the world's own
    mine areas and found ids; the JSON keeps the bins with their intervals."""
    _, _, report = sim
    lines = by_size(report["pooled"])["recall_by_size"]
    (w,) = report["worlds"]
    lost = {m["id"] for m in w["lost"]}
    features = json.loads((sim[0] / "seed_2" / "world" / "tables" / "mines.geojson").read_text())["features"]
    areas = [(str(f["properties"]["id"]), f["properties"]["area_m2"] / 1e6) for f in features]
    for name, (lo, hi) in {"0-0.05 km2": (0, 0.05), "0.05-0.2 km2": (0.05, 0.2), "0.2-1 km2": (0.2, 1),
                           "1 km2 and over": (1, float("inf"))}.items():  # fmt: skip
        ids = [m for m, a in areas if lo <= a < hi]
        found = sum(m not in lost for m in ids)
        assert lines[name] == (f"{found}/{len(ids)} = {found / len(ids):.3f}" if ids else "0/0")
    assert isinstance(report["pooled"]["recall_by_size"], list)  # the report itself is left as it was


def test_fine_cell_ratio_at_a_realistic_share_by_hand():
    """100 kept of 400 exhaustive cells on 50 km2, 10 of them mined, 60 kept cells touching no mine; at a 1 %
    mine share: 60/40 x 0.99 + 40/10 x 0.01 = 1.525 kept cells a km2 against 8, so 8 / 1.525 = 5.2459x."""
    assert fine_cell_ratio_at_share(100, 60, 400, 50.0, 10.0, 0.01) == pytest.approx(8 / 1.525)
    assert fine_cell_ratio_at_share(0, 0, 400, 50.0, 10.0, 0.01) is None  # nothing kept: no ratio


def test_the_report_never_rounds_the_ratio_at_a_realistic_share_up_to_a_goal():
    """The held-out run's 9.9745x at a 0.07 % mine share read "10.0x" in the report, as if the 10x goal were met:
    the sentence rounds down, to two decimals."""
    p = {"fine_cell_ratio_at_mine_share": 9.974487719493697, "mine_area_km2": 52.65, "area_km2": 1340.7,
         "mine_share": 0.0007}  # fmt: skip
    text = _ratio_at_share(p)
    assert "9.97x fewer fine cells" in text and "10.0" not in text
    assert "10.00x" in _ratio_at_share({**p, "fine_cell_ratio_at_mine_share": 10.0})


def test_rates_at_a_realistic_share():
    r = rates(area_km2=100.0, mine_km2=1.0, fa_cells=3, fa_boxes=9, true_boxes=5, mine_share=0.01)
    assert r["false_alarms_per_1000km2"] == pytest.approx(1000 * 9 / 99)
    t, f = 5 / 1.0 * 0.01, 9 / 99 * 0.99
    assert r["precision_at_mine_share"] == pytest.approx(t / (t + f))


def test_a_rerun_reuses_the_prepared_worlds(sim):
    out, spec, _ = sim
    manifest = out / "seed_2" / "world" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    again = _prepare((out / "seed_2", 2, "test", spec))
    assert manifest.stat().st_mtime_ns == before  # not generated again
    saved = json.loads((out / "seed_2" / "prepared.json").read_text())["saved"]
    assert again.bounds == tuple(saved["bounds"]) and again.composite_id == saved["composite_id"]
    size = 5.52e3
    x0, top = seed_corner(2, 5.52)
    assert again.bounds == pytest.approx((x0, top - size, x0 + size, top))  # the seed's own square
    assert Path(again.world.out_dir) == out / "seed_2" / "world"


def test_a_world_of_older_generator_code_is_not_reused(sim, tmp_path):
    """The reuse key holds the generator's source digest: a copy of the world package digests alike, one edited
    byte does not, and a marker saved under another digest is not read back."""
    import shutil

    from gee_mining.io.prepared import read_prepared
    from gee_mining.world.manifest import WORLD_PACKAGE, generator_digest

    copy = tmp_path / "world"
    shutil.copytree(WORLD_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert generator_digest(copy) == generator_digest()
    (copy / "realism.py").write_text((copy / "realism.py").read_text() + "\n# edited\n")
    assert generator_digest(copy) != generator_digest()
    out = sim[0] / "seed_2"
    key = json.loads((out / "prepared.json").read_text())["key"]
    assert key["generator"] == generator_digest()
    assert read_prepared(out, {**key, "generator": generator_digest(copy)}) is None


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("linked", ["seed_2", "seed_2/world"])
def test_a_linked_world_folder_is_refused_before_any_world_is_built(tmp_path, linked):
    """A seed folder that is, or holds, a link to another run's world is refused with the path and the fix, before
    the first world is built, and the other run's files are left as they were."""
    other = tmp_path / "other_run" / "seed_2"
    (other / "world").mkdir(parents=True)
    (other / "world" / "manifest.json").write_text('{"seed": 2}')
    (other / "prepared.json").write_text("{}")
    before = _files(tmp_path / "other_run")
    out = tmp_path / "run"
    (out / "seed_2").mkdir(parents=True) if linked != "seed_2" else out.mkdir()
    (out / linked).symlink_to(other / Path(linked).relative_to("seed_2"))
    with pytest.raises(InputError) as err:
        prepare_worlds(out, EvaluationSpec((1,), (2,), margin=0.5), print)
    assert str(out / linked) in str(err.value) and f"rm {out / linked}" in str(err.value)
    assert not (out / "seed_1").exists()  # refused before seed 1's world was built
    assert _files(tmp_path / "other_run") == before


def test_refuse_links_passes_a_plain_folder_and_finds_a_deep_link(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_text("x")
    refuse_links(tmp_path / "a")  # no link: no error
    refuse_links(tmp_path / "absent")  # a folder still to be made: no error
    (tmp_path / "a" / "b" / "g.txt").symlink_to(tmp_path / "a" / "b" / "f.txt")
    with pytest.raises(InputError, match="g.txt is a link to"):
        refuse_links(tmp_path / "a")


def test_every_evaluation_spec_is_one_worlds_spec():
    """The world fields are declared once (WorldsSpec), so the three evaluations validate seeds alike and a folder
    of worlds serves each: none of them declares a world field of its own."""
    world_fields = {f.name for f in fields(WorldsSpec)}
    assert world_fields == {
        "train_seeds",
        "test_seeds",
        "size_km",
        "clusters",
        "months",
        "realism",
        "workers",
        "seasons",
    }
    for cls in (EvaluationSpec, HeldoutSpec, YoloEvaluationSpec):
        assert issubclass(cls, WorldsSpec) and not world_fields & set(cls.__annotations__), cls
        with pytest.raises(InputError, match=r"seed\(s\) \[2\] are both train and test"):
            cls((1, 2), (2, 3))
        spec = cls(("1", "2"), [3], size_km=5.52, clusters=2, realism="easy")
        assert (spec.train_seeds, spec.test_seeds, spec.size_km, spec.clusters, spec.realism) == (
            (1, 2), (3,), 5.52, 2, "easy")  # fmt: skip


def test_the_pyramid_report_shows_the_held_out_figures(sim):
    """`evaluate pyramid`'s report: the per-world row carries what worlds.jsonl recorded as the world finished, the
    pooled row the fine-cell ratio of those counts, a recall-by-size figure, and one calibration row per level."""
    out, spec, report = sim
    argv = ["evaluate", "pyramid", "--train-seeds", "1", "--test-seeds", "2", "--out", "my runs/a"]
    page = pyramid_report(out, report, command_line(argv)).read_text()
    shown = re.search(r"<td>command</td><td>(.*?)</td>", page).group(1)
    assert shlex.split(html.unescape(shown)) == ["gee-mining", *argv]  # the whole command, as a shell reads it back
    (world,) = [json.loads(line) for line in (out / "worlds.jsonl").read_text().splitlines()]
    rows = {r[0]: r[1:] for r in (re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>.*?</tr>", page))
            if r}  # fmt: skip
    assert rows["world 2"][0] == f"{world['detected']}/{world['mines']}"
    assert rows["world 2"][2] == f"{world['fine_cells']:,} of {world['exhaustive_fine_cells']:,}"
    ratio = world["exhaustive_fine_cells"] / world["fine_cells"]
    assert rows["pooled"][2].endswith(f"({ratio:.1f}x fewer)")
    assert page.count("<img") == 1 and "SIMULATED: recall by mine area" not in page  # the title is in the image
    levels = page.rsplit("Thresholds calibrated on the train worlds", 1)[1].split("</table>")[0]  # after the heading
    assert levels.count("<tr>") - 1 == len(spec.levels)
    assert "<td>train worlds (seeds)</td><td>1</td>" in page and "<td>held-out worlds (seeds)</td><td>2</td>" in page


def test_world_bootstrap_interval_matches_the_enumerated_bootstrap():
    """Three worlds: the bootstrap over worlds has 27 equally likely resamples, enumerated here; the sampled
    percentile interval lands on their exact quantiles (to the sampling error of 20,000 draws), and it is wider than
    Clopper-Pearson over the mines when one world holds most of the misses."""
    detected, mines = [30, 2, 19], [31, 12, 20]
    shares = sorted(sum(detected[i] for i in pick) / sum(mines[i] for i in pick)
                    for pick in itertools.product(range(3), repeat=3))  # fmt: skip
    exact = np.quantile(np.repeat(shares, 1000), [0.025, 0.975])
    low, high = world_bootstrap_interval(detected, mines)
    assert abs(low - exact[0]) < 0.02 and abs(high - exact[1]) < 0.02
    cp_low, cp_high = clopper_pearson(sum(detected), sum(mines))
    assert low < cp_low and high - low > cp_high - cp_low
    with pytest.raises(InputError, match="0 <= detected <= mines"):
        world_bootstrap_interval([3], [2])
