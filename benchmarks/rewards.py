"""Time per group of 8 completions for reward suites 1 and 3, and the Prolog share.

Builds 8 completions per prompt for the first 256 GSM8K-Prolog test problems. They
are the reference program, a variant with an extra fact, a rational answer and a
hard-coded literal. The other four are an unbound variable, a syntax error, an
``is/2`` program and a completion without an answer block. Each group is scored the
way TRL calls reward functions (one call per function per group), and the time
spent inside the Prolog pool is measured separately. The semantic terms of suite 3
use a hashing embedding here, so the embedding model is excluded. ``--minilm`` also
times the real MiniLM model.

    python benchmarks/rewards.py
    python benchmarks/rewards.py --prompts 64 --minilm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from provex.prolog.engine import PrologPool
from provex.prolog.rewards import get_preset

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "gsm8k_prolog"
    / "test.jsonl"
)
CLPQ = ":- use_module(library(clpq)).\n"


class TimedPool:
    """Delegates to a ``PrologPool`` and adds up the wall-clock seconds during
    which at least one of its calls is running (calls may overlap)."""

    def __init__(self, pool: PrologPool) -> None:
        self.pool = pool
        self.seconds = 0.0
        self._active = 0
        self._since = 0.0
        self._lock = threading.Lock()

    def _timed(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1
        try:
            return getattr(self.pool, method)(*args, **kwargs)
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self.seconds += time.perf_counter() - self._since

    def run_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("run_many", *args, **kwargs)

    def analyze_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("analyze_many", *args, **kwargs)


def hashing_embed(texts: list[str]) -> np.ndarray:
    """Embed texts as 64-bucket counts of hashed tokens (a cheap stand-in model)."""
    vectors = np.zeros((len(texts), 64))
    for row, text in enumerate(texts):
        for token in text.split():
            vectors[row, zlib.crc32(token.encode()) % 64] += 1.0
    return vectors


def wrap(program: str) -> str:
    reasoning = "Compute it step by step."
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{program}\n</answer>\n"


def group_for(program: str, gold: str) -> list[str]:
    """Return 8 completions of different kinds for one problem.

    Every program mentions the gold value, so no two groups share a program.
    """
    return [
        wrap(program),
        wrap(program + f"\nextra_fact({gold})."),
        wrap(CLPQ + f"solve(X) :- {{X = ({gold} * 2 + 1) / 2}}."),
        wrap(CLPQ + f"solve(X) :- {{X = {gold}}}."),
        wrap(f"solve(X) :- Y = {gold}, true."),
        wrap(f"solve(X :- {{X = {gold} }}."),
        wrap(f"solve(X) :- X is {gold} + 1."),
        f"I think the answer is {gold}.",
    ]


def load_groups(path: Path, prompts: int) -> list[tuple[str, str]]:
    groups = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if len(groups) == prompts:
                break
            row = json.loads(line)
            groups.append((row["output"], row["input"]))
    return groups


def measure(
    suite: str,
    groups: list[tuple[list[str], list[str], str]],
    pool: TimedPool,
    embed: Any,
) -> dict[str, float]:
    rewards = get_preset(suite, pool=pool, embed=embed)
    pool.seconds = 0.0
    state = SimpleNamespace(global_step=0, max_steps=len(groups))
    start = time.perf_counter()
    for step, (completions, golds, reference) in enumerate(groups):
        state.global_step = step
        for reward in rewards:
            reward(
                completions,
                answer=[reference] * len(completions),
                numerical_result=golds,
                trainer_state=state,
            )
    total = time.perf_counter() - start
    return {
        "ms_per_group": 1000 * total / len(groups),
        "prolog_ms_per_group": 1000 * pool.seconds / len(groups),
        "prolog_share": pool.seconds / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL file.")
    parser.add_argument("--prompts", type=int, default=256, help="Prompts (groups).")
    parser.add_argument("--workers", type=int, default=2, help="Prolog pool size.")
    parser.add_argument("--minilm", action="store_true", help="Also time MiniLM.")
    args = parser.parse_args()

    with PrologPool(workers=args.workers) as raw_pool:
        pool = TimedPool(raw_pool)
        rows = load_groups(args.data, args.prompts)
        golds = raw_pool.run_many([program for program, _ in rows])
        groups = []
        for (program, _), result in zip(rows, golds, strict=True):
            gold = result.texts.get("X", "0")
            groups.append((group_for(program, gold), [gold] * 8, program))
        # One warm-up group so that worker start-up is not timed.
        measure("suite1", groups[:1], pool, hashing_embed)

        print(
            f"machine: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, {args.workers} Prolog workers, "
            f"load average {os.getloadavg()[0]:.2f} at start"
        )
        print(f"{len(groups)} prompts x 8 completions")
        results = {
            "suite1": measure("suite1", groups, pool, hashing_embed),
            "suite3 (hashing embedding)": measure(
                "suite3", groups, pool, hashing_embed
            ),
        }
        if args.minilm:
            from provex.prolog.rewards import minilm_embed

            minilm_embed(["warm up"])
            results["suite3 (MiniLM)"] = measure("suite3", groups, pool, minilm_embed)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{'suite':<28} {'ms/group':>9} {'prolog ms':>10} {'prolog share':>13}")
    for name, result in results.items():
        print(
            f"{name:<28} {result['ms_per_group']:>9.2f} "
            f"{result['prolog_ms_per_group']:>10.2f} {result['prolog_share']:>12.0%}"
        )


if __name__ == "__main__":
    main()
