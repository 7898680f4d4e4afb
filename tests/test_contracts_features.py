"""The feature grammar and the tree text of ``gee_mining.contracts``, against numpy and scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from gee_mining.contracts.bands import BANDS
from gee_mining.contracts.features import check_feature, nd_pairs, normalized_difference, parse_nd
from gee_mining.contracts.models import tree_to_string
from gee_mining.errors import InputError


def test_normalized_difference_is_plain_numpy_arithmetic():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 100), rng.uniform(-1, 1, 100)
    np.testing.assert_array_equal(normalized_difference(a, b), np.subtract(a, b) / np.add(a, b))
    assert np.isnan(normalized_difference(np.zeros(1), np.zeros(1)))[0]


def test_pairs_are_every_later_band_against_each_earlier_one():
    want = sorted((b, a) for a, b in itertools.combinations(BANDS, 2))
    assert sorted(nd_pairs(BANDS)) == want and len(nd_pairs(BANDS)) == 66
    assert nd_pairs(("B4", "B8", "B11")) == [("B8", "B4"), ("B11", "B4"), ("B11", "B8")]


def test_parse_nd():
    assert parse_nd("ND_B8A_B4") == ("B8A", "B4") and parse_nd("NDVI") is None
    with pytest.raises(InputError, match="distinct"):
        parse_nd("ND_B4_B4")
    with pytest.raises(InputError, match="B99"):
        check_feature("B99")


def test_rpart_tree_text_holds_sklearn_leaf_proportions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, y)
    text = tree_to_string(tree, ["B4", "B8"], "rpart")
    leaves = [line for line in text.splitlines() if line.endswith("*")]
    probs = sorted(tuple(round(float(v), 3) for v in line.split("(")[1].split(")")[0].split()) for line in leaves)
    t = tree.tree_
    ids = np.flatnonzero(t.children_left == -1)
    want = sorted(tuple(round(float(v), 3) for v in t.value[i][0] / t.value[i][0].sum()) for i in ids)
    assert probs == want
