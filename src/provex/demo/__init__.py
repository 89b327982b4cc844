"""The provex demo: both systems end to end on small, real inputs, with a report.

Stages (each skipped when a previous run finished it with the same settings):

1. Prolog as a tool: prepare the model, build verified programs for a GSM8K slice,
   answer a disjoint slice of GSM8K test problems under the four protocols, run a
   short GRPO fine-tune with the Prolog rewards, answer the same problems again.
2. FlexMoRE: build (or reuse from the cache) a small FlexOlmo trained on Python,
   Prolog and GSM8K text, compress its experts at several ranks, compare held-out
   loss and parameters against the full-size experts.
3. ``<out>/report.md`` with PNG plots and timings.

The stages call the same ``provex`` commands a user types, in this process.

Example:
    >>> from provex.demo import DemoSettings, quick_settings, run_demo
    >>> quick = quick_settings(DemoSettings(out=Path("runs/quick")))
    >>> result = run_demo(quick)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provex.demo.settings import DemoSettings, quick_settings
from provex.demo.stages import DemoError, StageRecord, Stages

logger = logging.getLogger(__name__)

__all__ = [
    "DemoError",
    "DemoResult",
    "DemoSettings",
    "StageRecord",
    "quick_settings",
    "run_demo",
]


@dataclass
class DemoResult:
    """Where the report is, each stage's record, and the terminal summary text."""

    report: Path
    records: list[StageRecord]
    summary: str


def run_demo(
    settings: DemoSettings, echo: Callable[[str], None] | None = None
) -> DemoResult:
    """Run (or resume) every demo stage and write the report.

    Args:
        settings: model, budgets, output folder and which parts to run.
        echo: receives one line per stage start and end (default: the log).

    Returns:
        A ``DemoResult``.

    Raises:
        DemoError: a stage's command failed.
        ValueError: a setting cannot work (the message names it).
    """
    import torch

    from provex.demo.flexmore import MOE_STAGES, run_moe_stages
    from provex.demo.prolog import PROLOG_STAGES, run_prolog_stages
    from provex.demo.report import terminal_summary, write_report

    settings.check()
    echo = echo or logger.info
    torch.set_num_threads(settings.threads)
    settings.out.mkdir(parents=True, exist_ok=True)
    total = (0 if settings.skip_prolog else PROLOG_STAGES) + (
        0 if settings.skip_moe else MOE_STAGES
    )
    stages = Stages(settings.out, total, echo)
    if not settings.skip_prolog:
        run_prolog_stages(settings, stages)
    if not settings.skip_moe:
        run_moe_stages(settings, stages)
    report = write_report(settings, stages.records)
    return DemoResult(
        report, stages.records, terminal_summary(settings, stages.records)
    )
