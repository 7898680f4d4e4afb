"""Issue 8/26 benchmark: the whole LASSO path (50 penalties) on pixels x 78 features, on 2 cores.

Side by side, each run in its own fresh process (so peak resident memory is each one's own), the two
alternating run by run (a busy machine slows both alike):

- **study**: ``gee_mining.ml.study.feature_matrix`` (one Fortran-ordered float64 matrix filled in
  place from the 12 float32 band columns, each ND with the one formula of
  ``gee_mining.contracts.features``) then ``gee_mining.ml.study.lasso(..., overwrite_X=True)`` on it,
  as the study calls it on a fold's copied training rows: the matrix centred in place, its Gram matrix
  and ``X'y`` in one BLAS call each, the scaling by the standard deviations folded into those small
  matrices, then scikit-learn's ``lasso_path`` on the Gram matrix: no standardised copy of the n x p
  matrix and no n x p pass for the scaling;
- **plain** ("in-place numpy"), the fastest plain version we could write: the same 78 features
  written into one Fortran-ordered float64 matrix (``np.subtract/add/divide(..., out=column)``),
  standardised in place (column means and standard deviations, ``X -= mean; X /= std``), then
  ``sklearn.linear_model.lasso_path(Z, y, alphas=<the same 50>, precompute=True, copy_X=False)``.

Both build their features from the same float32 band columns inside the timed region. The data:
12 reflectance-like bands with a planted mine signal and a clipped-distance target (what the study
fits). Threads are capped (BLAS/OpenMP) with threadpoolctl. Printed: wall and CPU seconds and peak RSS
of each, min and median of the per-pair ratios study/plain for all three, and the largest coefficient
difference between the paths (checked: at most 1e-6 of the largest coefficient). CPU seconds count
OpenBLAS's spinning threads too: on a loaded machine use ``--threads 1`` for CPU figures. The default is 200,000 pixels (156 MB per matrix): 1,000,000 (624 MB
per matrix, 1-3 GB peaks) is too much for this shared 2-core machine; ``--rows 1000000`` runs it.

Usage: ``nice .venv/bin/python bench/bench_study.py [--rows 200000] [--repeat 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gee_mining (also in each child)


def bands(rows: int, seed: int = 0):
    from gee_mining.contracts.bands import BANDS

    rng = np.random.default_rng(seed)
    mine = rng.random(rows) < 0.1
    cols = {}
    for i, b in enumerate(BANDS):
        cols[b] = (rng.uniform(0.03, 0.35, rows) + mine * (0.02 * i - 0.1) * rng.uniform(0.5, 1.5, rows)).astype(
            np.float32
        )
        np.maximum(cols[b], 0.005, out=cols[b])
    dist = np.where(mine, -rng.uniform(0, 300, rows), rng.uniform(0, 3000, rows))
    y = np.clip(-dist, -200, 200)
    return cols, y


def _plain(cols, y, alphas):
    """The in-place numpy reference: one Fortran matrix, standardised in place, lasso_path on it."""
    from sklearn.linear_model import lasso_path

    from gee_mining.contracts.bands import BANDS

    n, k = len(y), len(BANDS)
    X = np.empty((n, k + k * (k - 1) // 2), order="F")
    for j, b in enumerate(BANDS):
        X[:, j] = cols[b]
    den = np.empty(n)
    j = k
    for i in range(k):
        for m in range(i):  # ND_a_b for a = BANDS[i], b = BANDS[m]: the study's order
            col = X[:, j]
            np.subtract(X[:, i], X[:, m], out=col)
            np.add(X[:, i], X[:, m], out=den)
            np.divide(col, den, out=col)
            j += 1
    mean = X.mean(axis=0)
    X -= mean
    X /= np.sqrt(np.einsum("ij,ij->j", X, X) / n)
    out_alphas, coefs, _ = lasso_path(X, y - y.mean(), alphas=alphas, precompute=True, copy_X=False)
    return coefs, out_alphas


def _run(kind: str, rows: int, threads: int, alphas, queue) -> None:
    from threadpoolctl import threadpool_limits

    from gee_mining.ml.study import FeatureSpec, feature_matrix, lasso

    cols, y = bands(rows)
    spec = FeatureSpec()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with threadpool_limits(threads):
        t, cpu = time.perf_counter(), time.process_time()
        if kind == "study":
            X = feature_matrix(cols, spec)
            fit = lasso(X, y, spec.names, n_penalties=50, alphas=alphas, overwrite_X=True)
            coefs, out_alphas = fit.coefs, fit.penalties
        else:
            coefs, out_alphas = _plain(cols, y, alphas)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"kind": kind, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak / 1024, "base_rss_mb": base / 1024,
               "coefs": coefs.tolist(), "alphas": np.asarray(out_alphas).tolist()})  # fmt: skip


def run(kind: str, rows: int, threads: int, alphas=None) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_run, args=(kind, rows, threads, alphas, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    alphas = run("study", args.rows, args.threads)["alphas"]  # the study's 50 penalties, for both
    pairs = []
    for _ in range(args.repeat):
        pairs.append((run("study", args.rows, args.threads, alphas), run("plain", args.rows, args.threads, alphas)))
    report(pairs, args)


def report(pairs, args) -> None:
    """Each side's times and peaks, the paired ratios (min / median), the coefficients' agreement, the goal."""
    study, plain = pairs[-1]
    a, b = np.array(study["coefs"]), np.array(plain["coefs"])
    ratios = {k: [s[k] / p[k] for s, p in pairs] for k in ("wall_s", "cpu_s", "peak_rss_mb")}
    print(f"rows {args.rows:,} x 78 features, 50 penalties, {args.threads} threads, {args.repeat} pairs")
    print("reference: in-place numpy (one Fortran matrix, standardised in place, lasso_path precompute=True)")
    for kind, i in (("study", 0), ("plain", 1)):
        walls, cpus = [p[i]["wall_s"] for p in pairs], [p[i]["cpu_s"] for p in pairs]
        rss = [p[i]["peak_rss_mb"] for p in pairs]
        print(
            f"  {kind:<6} wall min {min(walls):6.2f} / median {statistics.median(walls):6.2f} s, "
            f"cpu min {min(cpus):6.2f} / median {statistics.median(cpus):6.2f} s, "
            f"peak RSS median {statistics.median(rss):7.0f} MB (before: {pairs[0][i]['base_rss_mb']:.0f} MB)"
        )
        print(f"         by pair, CPU s: {' '.join(f'{c:.2f}' for c in cpus)}")
    for key, label in (("wall_s", "wall time"), ("cpu_s", "CPU time"), ("peak_rss_mb", "peak RSS")):
        r = ratios[key]
        print(f"  pair ratio study/plain, {label:<9}: min {min(r):.2f} / median {statistics.median(r):.2f}")
    diff, top = np.abs(a - b).max(), np.abs(b).max()
    print(
        f"  max |coef difference| {diff:.3g} (max |coef| {top:.3g}): {'equal' if diff <= 1e-6 * top else 'DIFFERENT'}"
    )
    goal = statistics.median(ratios["wall_s"]) <= 1.0 and statistics.median(ratios["peak_rss_mb"]) <= 1.0
    print(f"  goal study/plain <= 1.0 in time and peak RSS (median pair): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
