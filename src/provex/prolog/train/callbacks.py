"""Per-step metrics to JSONL, readable while the run goes on and after a resume.

``MetricsJsonl`` is a ``TrainerCallback``: every time the trainer logs (each step
with ``logging_steps=1``), it appends one JSON line with the global step, the epoch,
a timestamp and every logged value (rewards per function, ``kl``, completion length,
``prolog/correct_rate``, loss, learning rate...). Trackers configured through
``report_to`` receive the same values from the trainer itself.

On resume, lines for steps beyond the checkpoint being resumed are dropped first, so
no training step appears twice. The
last line of a finished run has ``"event": "summary"`` (runtime, mean loss).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# Friendlier aliases written next to TRL's names, so that the file reads the same
# whatever the TRL version calls them.
ALIASES = {
    "completions/mean_length": "completion_length",
    "reward": "reward_total",
}


class MetricsJsonl(TrainerCallback):
    """Append the trainer's logs to a JSONL file, one line per logging event."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.started = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        truncate_after(self.path, state.global_step)

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        record: dict[str, Any] = {
            "step": state.global_step,
            "epoch": state.epoch,
            "time": time.time(),
            "elapsed_s": round(time.time() - self.started, 3),
        }
        for key, value in logs.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                record[key] = value
        if "train_runtime" in logs:
            record["event"] = "summary"
        for key, alias in ALIASES.items():
            if key in record:
                record[alias] = record[key]
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics JSONL file; a partly written last line is skipped."""
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("skipping a malformed line in %s", path)
    return rows


def truncate_after(path: Path, step: int) -> None:
    """Drop lines whose step is greater than ``step`` (used when resuming)."""
    if not path.exists():
        return
    rows = read_metrics(path)
    kept = [row for row in rows if row.get("step", 0) <= step]
    if len(kept) != len(rows):
        dropped = len(rows) - len(kept)
        logger.info("resuming at step %d: dropping %d later lines", step, dropped)
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))
