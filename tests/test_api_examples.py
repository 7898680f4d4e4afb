"""Earth Engine's own API reference examples, through the real ``ee`` client on the local engine.

``tests/data/ee_api_examples.json`` holds, for each example whose page prints its output: the page, the
expression (written out in Python, the page's variables inlined), the output as the page prints it, and
that output as a value (``expected``; ``tolerance`` from the printed digits). Where the page's printed
output is a typo, the case says why (``note``) and expects what the page's other lines imply. The
examples are those of the ``ee.Number``, ``ee.String``, ``ee.List``, ``ee.Date``, ``ee.Feature``,
``ee.Algorithms``, ``ee.ErrorMargin``, ``ee.PixelType``, ``ee.Projection`` and ``ee.Reducer`` pages
(``ee.Array``, which the engine does not implement, is left out). One test per page, so a mismatch names it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

CASES = json.loads((Path(__file__).parent / "data" / "ee_api_examples.json").read_text())
PAGES: dict[str, list[dict]] = defaultdict(list)
for _case in CASES:
    PAGES[_case["page"]].append(_case)


def _same(got, want, tol: float) -> bool:
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_same(g, w, tol) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same(got[k], want[k], tol) for k in want)
    if isinstance(want, bool) or isinstance(got, bool):
        return got == want
    if isinstance(want, int | float) and isinstance(got, int | float):
        if math.isnan(want) or math.isinf(want):
            return math.isnan(got) if math.isnan(want) else got == want
        return abs(got - want) <= tol + 1e-12 * abs(want)
    return got == want


def test_the_examples_cover_the_families():
    families = {c["page"].rsplit("/", 1)[-1].split("-")[1] for c in CASES}
    assert {"number", "string", "list", "date", "pixeltype", "errormargin"} <= families
    assert len(CASES) >= 300


@pytest.mark.parametrize("page", sorted(PAGES), ids=lambda p: p.rsplit("/", 1)[-1])
def test_api_reference_examples(ee_local, page):
    ee = ee_local
    wrong = []
    for case in PAGES[page]:
        value = eval(case["expression"], {"ee": ee, "math": math})  # noqa: S307 - the test's own data file
        got = value.getInfo() if hasattr(value, "getInfo") else value
        if not _same(got, case["expected"], case["tolerance"]):
            wrong.append(f"{case['expression']}: printed {case['printed']!r}, got {got!r}")
    assert not wrong, "\n".join(wrong)
