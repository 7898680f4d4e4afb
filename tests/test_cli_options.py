"""One consistent command line: every option has help and shows its default; ``--json`` on the commands whose
output is for machines; ``--quiet`` everywhere; progress on stderr; third-party start-up noise quieted."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re

import geopandas
import pytest
from conftest import TEST_DATA

from gee_mining.cli.evaluate import print_pixel_models
from gee_mining.cli.main import build_parser, main
from gee_mining.cli.output import QUIET_ENVIRONMENT, leaf_parsers

# The commands whose output is for machines (counts, plans, ledgers, figures): each takes --json.
JSON_COMMANDS = {
    "gee-mining grid",
    "gee-mining plan",
    "gee-mining export",
    "gee-mining algorithms",
    "gee-mining evaluate pyramid",
    "gee-mining evaluate yolo",
    "gee-mining pyramid plan",
    "gee-mining study run",
    "gee-mining classify evaluate",
    "gee-mining detect evaluate",
    "gee-mining detect cv",
    "gee-mining detect train",
    "gee-mining detect dataset",
}


def _commands():
    return list(leaf_parsers(build_parser()))


def test_every_option_of_every_command_has_help():
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in _commands()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert len(_commands()) >= 20  # the walk reaches the nested subcommands (detect train, pyramid plan...)
    assert missing == [], f"options without help text: {missing}"


def _spellings(default) -> set[str]:
    """How a help text may write a default: 20.0 as 20.0 or 20, a list of names by its first name."""
    text = str(default).split(",")[0]
    out = {text}
    if isinstance(default, float):
        out |= {f"{default:g}", f"{default:,.0f}"} if default.is_integer() else {f"{default:g}"}
    if isinstance(default, int) and not isinstance(default, bool):
        out.add(f"{default:,}")
    return out


def test_every_default_is_shown_in_the_help():
    hidden = []
    for name, parser in _commands():
        options = parser.format_help().split("options:", 1)[1]
        for action in parser._actions:
            nothing = action.default is None or action.default is False or action.default in ([], "", argparse.SUPPRESS)
            if not action.option_strings or nothing:  # 0 and 0.0 are defaults to show
                continue
            # the option's entry: from its flag to the next line that starts with a flag
            flag = action.option_strings[-1]
            start = re.search(rf"\n  (?:-\w, )?{re.escape(flag)}[ \n=]", options).start()
            entry = options[start + 1 :]
            entry = re.split(r"\n  -", entry, maxsplit=1)[0]  # up to the next option
            squeezed = "".join(entry.split())  # a wrapped "gee-\nmining-local" reads whole again
            if "default" not in entry.lower() or not any(v in squeezed for v in _spellings(action.default)):
                hidden.append(f"{name} {flag} (default {action.default!r})")
    assert hidden == [], f"options whose help hides the default: {hidden}"


def test_quiet_everywhere_and_json_where_output_is_for_machines():
    commands = dict(_commands())
    assert JSON_COMMANDS <= set(commands), JSON_COMMANDS - set(commands)
    for name, parser in commands.items():
        flags = {f for a in parser._actions for f in a.option_strings}
        assert "--quiet" in flags, name
        if name in JSON_COMMANDS:
            assert "--json" in flags, name


def test_grid_json_is_the_only_thing_on_stdout_and_agrees_with_the_table(tmp_path, capsys):
    out = tmp_path / "grid.parquet"
    argv = ["grid", "--polygons", str(TEST_DATA / "squares.geojson"), "--cell", "5500", "--out", str(out), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # nothing but the JSON document on stdout
    table = geopandas.read_parquet(out)
    (level,) = result["levels"]
    assert level["cells"] == len(table) > 0
    assert level["positives"] == int((table["label"] == 1).sum())
    assert level["negatives"] == len(table) - level["positives"]
    assert level["path"] == str(out)
    assert "[" in captured.err and " s] " in captured.err  # progress lines, with their elapsed time, on stderr


def test_quiet_leaves_only_the_result(tmp_path, capsys):
    out = tmp_path / "grid.parquet"
    argv = ["grid", "--polygons", str(TEST_DATA / "squares.geojson"), "--cell", "5500", "--out", str(out), "-q"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if not line.startswith("warning: ")] == []
    assert "positives" in captured.out and str(out) in captured.out


def test_plan_json_on_stdout_and_in_a_file(tmp_path, capsys):
    polygons = str(TEST_DATA / "squares.geojson")
    assert main(["plan", "--polygons", polygons, "--levels", "5500", "--json"]) == 0
    on_stdout = json.loads(capsys.readouterr().out)
    assert main(["plan", "--polygons", polygons, "--levels", "5500", "--json", str(tmp_path / "p.json")]) == 0
    assert "total_tasks" in capsys.readouterr().out  # with a file, the human summary still prints
    assert json.loads((tmp_path / "p.json").read_text()) == on_stdout
    frame = geopandas.read_file(polygons)
    assert on_stdout["polygons"]["count"] == frame.geom_type.isin(["Polygon", "MultiPolygon"]).sum()


def test_algorithms_json_lists_what_the_text_lists(capsys):
    assert main(["algorithms"]) == 0
    text = capsys.readouterr().out.split()
    assert main(["algorithms", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["implemented"] == text and len(text) == result["count"] > 100


def test_third_party_noise_is_quieted_unless_the_user_asks(monkeypatch, capsys):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's own setting wins
    for name in set(QUIET_ENVIRONMENT) - {"TF_CPP_MIN_LOG_LEVEL"}:
        monkeypatch.delenv(name, raising=False)
    assert main(["algorithms", "-q"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert os.environ["YOLO_VERBOSE"] == "False"  # read by ultralytics at import: no settings banner
    assert logging.getLogger("absl").getEffectiveLevel() >= logging.ERROR


@pytest.mark.parametrize("argv", [["grid", "--help"], ["detect", "train", "--help"], ["study", "run", "--help"]])
def test_help_shows_defaults(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert "(default: " in capsys.readouterr().out


def test_json_output_is_strict_json_even_with_undefined_figures(tmp_path):
    """An undefined figure (a NaN AUC on a one-class split) is null, never the bare NaN JSON forbids."""
    import numpy as np

    from gee_mining.cli.output import emit

    args = argparse.Namespace(json=str(tmp_path / "r.json"))
    emit(args, {"auc": float("nan"), "n": np.int64(3), "folds": [np.float32(0.5), float("inf")]}, lambda: None)
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in {text}")) == {
        "auc": None, "n": 3, "folds": [0.5, None]}  # fmt: skip


def test_a_warning_is_one_plain_line(monkeypatch):
    """Warnings (a polygon file with points in it...) print as one line naming the input, not the library's file
    and source line. (pytest records warnings itself, so the formatter is checked directly.)"""
    import warnings

    from gee_mining.cli.output import plain_warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    message = "--polygons a.gpkg: 1 Point feature(s) are not polygons and are left out."
    plain_warnings()
    assert warnings.formatwarning(message, UserWarning, "/x/gee_mining/io/polygons.py", 157) == f"warning: {message}\n"


def test_evaluate_figures_print_small_shares_with_their_digits_and_the_files_once(capsys):
    """A mine share of 0.0007 prints as 0.0007 (not 0.001), and the files an evaluation wrote print once, after
    every model's figures."""
    pooled = {"lasso": {"recall": 0.9791, "mine_share": 0.0007, "precision_at_mine_share": 0.00193, "pixels": 7312896},
              "cart": {"recall": 1.0, "mine_share": 0.0007, "precision_at_mine_share": 0.0, "pixels": 12}}  # fmt: skip
    print_pixel_models(pooled, "D/evaluation_study.json", "D/report_study/report.html")
    lines = capsys.readouterr().out.splitlines()
    assert "  mine_share: 0.0007" in lines and "  precision_at_mine_share: 0.0019" in lines
    assert "  recall: 0.979" in lines and "  pixels: 7,312,896" in lines and "  precision_at_mine_share: 0.000" in lines
    assert lines[-2:] == ["written: D/evaluation_study.json", "report: D/report_study/report.html"]
    assert sum(line.startswith("written:") for line in lines) == 1
