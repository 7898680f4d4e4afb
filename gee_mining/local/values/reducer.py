"""Earth Engine reducers: the ``Reducer`` value and the ``Reducer.*`` algorithms.

A :class:`Reducer` is a value like any other engine value (``ee_type =
"Reducer"``): algorithms build it, others apply it. Whoever applies one
(``List.reduce``, ``Collection.reduceColumns``, later image reductions) hands
:meth:`Reducer.reduce` one column per reducer input and gets back
``{output_name: value}``.

Columns are Python lists (``None`` is a null and is skipped, as Earth Engine
skips null inputs) or 1-D numpy arrays (a masked entry of a
``numpy.ma.MaskedArray`` is a null; NaN is an ordinary value). Optional
``weights`` (one per row) stand for Earth Engine's pixel weights: a row of
weight 0 is absent for every reducer; the weights themselves are used by the
reducers Earth Engine documents as "(weighted)" (sum, mean, frequencyHistogram,
circular*, linearFit) and by stdDev, variance and fixedHistogram (population
moments and counts with frequency weights). Order statistics and the sample
statistics ignore them. ``Reducer.to_info`` answers ``{'type':
'Reducer.<name>', <non-null arguments>}``, a shape not confirmed against Earth
Engine. Numeric work is vectorised float64
numpy; counts come back as Python ints, and values taken from the inputs
(``min``, ``first``, ``toList``) come back as they went in.

Where Earth Engine computes an order statistic from a histogram once there
are more than ``maxRaw`` inputs (``median``, ``percentile``, ``mode``), this
engine always computes it exactly from the values, which is what Earth Engine
documents for small inputs. Percentiles interpolate linearly between the
closest ranks, so ``p0``, ``p50`` and ``p100`` are the minimum, the median
(mean of the two middle values for an even count) and the maximum, as the
``ee.Reducer.percentile`` reference says.

Not implemented (Earth Engine's exact definitions could not be confirmed, or
they need ``ee.Array``): ``histogram`` and ``autoHistogram`` (their automatic
bucketing), ``intervalMean``, ``skew``, ``kurtosis``, ``kendallsCorrelation``,
``sensSlope``, and the array reducers (``linearRegression``, ``covariance``,
``centeredCovariance``, ``ridgeRegression``, ``robustLinearRegression``,
``toCollection``, ``fixed2DHistogram``, ``geometricMedian``, ``disaggregate``,
``histogramCombiner``, ``forEachBand``, ``forEachElement``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.info import to_info
from gee_mining.local.core.registry import algorithm
from gee_mining.local.core.types import ee_type_of

# -- inputs ------------------------------------------------------------------


class _Inputs:
    """The columns of one reduction: values, which rows take part, which entries are non-null.

    ``mask`` marks the rows that take part (weight > 0); ``valid[i]`` marks the
    rows that take part and whose input ``i`` is not null. ``weights`` is None
    when the reduction is unweighted.
    """

    def __init__(
        self,
        values: list[np.ndarray],
        valid: list[np.ndarray],
        mask: np.ndarray,
        weights: np.ndarray | None,
        numeric: dict[int, np.ndarray] | None = None,
        plain: tuple[list[np.ndarray], np.ndarray] | None = None,
    ):
        self.values = values
        self.valid = valid
        self.mask = mask
        self.weights = weights
        self.n = len(mask)
        self._numeric: dict[int, np.ndarray] = {} if numeric is None else numeric
        # (valid, mask) for unweighted reducers when they take other rows than weighted ones
        # (image regions: pixel centres in the region vs. pixels partly covered); see reduce_region_rows
        self.plain = plain

    @classmethod
    def build(cls, columns: Sequence[Any], weights: Any, name: str) -> _Inputs:
        values: list[np.ndarray] = []
        valid: list[np.ndarray] = []
        lengths = set()
        for col in columns:
            v, ok = _column(col)
            values.append(v)
            valid.append(ok)
            lengths.add(len(v))
        w = None
        if weights is not None:
            w = np.asarray(np.ma.filled(np.ma.asarray(weights, dtype=float), 0.0), dtype=float).reshape(-1)
            lengths.add(len(w))
        if len(lengths) > 1:
            raise EngineError(f"{name}: all inputs must have the same length, got lengths {sorted(lengths)}.")
        n = lengths.pop() if lengths else 0
        mask = np.ones(n, bool)
        if w is not None:
            mask = np.isfinite(w) & (w > 0)
            valid = [ok & mask for ok in valid]
            w = np.where(mask, w, 0.0)
        return cls(values, valid, mask, w)

    def select(self, indices: Sequence[int]) -> _Inputs:
        """The given columns, same rows."""
        numeric = {k: self._numeric[i] for k, i in enumerate(indices) if i in self._numeric}
        plain = None if self.plain is None else ([self.plain[0][i] for i in indices], self.plain[1])
        return _Inputs(
            [self.values[i] for i in indices], [self.valid[i] for i in indices], self.mask, self.weights, numeric, plain
        )

    def rows(self, keep: np.ndarray) -> _Inputs:
        """The given rows, all columns."""
        w = None if self.weights is None else self.weights[keep]
        plain = None if self.plain is None else ([ok[keep] for ok in self.plain[0]], self.plain[1][keep])
        return _Inputs([v[keep] for v in self.values], [ok[keep] for ok in self.valid], self.mask[keep], w, None, plain)

    def unweighted(self) -> _Inputs:
        """The same rows (those of weight 0 stay out) without their weights; or, where
        ``plain`` says which rows unweighted reducers take, those rows."""
        if self.plain is not None:
            return _Inputs(self.values, self.plain[0], self.plain[1], None)
        return _Inputs(self.values, self.valid, self.mask, None, self._numeric)

    def with_weights(self, weights: np.ndarray) -> _Inputs:
        """These columns weighted by ``weights`` (times any weights already here)."""
        w = weights if self.weights is None else weights * self.weights
        mask = self.mask & np.isfinite(w) & (w > 0)
        return _Inputs(self.values, [ok & mask for ok in self.valid], mask, np.where(mask, w, 0.0), self._numeric)

    def numeric(self, i: int, name: str) -> np.ndarray:
        """Column ``i`` as float64 (NaN where null); non-numbers are an error."""
        cached = self._numeric.get(i)
        if cached is not None:
            return cached
        vals, ok = self.values[i], self.valid[i]
        out: np.ndarray | None
        if vals.dtype != object:
            out = np.where(ok, vals.astype(float, copy=False), np.nan) if vals.dtype.kind in "biuf" else None
        else:
            out = np.full(self.n, np.nan)
            for idx in np.flatnonzero(ok):
                v = vals[idx]
                if not isinstance(v, int | float | np.number):
                    out = None
                    break
                out[idx] = float(v)
        if out is None:
            bad = next(vals[j] for j in np.flatnonzero(ok) if not isinstance(vals[j], int | float | np.number))
            raise EngineError(f"{name}: Expected a number, got {ee_type_of(bad)}: {_short(bad)}.")
        self._numeric[i] = out
        return out

    def all_int(self, i: int, rows: np.ndarray) -> bool:
        """Whether every selected entry of column ``i`` is an integer (not a float)."""
        vals = self.values[i]
        if vals.dtype != object:
            return vals.dtype.kind in "biu"
        return all(isinstance(v, int | np.integer) for v in vals[rows])


def _column(col: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(col, np.ma.MaskedArray):
        data = np.asarray(col.data).reshape(-1)
        return data, ~np.ma.getmaskarray(col).reshape(-1)
    if isinstance(col, np.ndarray):
        data = col.reshape(-1)
        if data.dtype == object:
            return data, np.array([v is not None for v in data], dtype=bool)
        return data, np.ones(len(data), bool)
    items = list(col)
    arr = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):  # element-wise: nested lists stay list objects
        arr[i] = v
    return arr, np.array([v is not None for v in items], dtype=bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _py(value: Any) -> Any:
    """A plain Python value; NaN (an undefined statistic) becomes null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _num_out(value: float, as_int: bool) -> Any:
    value = _py(float(value))
    if value is not None and as_int and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


# -- the Reducer value -------------------------------------------------------

Kernel = Callable[["_Inputs"], list[Any]]


@dataclass(frozen=True)
class Reducer:
    """An Earth Engine reducer: named outputs computed from ``input_count`` columns.

    ``kind`` is the algorithm that made it (``"Reducer.mean"``) and ``args``
    its arguments, for ``getInfo``. ``kernel`` maps prepared inputs to the
    output values in ``output_names`` order. ``weighted`` reducers use row
    weights; the others only drop rows of weight 0.
    """

    kind: str
    args: dict[str, Any]
    output_names: list[str]
    input_count: int
    kernel: Kernel = field(repr=False, compare=False)
    weighted: bool = False

    ee_type = "Reducer"

    def reduce(self, columns: Sequence[Any], weights: Any = None) -> dict[str, Any]:
        """Reduce one column per input (lists or numpy arrays) to ``{output: value}``."""
        if len(columns) != self.input_count:
            raise EngineError(
                f"{self.kind}: the reducer takes {self.input_count} input(s) but was given {len(columns)}."
            )
        return dict(zip(self.output_names, self._evaluate(_Inputs.build(columns, weights, self.kind)), strict=True))

    def _evaluate(self, inputs: _Inputs) -> list[Any]:
        if not self.weighted and inputs.weights is not None:
            inputs = inputs.unweighted()
        return self.kernel(inputs)

    # Python conveniences, each the Earth Engine algorithm of the same name.

    def unweighted(self) -> Reducer:
        return unweighted(self)

    def combine(self, reducer2: Reducer, outputPrefix: str = "", sharedInputs: bool = False) -> Reducer:  # noqa: N803
        return combine(self, reducer2, outputPrefix, sharedInputs)

    def group(self, groupField: int = 0, groupName: str = "group") -> Reducer:  # noqa: N803
        return group(self, groupField, groupName)

    def repeat(self, count: int) -> Reducer:
        return repeat(self, count)

    def forEach(self, outputNames: list[str]) -> Reducer:  # noqa: N802, N803
        return for_each(self, outputNames)

    def setOutputs(self, outputs: list[str]) -> Reducer:  # noqa: N802
        return set_outputs(self, outputs)

    def getOutputs(self) -> list[str]:  # noqa: N802
        return list(self.output_names)

    def splitWeights(self) -> Reducer:  # noqa: N802
        return split_weights(self)

    def to_info(self) -> dict[str, Any]:
        """``{'type': 'Reducer.<name>', <its non-null arguments>}``, nested reducers likewise."""
        info: dict[str, Any] = {"type": self.kind}
        for key, value in self.args.items():
            if value is not None:
                info[key] = value.to_info() if isinstance(value, Reducer) else to_info(value)
        return info


def _make(kind: str, names: list[str], kernel: Kernel, inputs: int = 1, weighted: bool = False, **args: Any) -> Reducer:
    return Reducer(kind, args, names, inputs, kernel, weighted)


# -- simple reducers -----------------------------------------------------------


def _weights(inputs: _Inputs, mask: np.ndarray) -> np.ndarray:
    return np.ones(int(mask.sum())) if inputs.weights is None else inputs.weights[mask]


def _count(inputs: _Inputs) -> list[Any]:
    return [int(inputs.valid[0].sum())]


def _count_every(inputs: _Inputs) -> list[Any]:
    return [int(inputs.mask.sum())]


def _sum(inputs: _Inputs) -> list[Any]:
    ok = inputs.valid[0]
    x = inputs.numeric(0, "Reducer.sum")[ok]
    if inputs.weights is None and inputs.all_int(0, ok):
        vals = inputs.values[0][ok]
        return [int(sum(int(v) for v in vals)) if vals.dtype == object else int(vals.sum())]
    return [_py(float(np.sum(x * _weights(inputs, ok))))]


def _mean(inputs: _Inputs) -> list[Any]:
    ok = inputs.valid[0]
    if not ok.any():
        return [None]
    x = inputs.numeric(0, "Reducer.mean")[ok]
    w = _weights(inputs, ok)
    return [_py(float(np.sum(x * w) / np.sum(w)))]


def _product(inputs: _Inputs) -> list[Any]:
    ok = inputs.valid[0]
    x = inputs.numeric(0, "Reducer.product")[ok]
    if inputs.all_int(0, ok) and inputs.values[0].dtype == object:
        return [math.prod(int(v) for v in inputs.values[0][ok])]
    return [_num_out(np.prod(x), inputs.all_int(0, ok))]


def _extreme(which: str, count: int) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        ok = inputs.valid[0]
        if not ok.any():
            return [None] * count
        x = inputs.numeric(0, f"Reducer.{which}")
        idx = int(np.argmin(np.where(ok, x, np.inf)) if which == "min" else np.argmax(np.where(ok, x, -np.inf)))
        return [_py(inputs.values[i][idx]) if inputs.valid[i][idx] else None for i in range(count)]

    return kernel


def _min_max(inputs: _Inputs) -> list[Any]:
    return _extreme("min", 1)(inputs) + _extreme("max", 1)(inputs)


def _sorted_values(inputs: _Inputs, name: str) -> np.ndarray:
    return np.sort(inputs.numeric(0, name)[inputs.valid[0]])


def _percentiles(percentiles: list[float]) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        x = _sorted_values(inputs, "Reducer.percentile")
        if len(x) == 0:
            return [None] * len(percentiles)
        return [_py(float(v)) for v in np.percentile(x, percentiles, method="linear")]

    return kernel


def _median(inputs: _Inputs) -> list[Any]:
    x = _sorted_values(inputs, "Reducer.median")
    return [_py(float(np.median(x))) if len(x) else None]


def _mode(inputs: _Inputs) -> list[Any]:
    ok = inputs.valid[0]
    x = inputs.numeric(0, "Reducer.mode")[ok]
    if len(x) == 0:
        return [None]
    values, counts = np.unique(x, return_counts=True)  # sorted: ties go to the smallest value
    return [_num_out(values[int(np.argmax(counts))], inputs.all_int(0, ok))]


def _variance(sample: bool) -> Callable[[_Inputs, str], float | None]:
    def var(inputs: _Inputs, name: str) -> float | None:
        ok = inputs.valid[0]
        x = inputs.numeric(0, name)[ok]
        w = _weights(inputs, ok)
        total = float(np.sum(w))
        if len(x) == 0 or (sample and total <= 1):
            return None
        mean = np.sum(w * x) / total
        ss = float(np.sum(w * (x - mean) ** 2))
        return ss / (total - 1) if sample else ss / total

    return var


def _spread(sample: bool, sqrt: bool, name: str) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        v = _variance(sample)(inputs, name)
        if v is None:
            return [None]
        return [_py(math.sqrt(v) if sqrt else v)]

    return kernel


def _first(last: bool, non_null: bool) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        rows = np.flatnonzero(inputs.valid[0] if non_null else inputs.mask)
        if len(rows) == 0:
            return [None]
        idx = rows[-1] if last else rows[0]
        return [_py(inputs.values[0][idx]) if inputs.valid[0][idx] else None]

    return kernel


def _to_list(tuple_size: int | None, num_optional: int) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        width = len(inputs.values)
        required = width - num_optional
        keep = inputs.mask
        for i in range(required):
            keep = keep & inputs.valid[i]
        rows = np.flatnonzero(keep)
        if tuple_size is None:
            return [[_py(inputs.values[0][r]) for r in rows]]
        return [[[_py(inputs.values[i][r]) if inputs.valid[i][r] else None for i in range(width)] for r in rows]]

    return kernel


def histogram_key(value: Any) -> str:
    """A value as a frequency-histogram key: integral numbers print without a decimal point."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        if value.is_integer() and abs(value) < 2**63:
            return str(int(value))
        return repr(value)
    return json.dumps(_py(value), sort_keys=True, default=str)


def _frequency_histogram(inputs: _Inputs) -> list[Any]:
    ok = inputs.valid[0]
    weighted = inputs.weights is not None
    vals = inputs.values[0]
    counts: dict[str, Any] = {}
    if vals.dtype != object:  # numpy columns: one pass of np.unique
        keys, inverse = np.unique(vals[ok], return_inverse=True)
        totals = np.bincount(inverse, weights=inputs.weights[ok] if weighted else None, minlength=len(keys))
        for key, total in zip(keys, totals, strict=True):
            k = histogram_key(_py(key))
            counts[k] = counts.get(k, 0) + (float(total) if weighted else int(total))
    else:
        w = inputs.weights
        for idx in np.flatnonzero(ok):
            key = histogram_key(vals[idx])
            counts[key] = counts.get(key, 0) + (float(w[idx]) if weighted else 1)
    return [dict(sorted(counts.items()))]


def _fixed_histogram(lo: float, hi: float, steps: int, cumulative: bool) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        ok = inputs.valid[0]
        x = inputs.numeric(0, "Reducer.fixedHistogram")[ok]
        w = _weights(inputs, ok)
        inside = (x >= lo) & (x < hi)
        bucket = np.floor((x[inside] - lo) * steps / (hi - lo)).astype(np.int64)
        bucket = np.clip(bucket, 0, steps - 1)
        counts = np.bincount(bucket, weights=w[inside], minlength=steps)
        if cumulative:
            counts = np.cumsum(counts)
        edges = lo + np.arange(steps) * ((hi - lo) / steps)
        as_int = inputs.weights is None
        return [[[float(e), int(c) if as_int else float(c)] for e, c in zip(edges, counts, strict=True)]]

    return kernel


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return json.dumps(_py(value), sort_keys=True, default=str)


def _count_distinct(non_null: bool) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        ok = inputs.valid[0]
        vals = inputs.values[0]
        has_null = not non_null and bool(np.any(inputs.mask & ~ok))
        if vals.dtype != object:
            return [int(len(np.unique(vals[ok]))) + int(has_null)]
        return [len({_hashable(vals[r]) for r in np.flatnonzero(ok)}) + int(has_null)]

    return kernel


def _count_runs(inputs: _Inputs) -> list[Any]:
    rows = np.flatnonzero(inputs.valid[0])
    vals = inputs.values[0]
    if vals.dtype != object:
        v = vals[rows]
        return [int(len(v) > 0) + int(np.count_nonzero(v[1:] != v[:-1]))]
    runs, previous = 0, object()
    for r in rows:
        key = _hashable(vals[r])
        if runs == 0 or key != previous:
            runs += 1
        previous = key
    return [runs]


def _all_any(want_all: bool) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        ok = inputs.valid[0]
        x = inputs.numeric(0, "Reducer.allNonZero" if want_all else "Reducer.anyNonZero")[ok]
        return [int(bool(np.all(x != 0)) if want_all else bool(np.any(x != 0)))]

    return kernel


def _bitwise(op: str) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        ok = inputs.valid[0]
        x = inputs.numeric(0, f"Reducer.{op}")[ok]
        if len(x) == 0:
            return [None]
        ints = np.trunc(x).astype(np.int64)
        return [int((np.bitwise_and if op == "bitwiseAnd" else np.bitwise_or).reduce(ints))]

    return kernel


def _circular(output: str) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        ok = inputs.valid[0]
        x = inputs.numeric(0, f"Reducer.{output}")[ok]
        if len(x) == 0:
            return [None]
        w = _weights(inputs, ok)
        s, c = float(np.sum(w * np.sin(x))), float(np.sum(w * np.cos(x)))
        if output == "circularMean":
            return [math.atan2(s, c)]
        r = min(1.0, math.hypot(s, c) / float(np.sum(w)))
        if output == "circularVariance":
            return [1.0 - r]
        return [math.sqrt(-2.0 * math.log(r)) if r > 0 else math.inf]

    return kernel


def _pairs(inputs: _Inputs, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = inputs.valid[0] & inputs.valid[1]
    x = inputs.numeric(0, name)[ok]
    y = inputs.numeric(1, name)[ok]
    return x, y, _weights(inputs, ok)


def _linear_fit(inputs: _Inputs) -> list[Any]:
    x, y, w = _pairs(inputs, "Reducer.linearFit")
    total = float(np.sum(w))
    if len(x) < 2:
        return [None, None]
    mx, my = np.sum(w * x) / total, np.sum(w * y) / total
    sxx = float(np.sum(w * (x - mx) ** 2))
    if sxx == 0:
        return [None, None]
    scale = float(np.sum(w * (x - mx) * (y - my))) / sxx
    return [_py(scale), _py(float(my - scale * mx))]


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
    if denom == 0:
        return None
    return max(-1.0, min(1.0, float(np.sum(dx * dy)) / denom))


def _pearsons_correlation(inputs: _Inputs) -> list[Any]:
    x, y, _ = _pairs(inputs, "Reducer.pearsonsCorrelation")
    r = _pearson(x, y)
    if r is None:
        return [None, None]
    df = len(x) - 2
    if df < 1:
        return [r, None]
    if abs(r) == 1.0:
        return [r, 0.0]
    t2 = r * r * df / (1.0 - r * r)
    return [r, _regularized_beta(df / (df + t2), df / 2.0, 0.5)]


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sx = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sx[end] != sx[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def _spearmans_correlation(inputs: _Inputs) -> list[Any]:
    x, y, _ = _pairs(inputs, "Reducer.spearmansCorrelation")
    return [_pearson(_ranks(x), _ranks(y))]


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), by the continued fraction of Numerical Recipes (betacf)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _regularized_beta(1.0 - x, b, a)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


# -- combinators ---------------------------------------------------------------


def _combine(r1: Reducer, r2: Reducer, shared: bool) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        if shared:
            return r1._evaluate(inputs) + r2._evaluate(inputs)
        first = list(range(r1.input_count))
        second = list(range(r1.input_count, r1.input_count + r2.input_count))
        return r1._evaluate(inputs.select(first)) + r2._evaluate(inputs.select(second))

    return kernel


def _split_copies(inner: Reducer, copies: int, inputs: _Inputs) -> list[list[Any]]:
    k = inner.input_count
    return [inner._evaluate(inputs.select(list(range(c * k, (c + 1) * k)))) for c in range(copies)]


def _group_sort_key(value: Any) -> tuple:
    if isinstance(value, bool | int | float | np.number):
        return (0, float(value), "")
    return (1, 0.0, histogram_key(value))


def _group(inner: Reducer, group_field: int, group_name: str) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        others = [i for i in range(inner.input_count + 1) if i != group_field]
        keys = inputs.values[group_field]
        ok = inputs.valid[group_field]
        groups: list[tuple[Any, np.ndarray]] = []
        if keys.dtype != object:  # numpy columns: group with np.unique
            distinct, inverse = np.unique(keys[ok], return_inverse=True)
            rows = np.flatnonzero(ok)
            groups = [(_py(k), rows[inverse == i]) for i, k in enumerate(distinct)]
        else:
            found: dict[Any, tuple[Any, list[int]]] = {}
            for r in np.flatnonzero(ok):
                key = _py(keys[r])
                found.setdefault(_hashable(key), (key, []))[1].append(int(r))
            groups = [(key, np.array(rows, dtype=np.int64)) for key, rows in found.values()]
        out = []
        for key, rows in sorted(groups, key=lambda kv: _group_sort_key(kv[0])):
            mask = np.zeros(inputs.n, bool)
            mask[rows] = True
            values = inner._evaluate(inputs.rows(mask).select(others))
            out.append({group_name: key, **dict(zip(inner.output_names, values, strict=True))})
        return [out]

    return kernel


def _set_outputs(inner: Reducer, keep: list[int]) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        values = inner._evaluate(inputs)
        return [values[i] for i in keep]

    return kernel


def _split_weights(inner: Reducer) -> Kernel:
    def kernel(inputs: _Inputs) -> list[Any]:
        w = inputs.numeric(1, "Reducer.splitWeights")
        w = np.where(inputs.valid[1], w, 0.0)
        return inner._evaluate(inputs.select([0]).with_weights(w))

    return kernel


def _int_arg(value: Any) -> int | None:
    return None if value is None else int(value)


def _percentile_name(p: float) -> str:
    p = float(p)
    return f"p{int(p)}" if p.is_integer() else f"p{p!r}"


# -- algorithms ----------------------------------------------------------------


@algorithm("Reducer.count")
def count():
    return _make("Reducer.count", ["count"], _count)


@algorithm("Reducer.countEvery")
def count_every():
    return _make("Reducer.countEvery", ["count"], _count_every)


@algorithm("Reducer.sum")
def sum_():
    return _make("Reducer.sum", ["sum"], _sum, weighted=True)


@algorithm("Reducer.mean")
def mean():
    return _make("Reducer.mean", ["mean"], _mean, weighted=True)


@algorithm("Reducer.product")
def product():
    return _make("Reducer.product", ["product"], _product)


@algorithm("Reducer.min")
def min_(numInputs):  # noqa: N803 - Earth Engine's argument names
    n = int(numInputs)
    if n < 1:
        raise EngineError("Reducer.min: numInputs must be at least 1.")
    names = ["min"] + [f"min{i}" for i in range(1, n)]
    return _make("Reducer.min", names, _extreme("min", n), inputs=n, numInputs=n)


@algorithm("Reducer.max")
def max_(numInputs):  # noqa: N803
    n = int(numInputs)
    if n < 1:
        raise EngineError("Reducer.max: numInputs must be at least 1.")
    names = ["max"] + [f"max{i}" for i in range(1, n)]
    return _make("Reducer.max", names, _extreme("max", n), inputs=n, numInputs=n)


@algorithm("Reducer.minMax")
def min_max():
    return _make("Reducer.minMax", ["min", "max"], _min_max)


@algorithm("Reducer.median")
def median(maxBuckets, minBucketWidth, maxRaw):  # noqa: N803
    return _make(
        "Reducer.median",
        ["median"],
        _median,
        maxBuckets=_int_arg(maxBuckets),
        minBucketWidth=minBucketWidth,
        maxRaw=_int_arg(maxRaw),
    )


@algorithm("Reducer.mode")
def mode(maxBuckets, minBucketWidth, maxRaw):  # noqa: N803
    return _make(
        "Reducer.mode",
        ["mode"],
        _mode,
        maxBuckets=_int_arg(maxBuckets),
        minBucketWidth=minBucketWidth,
        maxRaw=_int_arg(maxRaw),
    )


@algorithm("Reducer.percentile")
def percentile(percentiles, outputNames, maxBuckets, minBucketWidth, maxRaw):  # noqa: N803
    ps = [float(p) for p in percentiles]
    if not ps:
        raise EngineError("Reducer.percentile: at least one percentile is required.")
    for p in ps:
        if not 0 <= p <= 100:
            raise EngineError(f"Reducer.percentile: percentiles must be between 0 and 100, got {_short(p)}.")
    if outputNames is None:
        names = [_percentile_name(p) for p in ps]
    else:
        names = [str(n) for n in outputNames]
        if len(names) != len(ps):
            raise EngineError(
                f"Reducer.percentile: got {len(names)} output names for {len(ps)} percentiles; they must match."
            )
    return _make(
        "Reducer.percentile",
        names,
        _percentiles(ps),
        percentiles=list(percentiles),
        outputNames=outputNames,
        maxBuckets=_int_arg(maxBuckets),
        minBucketWidth=minBucketWidth,
        maxRaw=_int_arg(maxRaw),
    )


@algorithm("Reducer.stdDev")
def std_dev():
    return _make("Reducer.stdDev", ["stdDev"], _spread(False, True, "Reducer.stdDev"), weighted=True)


@algorithm("Reducer.variance")
def variance():
    return _make("Reducer.variance", ["variance"], _spread(False, False, "Reducer.variance"), weighted=True)


@algorithm("Reducer.sampleStdDev")
def sample_std_dev():
    return _make("Reducer.sampleStdDev", ["stdDev"], _spread(True, True, "Reducer.sampleStdDev"))


@algorithm("Reducer.sampleVariance")
def sample_variance():
    return _make("Reducer.sampleVariance", ["variance"], _spread(True, False, "Reducer.sampleVariance"))


@algorithm("Reducer.first")
def first():
    return _make("Reducer.first", ["first"], _first(last=False, non_null=False))


@algorithm("Reducer.firstNonNull")
def first_non_null():
    return _make("Reducer.firstNonNull", ["first"], _first(last=False, non_null=True))


@algorithm("Reducer.last")
def last():
    return _make("Reducer.last", ["last"], _first(last=True, non_null=False))


@algorithm("Reducer.lastNonNull")
def last_non_null():
    return _make("Reducer.lastNonNull", ["last"], _first(last=True, non_null=True))


@algorithm("Reducer.toList")
def to_list(tupleSize, numOptional):  # noqa: N803
    size = _int_arg(tupleSize)
    optional = int(numOptional or 0)
    width = 1 if size is None else size
    if width < 1:
        raise EngineError("Reducer.toList: tupleSize must be at least 1.")
    if not 0 <= optional <= width:
        raise EngineError("Reducer.toList: numOptional must be between 0 and tupleSize.")
    if size is None:
        optional = 0
    return _make(
        "Reducer.toList", ["list"], _to_list(size, optional), inputs=width, tupleSize=size, numOptional=optional
    )


@algorithm("Reducer.frequencyHistogram")
def frequency_histogram():
    return _make("Reducer.frequencyHistogram", ["histogram"], _frequency_histogram, weighted=True)


@algorithm("Reducer.fixedHistogram")
def fixed_histogram(min, max, steps, cumulative):
    lo, hi, n = float(min), float(max), int(steps)
    if n < 1:
        raise EngineError("Reducer.fixedHistogram: steps must be at least 1.")
    if not hi > lo:
        raise EngineError("Reducer.fixedHistogram: max must be greater than min.")
    return _make(
        "Reducer.fixedHistogram",
        ["histogram"],
        _fixed_histogram(lo, hi, n, bool(cumulative)),
        weighted=True,
        min=min,
        max=max,
        steps=n,
        cumulative=bool(cumulative),
    )


@algorithm("Reducer.countDistinct")
def count_distinct():
    return _make("Reducer.countDistinct", ["count"], _count_distinct(non_null=False))


@algorithm("Reducer.countDistinctNonNull")
def count_distinct_non_null():
    return _make("Reducer.countDistinctNonNull", ["count"], _count_distinct(non_null=True))


@algorithm("Reducer.countRuns")
def count_runs():
    return _make("Reducer.countRuns", ["count"], _count_runs)


@algorithm("Reducer.allNonZero")
def all_non_zero():
    return _make("Reducer.allNonZero", ["all"], _all_any(True))


@algorithm("Reducer.and")
def and_():
    return _make("Reducer.and", ["all"], _all_any(True))


@algorithm("Reducer.anyNonZero")
def any_non_zero():
    return _make("Reducer.anyNonZero", ["any"], _all_any(False))


@algorithm("Reducer.or")
def or_():
    return _make("Reducer.or", ["any"], _all_any(False))


@algorithm("Reducer.bitwiseAnd")
def bitwise_and():
    return _make("Reducer.bitwiseAnd", ["bitwiseAnd"], _bitwise("bitwiseAnd"))


@algorithm("Reducer.bitwiseOr")
def bitwise_or():
    return _make("Reducer.bitwiseOr", ["bitwiseOr"], _bitwise("bitwiseOr"))


@algorithm("Reducer.circularMean")
def circular_mean():
    return _make("Reducer.circularMean", ["circularMean"], _circular("circularMean"), weighted=True)


@algorithm("Reducer.circularStddev")
def circular_stddev():
    return _make("Reducer.circularStddev", ["circularStdDev"], _circular("circularStdDev"), weighted=True)


@algorithm("Reducer.circularVariance")
def circular_variance():
    return _make("Reducer.circularVariance", ["circularVariance"], _circular("circularVariance"), weighted=True)


@algorithm("Reducer.linearFit")
def linear_fit():
    return _make("Reducer.linearFit", ["scale", "offset"], _linear_fit, inputs=2, weighted=True)


@algorithm("Reducer.pearsonsCorrelation")
def pearsons_correlation():
    return _make("Reducer.pearsonsCorrelation", ["correlation", "p-value"], _pearsons_correlation, inputs=2)


@algorithm("Reducer.spearmansCorrelation")
def spearmans_correlation():
    return _make("Reducer.spearmansCorrelation", ["correlation"], _spearmans_correlation, inputs=2)


@algorithm("Reducer.combine")
def combine(reducer1, reducer2, outputPrefix, sharedInputs):  # noqa: N803
    prefix = outputPrefix or ""
    shared = bool(sharedInputs)
    if shared and reducer1.input_count != reducer2.input_count:
        raise EngineError(
            "Reducer.combine: with sharedInputs, both reducers must have the same number of inputs "
            f"({reducer1.input_count} and {reducer2.input_count})."
        )
    names = list(reducer1.output_names) + [prefix + n for n in reducer2.output_names]
    inputs = reducer1.input_count if shared else reducer1.input_count + reducer2.input_count
    return Reducer(
        "Reducer.combine",
        {"reducer1": reducer1, "reducer2": reducer2, "outputPrefix": prefix, "sharedInputs": shared},
        names,
        inputs,
        _combine(reducer1, reducer2, shared),
        weighted=True,
    )


@algorithm("Reducer.group")
def group(reducer, groupField, groupName):  # noqa: N803
    field_index = int(groupField)
    if not 0 <= field_index <= reducer.input_count:
        raise EngineError(
            f"Reducer.group: groupField {field_index} is out of range for a reducer with "
            f"{reducer.input_count + 1} inputs."
        )
    return Reducer(
        "Reducer.group",
        {"reducer": reducer, "groupField": field_index, "groupName": groupName},
        ["groups"],
        reducer.input_count + 1,
        _group(reducer, field_index, str(groupName)),
        weighted=True,
    )


@algorithm("Reducer.repeat")
def repeat(reducer, count):
    copies = int(count)
    if copies < 1:
        raise EngineError("Reducer.repeat: count must be at least 1.")

    def kernel(inputs: _Inputs) -> list[Any]:
        results = _split_copies(reducer, copies, inputs)
        return [[res[j] for res in results] for j in range(len(reducer.output_names))]

    return Reducer(
        "Reducer.repeat",
        {"reducer": reducer, "count": copies},
        list(reducer.output_names),
        reducer.input_count * copies,
        kernel,
        weighted=True,
    )


@algorithm("Reducer.forEach")
def for_each(reducer, outputNames):  # noqa: N803
    prefixes = [str(n) for n in outputNames]
    if len(reducer.output_names) == 1:
        names = prefixes
    else:
        names = [f"{p}_{n}" for p in prefixes for n in reducer.output_names]

    def kernel(inputs: _Inputs) -> list[Any]:
        return [v for res in _split_copies(reducer, len(prefixes), inputs) for v in res]

    return Reducer(
        "Reducer.forEach",
        {"reducer": reducer, "outputNames": prefixes},
        names,
        reducer.input_count * len(prefixes),
        kernel,
        weighted=True,
    )


@algorithm("Reducer.setOutputs")
def set_outputs(reducer, outputs):
    if len(outputs) != len(reducer.output_names):
        raise EngineError(
            f"Reducer.setOutputs: the reducer has {len(reducer.output_names)} output(s) "
            f"but {len(outputs)} name(s) were given."
        )
    keep = [i for i, name in enumerate(outputs) if name is not None]
    return Reducer(
        "Reducer.setOutputs",
        {"reducer": reducer, "outputs": list(outputs)},
        [str(outputs[i]) for i in keep],
        reducer.input_count,
        _set_outputs(reducer, keep),
        weighted=True,
    )


@algorithm("Reducer.getOutputs")
def get_outputs(reducer):
    return list(reducer.output_names)


@algorithm("Reducer.unweighted")
def unweighted(reducer):
    return Reducer(
        "Reducer.unweighted",
        {"reducer": reducer},
        list(reducer.output_names),
        reducer.input_count,
        reducer.kernel,
        weighted=False,
    )


@algorithm("Reducer.splitWeights")
def split_weights(reducer):
    if reducer.input_count != 1:
        raise EngineError(
            "Reducer.splitWeights: only reducers with one input are supported by the local engine "
            f"(this one has {reducer.input_count})."
        )
    return Reducer(
        "Reducer.splitWeights",
        {"reducer": reducer},
        list(reducer.output_names),
        2,
        _split_weights(reducer),
        weighted=False,
    )


# -- image regions (used by image_reduce.py) ----------------------------------------


def reduce_region_rows(reducer: Reducer, columns: Sequence[Any], weights: np.ndarray, plain_rows: np.ndarray) -> dict:
    """Reduce pixel columns where weighted and unweighted reducers take different pixels.

    Earth Engine's region rule: weighted reducers take every pixel the region
    covers, weighted by the covered fraction (``weights``); unweighted ones
    (``count``, ``median``, ``x.unweighted()``...) take the pixels whose centre
    lies in the region (``plain_rows``), with weight 1. Inside combined reducers
    each part follows its own rule.
    """
    if len(columns) != reducer.input_count:
        raise EngineError(
            f"{reducer.kind}: the reducer takes {reducer.input_count} input(s) but was given {len(columns)}."
        )
    inputs = _Inputs.build(columns, weights, reducer.kind)
    rows = np.asarray(plain_rows, dtype=bool).reshape(-1)
    inputs.plain = ([_column(c)[1] & rows for c in columns], rows)
    return dict(zip(reducer.output_names, reducer._evaluate(inputs), strict=True))


# -- per-pixel stack reductions (ImageCollection.reduce and reduce.*) -----------
#
# An image collection reduces pixel by pixel over its stack of images. These
# functions take one (n_images, n_pixels) array per reducer input, masked
# pixels as NaN, and return one (values, mask) pair per reducer output, both
# of shape (n_pixels,). They are vectorised over all pixels (no Python loop per
# pixel). A pixel whose inputs are all masked gives a masked output. Order
# statistics use the same definitions as the reducers above: the median of an
# even count is the mean of the two middle values, percentiles interpolate
# linearly between closest ranks, the mode's ties go to the smallest value.
# Multi-input reducers (``Reducer.max(2)``) use the images whose inputs are
# all unmasked. Reducers with non-scalar outputs (lists, histograms) cannot
# make pixels: :func:`stack_reducer` refuses them.

StackKernel = Callable[[list[np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]


def _valid_rows(stacks: list[np.ndarray]) -> np.ndarray:
    valid = ~np.isnan(stacks[0])
    for s in stacks[1:]:
        valid &= ~np.isnan(s)
    return valid


def _stack_count(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    c = _valid_rows(stacks).sum(axis=0)
    return [(c.astype(np.float64), c == 0)]


def _stack_sum_mean(which: str) -> StackKernel:
    def kernel(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        x = stacks[0]
        valid = ~np.isnan(x)
        c = valid.sum(axis=0)
        total = np.sum(np.where(valid, x, 0), axis=0, dtype=np.float64)
        if which == "mean":
            total /= np.maximum(c, 1)
        return [(total, c == 0)]

    return kernel


def _stack_product(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    x = stacks[0]
    valid = ~np.isnan(x)
    return [(np.prod(np.where(valid, x, 1), axis=0, dtype=np.float64), ~valid.any(axis=0))]


def _stack_extreme(which: str, count: int) -> StackKernel:
    def kernel(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        valid = _valid_rows(stacks[:count])
        none = ~valid.any(axis=0)
        key = np.where(valid, stacks[0], np.inf if which == "min" else -np.inf)
        idx = (np.argmin(key, axis=0) if which == "min" else np.argmax(key, axis=0))[None]
        return [(np.take_along_axis(s, idx, axis=0)[0].astype(np.float64), none) for s in stacks[:count]]

    return kernel


def _sorted_stack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's values in ascending order, masked (NaN) ones last, and the count of valid values."""
    return np.sort(x, axis=0), (~np.isnan(x)).sum(axis=0)


def _ranked(s: np.ndarray, k: np.ndarray, p: float) -> np.ndarray:
    """The linearly interpolated ``p``-th percentile of the first ``k`` values of each sorted column."""
    pos = (p / 100.0) * np.maximum(k - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(k - 1, 0))
    a = _at_rank(s, lo).astype(np.float64)
    b = _at_rank(s, hi).astype(np.float64)
    frac = pos - lo
    return np.where(frac > 0, a + (b - a) * frac, a)


def _stack_percentiles(percentiles: list[float]) -> StackKernel:
    def kernel(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        s, k = _sorted_stack(stacks[0])
        return [(_ranked(s, k, p), k == 0) for p in percentiles]

    return kernel


def _median_sorted(s: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The median of the first ``k`` values of each sorted column (the mean of the middle two)."""
    a = _at_rank(s, (np.maximum(k, 1) - 1) // 2).astype(np.float64)
    b = _at_rank(s, k // 2)
    return (a + b) * 0.5


def _at_rank(s: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """``s[rank[j], j]`` for each column ``j`` of a 2-D stack, picked by flat index when the stack is
    C-contiguous or the transpose of a C-contiguous (pixel-major) one; else take_along_axis."""
    if s.ndim == 2 and s.flags.c_contiguous:
        columns = s.shape[1]
        return s.reshape(-1)[rank * columns + np.arange(columns)]
    if s.ndim == 2 and s.T.flags.c_contiguous:
        rows = s.shape[0]
        return s.T.reshape(-1)[np.arange(s.shape[1]) * rows + rank]
    return np.take_along_axis(s, rank[None], axis=0)[0]


def _stack_median(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    s, k = _sorted_stack(stacks[0])
    return [(_median_sorted(s, k), k == 0)]


def sorts_integers(reducer: Reducer) -> bool:
    """Whether :func:`reduce_int_stack` computes ``reducer`` (order statistics: median, percentiles)."""
    return reducer.kind in ("Reducer.median", "Reducer.percentile")


_KEY_BLOCK = 2048  # pixels sorted at a time: 2048 x 73 scenes x 4 bytes stay in a 1 MiB L2 cache


def reduce_int_stack(
    reducer: Reducer, stack: np.ndarray, count: np.ndarray, offset: int = 0, key_type: type | None = None
) -> list[np.ma.MaskedArray]:
    """Median or percentiles of an image-major integer stack (n_images, *shape) with ``count`` valid values
    per pixel. The sort keys are ``stack - offset`` in ``key_type`` (default: the stack's type), in which
    masked values must be the type's largest value: Sentinel-2's nodata 0 keyed ``DN - 1`` in uint32 wraps
    to 2**32 - 1. ``offset`` is added back to the results.

    Masked values sort last, so the first ``count`` sorted keys of a pixel are its valid ones (a valid
    value equal to the filler ties with it and is the same number). No float copy is made: numpy sorts
    32-bit integers with SIMD, several times faster than a float64 stack. The keys are made, sorted and
    picked ``_KEY_BLOCK`` pixels at a time in one reused buffer, pixel-major (each pixel's values one
    contiguous row): sorting rows is about 1.3-1.5x faster than sorting along the images axis, which
    gathers each pixel's values from ``n_images`` strided places, and the buffer stays in cache, where a
    whole key array (88 MB for a year of a 550 x 550 band) is fresh memory, page-faulted in each time."""
    n, shape = stack.shape[0], stack.shape[1:]
    flat, k = stack.reshape(n, -1), count.reshape(-1)
    fractions = [None] if reducer.kind == "Reducer.median" else [float(p) for p in reducer.args["percentiles"]]
    values = [np.empty(k.shape) for _ in fractions]
    keys = np.empty((min(_KEY_BLOCK, k.size), n), key_type or stack.dtype)
    starts = np.arange(keys.shape[0]) * n  # where each pixel's row starts in the flattened block
    for start in range(0, k.size, _KEY_BLOCK):
        block = slice(start, min(start + _KEY_BLOCK, k.size))
        rows, c = keys[: block.stop - start], k[block]
        np.subtract(flat[:, block].T, offset, out=rows, dtype=rows.dtype)
        rows.sort(axis=1)
        for v, p in zip(values, fractions, strict=True):
            if p is None:  # the sum of the middle two ranks (picked by flat index), halved below
                picked, r = rows.reshape(-1), starts[: len(c)]
                np.add(picked[r + (np.maximum(c, 1) - 1) // 2], picked[r + c // 2], out=v[block], dtype=np.float64)
            else:
                v[block] = _ranked(rows.T, c, p)
    empty = k == 0
    out = []
    for v, p in zip(values, fractions, strict=True):
        if p is None:
            v *= 0.5
        if offset:
            v += offset
        v[empty] = 0.0
        out.append(np.ma.MaskedArray(v.reshape(shape), empty.reshape(shape)))
    return out


def _stack_mode(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    s, k = _sorted_stack(stacks[0])
    n = s.shape[0]
    idx = np.arange(n)[:, None]
    new_run = np.ones(s.shape, dtype=bool)
    new_run[1:] = s[1:] != s[:-1]
    start = np.maximum.accumulate(np.where(new_run, idx, 0), axis=0)
    run = np.where(idx < k[None], idx - start + 1, 0)
    best = np.argmax(run, axis=0)  # the first longest run: ties go to the smallest value
    return [(np.take_along_axis(s, best[None], axis=0)[0].astype(np.float64), k == 0)]


def _stack_spread(sample: bool, sqrt: bool) -> StackKernel:
    def kernel(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        x = stacks[0]
        valid = ~np.isnan(x)
        c = valid.sum(axis=0)
        mean = np.sum(np.where(valid, x, 0), axis=0, dtype=np.float64) / np.maximum(c, 1)
        ss = np.sum(np.where(valid, (x - mean) ** 2, 0), axis=0, dtype=np.float64)
        denom = c - 1 if sample else c
        v = ss / np.maximum(denom, 1)
        return [(np.sqrt(v) if sqrt else v, denom <= 0)]

    return kernel


def _stack_first(last: bool) -> StackKernel:
    def kernel(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        x = stacks[0]
        valid = ~np.isnan(x)
        n = x.shape[0]
        idx = n - 1 - np.argmax(valid[::-1], axis=0) if last else np.argmax(valid, axis=0)
        return [(np.take_along_axis(x, idx[None], axis=0)[0].astype(np.float64), ~valid.any(axis=0))]

    return kernel


def _stack_all_any(want_all: bool) -> StackKernel:
    def kernel(stacks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        x = stacks[0]
        valid = ~np.isnan(x)
        nonzero = valid & (x != 0)
        out = (nonzero.sum(axis=0) == valid.sum(axis=0)) if want_all else nonzero.any(axis=0)
        return [(out.astype(np.float64), ~valid.any(axis=0))]

    return kernel


_STACK_SIMPLE: dict[str, StackKernel] = {
    "Reducer.count": _stack_count,
    "Reducer.sum": _stack_sum_mean("sum"),
    "Reducer.mean": _stack_sum_mean("mean"),
    "Reducer.product": _stack_product,
    "Reducer.minMax": lambda stacks: _stack_extreme("min", 1)(stacks) + _stack_extreme("max", 1)(stacks),
    "Reducer.median": _stack_median,
    "Reducer.mode": _stack_mode,
    "Reducer.stdDev": _stack_spread(False, True),
    "Reducer.variance": _stack_spread(False, False),
    "Reducer.sampleStdDev": _stack_spread(True, True),
    "Reducer.sampleVariance": _stack_spread(True, False),
    "Reducer.first": _stack_first(False),
    "Reducer.firstNonNull": _stack_first(False),
    "Reducer.last": _stack_first(True),
    "Reducer.lastNonNull": _stack_first(True),
    "Reducer.allNonZero": _stack_all_any(True),
    "Reducer.and": _stack_all_any(True),
    "Reducer.anyNonZero": _stack_all_any(False),
    "Reducer.or": _stack_all_any(False),
}


def stack_reducer(reducer: Reducer, name: str) -> StackKernel:
    """The per-pixel stack kernel of ``reducer``, or Earth Engine's-style error naming what is not supported.

    Masked inputs never take part, so the ``*NonNull`` reducers equal their
    plain forms, and weights do not apply (``unweighted`` is the reducer itself).
    """
    kind = reducer.kind
    simple = _STACK_SIMPLE.get(kind)
    if simple is not None:
        return simple
    args = reducer.args
    if kind in ("Reducer.min", "Reducer.max"):
        return _stack_extreme(kind.split(".")[1], reducer.input_count)
    if kind == "Reducer.percentile":
        return _stack_percentiles([float(p) for p in args["percentiles"]])
    if kind == "Reducer.unweighted":
        return stack_reducer(args["reducer"], name)
    if kind == "Reducer.combine":
        r1, r2 = args["reducer1"], args["reducer2"]
        k1, k2 = stack_reducer(r1, name), stack_reducer(r2, name)
        if args["sharedInputs"]:
            return lambda stacks: k1(stacks) + k2(stacks)
        n1 = r1.input_count
        return lambda stacks: k1(stacks[:n1]) + k2(stacks[n1:])
    if kind == "Reducer.setOutputs":
        inner = stack_reducer(args["reducer"], name)
        keep = [i for i, o in enumerate(args["outputs"]) if o is not None]
        return lambda stacks: [inner(stacks)[i] for i in keep] if keep else []
    if kind == "Reducer.forEach":
        inner_reducer = args["reducer"]
        inner = stack_reducer(inner_reducer, name)
        k = inner_reducer.input_count
        copies = len(args["outputNames"])
        return lambda stacks: [out for c in range(copies) for out in inner(stacks[c * k : (c + 1) * k])]
    raise EngineError(
        f"{name}: the reducer {kind} is not supported per pixel by the gee-mining local engine "
        "(its outputs are not single numbers, or it has no vectorised form here yet)."
    )


def reduce_stack(reducer: Reducer, stacks: Sequence[np.ndarray], name: str) -> list[np.ma.MaskedArray]:
    """Reduce ``reducer.input_count`` stacks of shape (n_images, *shape), NaN where masked,
    to one float64 masked array of ``shape`` per output."""
    if len(stacks) != reducer.input_count:
        raise EngineError(f"{name}: the reducer takes {reducer.input_count} input(s) but was given {len(stacks)}.")
    kernel = stack_reducer(reducer, name)
    shape = stacks[0].shape[1:]
    flat = [s.reshape(s.shape[0], -1) for s in stacks]
    if flat[0].shape[0] == 0:
        empty = np.ma.MaskedArray(np.zeros(shape), np.ones(shape, dtype=bool))
        return [empty.copy() for _ in reducer.output_names]
    outs = kernel(flat)
    return [np.ma.MaskedArray(np.where(m, 0.0, v).reshape(shape), m.reshape(shape)) for v, m in outs]
