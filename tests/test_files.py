"""Result files are written whole or not at all (io.files.write_json)."""

import json

import pytest

from gee_mining.io.files import write_json


def test_write_json_round_trips_and_leaves_no_partial_file(tmp_path):
    path = write_json(tmp_path / "evaluation.json", {"recall": 0.5, "where": tmp_path})
    assert json.loads(path.read_text()) == {"recall": 0.5, "where": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation.json"]


def test_write_json_that_fails_leaves_the_previous_file(tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text('{"old": true}')
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        write_json(path, loop)
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation.json"]
