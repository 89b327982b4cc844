"""Run a protocol over a benchmark, log every attempt, summarise and compare runs.

A run directory holds:

- ``config.json``: what was run (model, backend, benchmark, protocol settings);
- ``log.jsonl``: one line per finished question with the prompt, every attempt
  (text, program, Prolog status, value, error class, tokens, seconds), the final
  prediction and the gold answer. Each line is appended and flushed to disk
  (``fsync``) as soon as its question finishes. An interrupted run therefore loses at
  most the questions in flight, and rerunning the same command skips finished ids;
- ``summary.json``, ``summary.md`` and ``summary.png``: the metrics of all logged
  questions.

Metrics (percentages over questions):

- accuracy: the final prediction is within 1e-6 of gold;
- structure: the final program has at least one clause besides ``solve/1`` and at
  least one ``{}`` constraint;
- fully correct: both;
- attempts: generations per question (turns for the agentic protocols), their mean
  over all questions and over correctly answered ones ("to success").
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provex.prolog.generation import Chat, Generator
from provex.prolog.protocols.base import (
    DriverTimings,
    Episode,
    Executor,
    Protocol,
    Question,
    run_episodes,
)

logger = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"
CONFIG_NAME = "config.json"
SUMMARY_NAME = "summary.json"
# Settings that must match for a rerun to continue an existing log.
RESUME_KEYS: tuple[str, ...] = ("model", "adapter", "benchmark", "protocol", "prompt")


class ResumeMismatchError(ValueError):
    """The run directory contains a log written with different settings."""


@dataclass
class Summary:
    """Metrics of one run; percentages are in [0, 100] and times in seconds."""

    run: str
    model: str
    benchmark: str
    protocol: str
    questions: int
    accuracy: float
    structure: float
    fully_correct: float
    executed: float  # questions whose final program yielded a number
    mean_attempts: float
    attempts_to_success: float | None
    first_attempt_success: float | None  # share of correct answers found first try
    max_attempts: int
    total_attempts: int
    error_classes: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    stop_reasons: dict[str, int] = field(default_factory=dict)
    generation_seconds: float = 0.0
    generation_seconds_per_attempt: float = 0.0
    prolog_seconds: float = 0.0
    prolog_seconds_per_question: float = 0.0
    tokens: int = 0
    wall_seconds: float = 0.0
    # Wall time outside generation: running and analysing programs, logging.
    harness_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _episode_prompt(episode: Episode) -> Chat:
    chat = getattr(episode, "chat", None)
    if chat is not None:
        return chat
    return Chat(list(getattr(episode, "base", [])), separator="\n\n")


def question_record(
    episode: Episode,
    generator: Generator,
    executor: Executor,
    protocol: Protocol,
    analyze: bool = True,
) -> dict[str, Any]:
    """Return the log line of a finished episode.

    Args:
        episode: a finished episode.
        generator: used to render the opening prompt as the model saw it.
        executor: used to analyse the structure of the final program.
        protocol: its name goes into the record.
        analyze: count clauses and constraints of the final program.
    """
    outcome = episode.outcome
    if outcome is None:
        raise ValueError(f"episode of {episode.question.id} has not finished")
    predicates = constraints = 0
    if analyze and outcome.program:
        started = time.perf_counter()
        structure = executor.pool.analyze(outcome.program)
        executor.seconds += time.perf_counter() - started
        predicates, constraints = structure.predicates, structure.constraints
    structure_valid = predicates >= 1 and constraints >= 1
    attempts = [a.as_dict() for a in outcome.attempts]
    try:
        prompt = generator.render(_episode_prompt(episode))
    except ValueError:
        prompt = json.dumps(_episode_prompt(episode).messages)
    return {
        "id": episode.question.id,
        "protocol": protocol.name,
        "prompt": prompt,
        "gold": episode.question.gold,
        "prediction": outcome.prediction,
        "correct": outcome.correct,
        "program": outcome.program,
        "predicates": predicates,
        "constraints": constraints,
        "structure_valid": structure_valid,
        "fully_correct": outcome.correct and structure_valid,
        "attempts": attempts,
        "num_attempts": len(attempts),
        "success_attempt": outcome.success_attempt,
        "stop_reason": outcome.stop_reason,
        "tries": outcome.tries,
        "generation_seconds": sum(a["gen_seconds"] for a in attempts),
        "prolog_seconds": sum(a["prolog_seconds"] for a in attempts),
        "tokens": sum(a["tokens"] for a in attempts),
        "meta": episode.question.meta,
    }


def read_log(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Read a run log, ignoring a last line cut short by an interruption.

    Only newline-terminated lines count as records, because each record is written
    together with its newline.

    Args:
        path: the ``log.jsonl`` file.
        repair: also cut an unterminated last line from the file, so that appended
            records start on a fresh line.

    Raises:
        ValueError: when a complete line is not valid JSON.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    complete_end = data.rfind(b"\n") + 1
    if complete_end < len(data):
        logger.warning(
            "%s: ignoring an unfinished last line of %d bytes",
            path,
            len(data) - complete_end,
        )
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(complete_end)
    records = []
    for number, line in enumerate(data[:complete_end].split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}:{number} is not valid JSON ({err}); remove that line to resume"
            ) from err
    return records


class RunLog:
    """Append-only JSONL log; every record is flushed and fsynced when written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_resume(out_dir: str | Path, config: dict[str, Any]) -> float:
    """Verify that a run directory can continue with ``config``.

    Returns:
        The wall seconds of earlier sessions (0 for a new run).

    Raises:
        ResumeMismatchError: when the logged run used other ``RESUME_KEYS`` values.
    """
    out_dir = Path(out_dir)
    path = out_dir / CONFIG_NAME
    previous_wall = 0.0
    if path.exists() and (out_dir / LOG_NAME).exists():
        old = json.loads(path.read_text())
        for key in RESUME_KEYS:
            if old.get(key) != config.get(key):
                raise ResumeMismatchError(
                    f"{out_dir} contains a run with {key}={old.get(key)!r}, not "
                    f"{config.get(key)!r}; pass another --out directory or delete it"
                )
        previous_wall = float(old.get("wall_seconds", 0.0))
    return previous_wall


def _previous(out_dir: Path, key: str) -> float:
    path = out_dir / CONFIG_NAME
    if not (path.exists() and (out_dir / LOG_NAME).exists()):
        return 0.0
    return float(json.loads(path.read_text()).get(key, 0.0))


def evaluate(
    questions: Sequence[Question],
    protocol: Protocol,
    generator: Generator,
    out_dir: str | Path,
    *,
    executor: Executor | None = None,
    config: dict[str, Any] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> Summary:
    """Answer every question with ``protocol``, logging as it goes; resume if logged.

    Args:
        questions: the benchmark items; their ids must be unique.
        protocol: the inference protocol.
        generator: the model backend.
        out_dir: the run directory (created if missing).
        executor: runs the programs; one on the shared Prolog pool by default.
        config: run settings stored in ``config.json``; ``model``, ``adapter``,
            ``benchmark``, ``protocol`` and ``prompt`` must match to resume a log.
        batch_size: questions answered together; their generations share batches.
        progress: show a progress bar.
        on_record: called with each log record after it is written.

    Returns:
        The summary of every question in the log, old and new.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [q.id for q in questions]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        raise ValueError(f"question ids must be unique; repeated: {duplicates[:5]}")
    config = {
        "protocol": protocol.name,
        "protocol_config": protocol.config(),
        "backend": generator.name,
        **(config or {}),
    }
    previous_wall = check_resume(out_dir, config)
    previous_harness = _previous(out_dir, "harness_seconds")
    log_path = out_dir / LOG_NAME
    done = {r["id"] for r in read_log(log_path, repair=True)}
    pending = [q for q in questions if q.id not in done]
    if done:
        logger.info(
            "resuming %s: %d questions logged, %d to go",
            out_dir,
            len(done),
            len(pending),
        )
    executor = executor or Executor()
    bind = getattr(protocol, "bind", None)
    if bind is not None:
        bind(generator)
    timings = DriverTimings()
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(questions), initial=len(done), desc=protocol.name, unit="q"
        )
    try:
        with RunLog(log_path) as log:

            def write(episode: Episode) -> None:
                started_record = time.perf_counter()
                record = question_record(episode, generator, executor, protocol)
                log.write(record)
                timings.feed += time.perf_counter() - started_record
                if on_record is not None:
                    on_record(record)
                if bar is not None:
                    bar.update(1)

            for start in range(0, len(pending), batch_size):
                chunk = pending[start : start + batch_size]
                episodes = [protocol.start(q, executor) for q in chunk]
                run_episodes(
                    episodes,
                    generator,
                    on_done=write,
                    max_batch=batch_size,
                    workers=executor.pool.size,
                    timings=timings,
                )
    finally:
        if bar is not None:
            bar.close()
        wall = previous_wall + time.perf_counter() - started
        harness = previous_harness + timings.feed
        stored = {**config, "wall_seconds": wall, "harness_seconds": harness}
        (out_dir / CONFIG_NAME).write_text(json.dumps(stored, indent=2, default=str))
    records = read_log(log_path)
    summary = summarize(records, config, wall_seconds=wall, run=out_dir.name)
    summary.harness_seconds = harness
    write_summary(summary, out_dir)
    return summary


def summarize(
    records: Sequence[dict[str, Any]],
    config: dict[str, Any] | None = None,
    wall_seconds: float = 0.0,
    run: str = "",
) -> Summary:
    """Compute the metrics of a run from its log records."""
    config = config or {}
    n = len(records)

    def pct(count: int) -> float:
        return 100.0 * count / n if n else 0.0

    correct = [r for r in records if r["correct"]]
    attempts = [a for r in records for a in r["attempts"]]
    successes = [r["success_attempt"] for r in correct if r["success_attempt"]]
    error_classes = Counter(
        a["error_class"] for a in attempts if a.get("error_class") is not None
    )
    gen_seconds = sum(a["gen_seconds"] for a in attempts)
    prolog_seconds = sum(r["prolog_seconds"] for r in records)
    return Summary(
        run=run,
        model=str(config.get("model", "")),
        benchmark=str(config.get("benchmark", "")),
        protocol=str(config.get("protocol", records[0]["protocol"] if records else "")),
        questions=n,
        accuracy=pct(len(correct)),
        structure=pct(sum(r["structure_valid"] for r in records)),
        fully_correct=pct(sum(r["fully_correct"] for r in records)),
        executed=pct(sum(r["prediction"] is not None for r in records)),
        mean_attempts=statistics.fmean([r["num_attempts"] for r in records])
        if records
        else 0.0,
        attempts_to_success=statistics.fmean(successes) if successes else None,
        first_attempt_success=100.0 * successes.count(1) / len(successes)
        if successes
        else None,
        max_attempts=max((r["num_attempts"] for r in records), default=0),
        total_attempts=len(attempts),
        error_classes=dict(error_classes.most_common()),
        actions=dict(Counter(a["action"] for a in attempts).most_common()),
        stop_reasons=dict(Counter(r["stop_reason"] for r in records).most_common()),
        generation_seconds=gen_seconds,
        generation_seconds_per_attempt=gen_seconds / len(attempts) if attempts else 0.0,
        prolog_seconds=prolog_seconds,
        prolog_seconds_per_question=prolog_seconds / n if n else 0.0,
        tokens=sum(a["tokens"] for a in attempts),
        wall_seconds=wall_seconds,
    )


_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run", "Run"),
    ("protocol", "Protocol"),
    ("questions", "Questions"),
    ("accuracy", "Accuracy %"),
    ("structure", "Structure %"),
    ("fully_correct", "Fully correct %"),
    ("executed", "Executed %"),
    ("mean_attempts", "Attempts (mean)"),
    ("attempts_to_success", "Attempts to success"),
    ("generation_seconds_per_attempt", "Gen s/attempt"),
    ("prolog_seconds", "Prolog s"),
    ("wall_seconds", "Wall s"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1 and value else f"{value:.2f}"
    return str(value)


def summary_table(summaries: Sequence[Summary]) -> str:
    """Return a Markdown table with one row per run."""
    header = "| " + " | ".join(title for _, title in _TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in _TABLE_COLUMNS) + "|"
    rows = [
        "| " + " | ".join(_cell(getattr(s, key)) for key, _ in _TABLE_COLUMNS) + " |"
        for s in summaries
    ]
    return "\n".join([header, rule, *rows])


def error_class_table(summaries: Sequence[Summary]) -> str:
    """Return a Markdown table of attempt error classes (count and share per run)."""
    classes = sorted({c for s in summaries for c in s.error_classes})
    header = (
        "| Error class | " + " | ".join(s.run or s.protocol for s in summaries) + " |"
    )
    rule = "|---|" + "|".join("---" for _ in summaries) + "|"
    rows = []
    for name in classes:
        cells = []
        for s in summaries:
            count = s.error_classes.get(name, 0)
            total = sum(s.error_classes.values()) or 1
            cells.append(f"{count} ({100.0 * count / total:.1f}%)")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *rows])


def write_summary(summary: Summary, out_dir: Path) -> None:
    """Write ``summary.json``, ``summary.md`` and the ``summary.png`` bar chart."""
    (out_dir / SUMMARY_NAME).write_text(json.dumps(summary.to_dict(), indent=2))
    markdown = (
        f"# {summary.benchmark} / {summary.protocol} / {summary.model}\n\n"
        f"{summary_table([summary])}\n\n## Attempt error classes\n\n"
        f"{error_class_table([summary])}\n"
    )
    (out_dir / "summary.md").write_text(markdown)
    plot_runs([summary], out_dir / "summary.png")


def load_summary(run_dir: str | Path) -> Summary:
    """Read a run's summary, recomputing it from the log when missing."""
    run_dir = Path(run_dir)
    path = run_dir / SUMMARY_NAME
    if path.exists():
        data = json.loads(path.read_text())
        return Summary(
            **{k: v for k, v in data.items() if k in Summary.__annotations__}
        )
    log = run_dir / LOG_NAME
    if not log.exists():
        raise FileNotFoundError(
            f"{run_dir} has neither {SUMMARY_NAME} nor {LOG_NAME}; pass a directory "
            "written by `provex prolog eval`"
        )
    config_path = run_dir / CONFIG_NAME
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    return summarize(
        read_log(log), config, float(config.get("wall_seconds", 0.0)), run_dir.name
    )


def plot_runs(summaries: Sequence[Summary], path: str | Path) -> Path:
    """Draw accuracy, structure and fully-correct bars per run into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (
        ("accuracy", "Accuracy"),
        ("structure", "Structure"),
        ("fully_correct", "Fully correct"),
    )
    labels = [s.run or s.protocol for s in summaries]
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(summaries) + 2), 3.6))
    for k, (key, title) in enumerate(metrics):
        xs = [i + (k - 1) * width for i in range(len(summaries))]
        values = [getattr(s, key) for s in summaries]
        bars = ax.bar(xs, values, width=width, label=title)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(summaries)), labels, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("% of questions")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    benchmarks = sorted({s.benchmark for s in summaries if s.benchmark})
    ax.set_title(", ".join(benchmarks) or "runs", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare_runs(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> str:
    """Put several runs side by side.

    Args:
        run_dirs: run directories written by :func:`evaluate`.
        out: where to write ``compare.md`` and ``compare.png``; nothing is written
            when ``None``.

    Returns:
        The Markdown comparison (summary table and error-class table).
    """
    if not run_dirs:
        raise ValueError("compare needs at least one run directory")
    summaries = [load_summary(d) for d in run_dirs]
    text = (
        f"{summary_table(summaries)}\n\n## Attempt error classes\n\n"
        f"{error_class_table(summaries)}\n"
    )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(text)
        plot_runs(summaries, out / "compare.png")
    return text
