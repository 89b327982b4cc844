"""Throughput and parity of the pooled Prolog engine against the reference executor.

Every program of GSM8K-Prolog's test split (field ``output``) goes through a
``PrologPool`` and through ``run_reference`` (a fresh ``swipl`` per program) in
the same run. The two take turns on chunks of 100 programs. The script reports
agreement on every program (``reference_line`` of the pool's result against the
reference's last output line), programs per second, p50/p99 latency and the throughput
ratio. Pool latency is the round trip of one request to a worker. Reference
latency is one ``swipl`` process from start to exit.

    python benchmarks/prolog_throughput.py
    python benchmarks/prolog_throughput.py --reference-limit 200   # subset
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from tqdm import tqdm

from provex.prolog.answers import reference_line
from provex.prolog.engine import PrologPool, run_reference

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "gsm8k_prolog"
    / "test.jsonl"
)


def load_programs(path: Path, field: str) -> list[str]:
    """Read the program field of every row of a JSONL file."""
    programs = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                programs.append(json.loads(line)[field])
    return programs


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (fraction in [0, 1])."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL file.")
    parser.add_argument("--field", default="output", help="Field with the program.")
    parser.add_argument("--workers", type=int, default=2, help="Pool size.")
    parser.add_argument(
        "--reference-limit",
        type=int,
        default=None,
        help="Run the reference on only the first N programs (default: all).",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=100,
        help="Programs per turn when the two executors alternate.",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file for the summary."
    )
    args = parser.parse_args()
    if not args.data.exists():
        parser.error(f"data file {args.data} not found; pass --data PATH")

    load_start = os.getloadavg()[0]
    programs = load_programs(args.data, args.field)
    limit = len(programs) if args.reference_limit is None else args.reference_limit

    start = time.perf_counter()
    pool = PrologPool(workers=args.workers)
    pool_start = time.perf_counter() - start

    # The two executors take turns on chunks of programs, so that both see the
    # same background load on a shared machine.
    results = []
    reference_texts: list[str | None] = []
    reference_latency: list[float] = []
    pool_wall = reference_wall = 0.0
    bar = tqdm(total=len(programs) + limit, desc="pool+reference", unit="prog")
    with pool:
        pool.run("solve(1).")  # warm-up: the first request loads autoload indexes
        for first in range(0, len(programs), args.chunk):
            chunk = programs[first : first + args.chunk]
            start = time.perf_counter()
            results.extend(pool.run_many(chunk))
            pool_wall += time.perf_counter() - start
            bar.update(len(chunk))
            for program in chunk[: max(0, limit - first)]:
                began = time.perf_counter()
                reference_texts.append(run_reference(program))
                reference_latency.append(time.perf_counter() - began)
                bar.update(1)
            reference_wall += sum(reference_latency[first:])
    bar.close()
    # The line the reference would print for each pooled result: its output
    # before the value joins the line, and a program with one unparsable clause
    # still runs, as in the reference.
    pool_texts = [reference_line(r) for r in results]
    pool_latency = [r.elapsed for r in results]

    disagreements = [
        {"index": i, "pool": pool_texts[i], "reference": reference_texts[i]}
        for i in range(limit)
        if pool_texts[i] != reference_texts[i]
    ]
    pool_rate = len(programs) / pool_wall
    reference_rate = limit / reference_wall
    summary = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}",
        "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "programs": len(programs),
        "reference_programs": limit,
        "workers": args.workers,
        "pool_start_s": round(pool_start, 3),
        "pool_wall_s": round(pool_wall, 3),
        "pool_programs_per_s": round(pool_rate, 1),
        "pool_p50_ms": round(1000 * statistics.median(pool_latency), 2),
        "pool_p99_ms": round(1000 * percentile(pool_latency, 0.99), 2),
        "pool_statuses": _count([r.status for r in results]),
        "reference_wall_s": round(reference_wall, 3),
        "reference_programs_per_s": round(reference_rate, 2),
        "reference_p50_ms": round(1000 * statistics.median(reference_latency), 2),
        "reference_p99_ms": round(1000 * percentile(reference_latency, 0.99), 2),
        "reference_none": sum(t is None for t in reference_texts),
        "throughput_ratio": round(pool_rate / reference_rate, 1),
        "agreement": f"{limit - len(disagreements)}/{limit}",
        "disagreements": disagreements[:20],
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


def _count(statuses: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


if __name__ == "__main__":
    main()
