"""Rank sweep on one 7B-sized expert delta: cached decomposition vs exact SVD per rank.

A FlexMoRE sweep converts every matrix at 15 ranks (2^0 .. 2^14, capped at
min(rows, cols) = 4096 for an 11008 x 4096 delta). This script measures, in one run:

1. baseline: ``torch.linalg.svd`` recomputed for every rank (what a loop over ranks
   without a cache does);
2. cached path: ``DecompositionCache(compute_rank=max rank)``, one decomposition,
   every rank served from it;
3. randomized accuracy: ``decompose(..., method="randomized")`` for ranks up to 256,
   its relative Frobenius error against the exact truncation error at the same rank.

The delta is synthetic: Gaussian factors scaled by ``(1 + i)^-0.6``, a slowly decaying
spectrum that is harder for the randomized method than a fast decay.

Usage::

    nice -n 10 python benchmarks/moe_svd_sweep.py --threads 1 --baseline-runs 15
    python benchmarks/moe_svd_sweep.py --rows 2048 --cols 1024 --baseline-runs 3

``--baseline-runs N`` times N exact SVDs and extrapolates the baseline to 15 (reported
as such).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from provex.moe.lowrank import DecompositionCache, decompose


def synthetic_delta(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """``[rows, cols]`` Gaussian factors scaled by ``(1 + i)^-0.6``.

    The singular vectors are not orthogonalised, because a QR of an 11008 x 4096
    matrix costs as much as the SVD being measured. The singular values therefore only
    approximately follow the power law, and every method sees the same matrix.
    """
    generator = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    u = torch.randn(rows, k, generator=generator) / rows**0.5
    v = torch.randn(cols, k, generator=generator) / cols**0.5
    s = (1.0 + torch.arange(k, dtype=torch.float32)) ** -0.6
    return (u * s) @ v.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=11008, help="delta rows (intermediate size)"
    )
    parser.add_argument(
        "--cols", type=int, default=4096, help="delta columns (hidden size)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--baseline-runs", type=int, default=15, help="exact SVDs to time (1..15)"
    )
    parser.add_argument(
        "--json", type=str, default="", help="write the results to this JSON file"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    delta = synthetic_delta(args.rows, args.cols)
    limit = min(args.rows, args.cols)
    ranks = [min(2**i, limit) for i in range(15)]

    exact_errors: dict[int, float] = {}
    # 1. cached sweep: one decomposition serves all 15 ranks.
    start, cpu_start = time.perf_counter(), time.process_time()
    cache = DecompositionCache(compute_rank=max(ranks))
    for rank in ranks:
        d = cache.get(delta, rank, "auto")
        B, A = d.factors(rank)
        exact_errors[rank] = d.relative_error(rank)
    cached_total = time.perf_counter() - start
    cached_cpu = time.process_time() - cpu_start
    print(
        f"cached sweep of {len(ranks)} ranks: {cached_total:.1f} s ({cache.misses} "
        "decomposition)",
        flush=True,
    )

    # 2. randomized accuracy for ranks up to 256.
    randomized = []
    for rank in [r for r in ranks if r <= 256]:
        start, cpu_start = time.perf_counter(), time.process_time()
        d = decompose(delta, rank, "randomized")
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        error = d.relative_error(rank)
        gap = error / exact_errors[rank] - 1.0
        randomized.append(
            {
                "rank": rank,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "error": error,
                "exact_error": exact_errors[rank],
                "relative_gap": gap,
            }
        )
        print(
            f"randomized rank {rank}: {seconds:.2f} s, error {error:.5f} vs exact "
            f"{exact_errors[rank]:.5f} ({100 * gap:+.3f}%)",
            flush=True,
        )

    # 3. baseline: one exact SVD per rank, timed last so that a stopped run still
    # reports the cached and randomized results (see --baseline-runs).
    baseline_times, baseline_cpu = [], []
    for rank in ranks[: args.baseline_runs]:
        start, cpu_start = time.perf_counter(), time.process_time()
        d = decompose(delta, None, "exact")
        B, A = d.factors(rank)
        baseline_times.append(time.perf_counter() - start)
        baseline_cpu.append(time.process_time() - cpu_start)
        print(
            f"baseline exact SVD for rank {rank}: {baseline_times[-1]:.1f} s",
            flush=True,
        )
    per_svd = sum(baseline_times) / len(baseline_times)
    baseline_total = per_svd * len(ranks)

    result = {
        "shape": [args.rows, args.cols],
        "threads": args.threads,
        "ranks": ranks,
        "baseline_runs_timed": len(baseline_times),
        "baseline_seconds_per_svd": per_svd,
        "baseline_seconds_for_15": baseline_total,
        "baseline_extrapolated": len(baseline_times) < len(ranks),
        "cached_seconds_for_15": cached_total,
        "speedup": baseline_total / cached_total,
        "baseline_cpu_seconds_for_15": sum(baseline_cpu)
        / len(baseline_cpu)
        * len(ranks),
        "cached_cpu_seconds_for_15": cached_cpu,
        "speedup_cpu_time": sum(baseline_cpu)
        / len(baseline_cpu)
        * len(ranks)
        / cached_cpu,
        "randomized_total_seconds": sum(r["seconds"] for r in randomized),
        "randomized_max_relative_gap": max(r["relative_gap"] for r in randomized),
        "randomized": randomized,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "randomized"}, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
