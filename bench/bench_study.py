"""Issue 8 benchmark: the whole LASSO path (50 penalties) on 1,000,000 pixels x 78 features, on 2 cores.

Side by side, each in its own fresh process (so peak resident memory is each one's own):

- **study**: ``gee_mining.ml.study.lasso`` on the feature matrix that ``feature_matrix`` builds from the
  12 band columns (12 bands + 66 ND_a_b, float64, Fortran order): standardisation, the Gram matrix and
  ``Z'y`` computed once, then scikit-learn's ``lasso_path`` on them (no copy of the n x p matrix);
- **plain**: the same 78 features stacked with numpy (``np.column_stack``), standardised with numpy,
  then a plain ``sklearn.linear_model.lasso_path(Z, y, alphas=<the same 50>)`` (which checks and
  copies its input to Fortran order and computes the Gram matrix itself).

Both build their features from the same float32 band columns inside the timed region. The data:
12 reflectance-like bands with a planted mine signal and a clipped-distance target (what the study
fits). Threads are capped at 2 (BLAS/OpenMP) with threadpoolctl. Printed: wall seconds and peak RSS
of each, the ratio study/plain for both, and the largest coefficient difference between the paths.

Usage: ``nice .venv/bin/python bench/bench_study.py [--rows 1000000] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import numpy as np


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


def _run(kind: str, rows: int, threads: int, alphas, queue) -> None:
    from threadpoolctl import threadpool_limits

    from gee_mining.contracts.bands import BANDS
    from gee_mining.ml.study import FeatureSpec, feature_matrix, lasso

    cols, y = bands(rows)
    spec = FeatureSpec()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with threadpool_limits(threads):
        t = time.perf_counter()
        if kind == "study":
            X = feature_matrix(cols, spec)
            fit = lasso(X, y, spec.names, n_penalties=50, alphas=alphas)
            coefs, out_alphas = fit.coefs, fit.penalties
        else:
            from sklearn.linear_model import lasso_path

            feats = [cols[b].astype(np.float64) for b in BANDS]
            for i, a in enumerate(BANDS):
                for b in BANDS[:i]:
                    fa, fb = cols[a].astype(np.float64), cols[b].astype(np.float64)
                    feats.append((fa - fb) / (fa + fb))
            X = np.column_stack(feats)
            del feats
            Z = (X - X.mean(axis=0)) / X.std(axis=0)
            del X
            out_alphas, coefs, _ = lasso_path(Z, y - y.mean(), alphas=alphas)
        wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"kind": kind, "wall_s": wall, "peak_rss_mb": peak / 1024, "base_rss_mb": base / 1024,
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
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    study = run("study", args.rows, args.threads)
    plain = run("plain", args.rows, args.threads, study["alphas"])
    a, b = np.array(study["coefs"]), np.array(plain["coefs"])
    print(f"rows {args.rows:,} x 78 features, 50 penalties, {args.threads} threads")
    for r in (study, plain):
        print(
            f"  {r['kind']:<6} wall {r['wall_s']:7.2f} s   peak RSS {r['peak_rss_mb']:8.0f} MB (before: {r['base_rss_mb']:.0f} MB)"
        )
    print(
        f"  ratio study/plain: time {study['wall_s'] / plain['wall_s']:.2f}, peak RSS {study['peak_rss_mb'] / plain['peak_rss_mb']:.2f}"
    )
    print(f"  max |coef difference| {np.abs(a - b).max():.3g} (max |coef| {np.abs(b).max():.3g})")
    print(json.dumps({"rows": args.rows, "study_s": study["wall_s"], "plain_s": plain["wall_s"],
                      "study_rss_mb": study["peak_rss_mb"], "plain_rss_mb": plain["peak_rss_mb"]}))  # fmt: skip


if __name__ == "__main__":
    main()
