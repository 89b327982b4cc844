"""Rank sweep over a built FlexOlmo: independent cells, one JSONL line each.

The grid follows FlexMoRE's experiment on a small scale:

- ``public``: the dense public model, the baseline without any domain expert.
- ``2x-<expert>-r<k>`` / ``2x-<expert>-full``: public plus one domain expert, the expert
  replaced by its rank-k truncated SVD delta on the public expert (or kept dense),
  with top-2 routing.
- ``Nx-r<k>-a<t>`` / ``Nx-full-a<t>``: the merged N-expert model with every domain
  expert at rank k (or dense) and ``num_experts_per_tok = t``.
- ``Nx-best-a<t>``: every domain expert at its own best rank, read from the finished
  2-expert cells when the cell runs.

Each cell loads its model, compresses it with :func:`provex.moe.modeling.compress_model`
(decompositions cached on disk and shared by all cells), evaluates it and appends one
line to ``results.jsonl`` with an fsync. A rerun skips cells already in the file.
Cells run in local worker processes (``jobs``) or one per call (``run_cell``), which is
how a cluster array job runs them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from provex.moe.build import PACKAGED_CONFIGS, BuildConfig, load_build_config

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"


@dataclass
class SweepConfig:
    """Settings of a rank sweep: the grid, the tasks and the evaluation device.

    ``ranks`` empty means every power of two from 1 up to ``max_rank`` (default: the
    smaller side of the expert matrices). ``top_k`` entries are integers or ``N`` (all
    experts).
    """

    build: str = "runs/flexolmo-small"  # build output folder
    output: str | None = None  # results folder; default <build>/sweep
    experts: list[str] | None = None  # domain experts; default all in the build
    ranks: list[int] = field(default_factory=list)
    max_rank: int | None = None
    include_full: bool = True
    top_k: list[int | str] = field(default_factory=lambda: [2, 4, "N"])
    uniform: bool = True  # N-expert cells with one rank for every expert
    nx_ranks: list[int] | None = None  # uniform ranks of N-expert cells; default ranks
    best: bool = True  # N-expert cells with per-expert best ranks
    best_by: str = "score"  # score: mean task accuracy; loss: own-domain held-out loss
    tasks: list[str] | None = None  # task names; default all written by the build
    exclude_tasks: list[str] = field(default_factory=list)  # left out of ``tasks``
    task_limit: int | None = 100  # items per task
    batch_size: int = 32  # sequences per forward pass
    eval_chunks: int | None = None  # held-out sequences per domain; default the build's
    method: str = "exact"  # SVD method: exact, randomized or auto
    threads_per_job: int = 1  # torch threads in each worker process
    device: str = "cpu"
    dtype: str = "float32"


@dataclass(frozen=True)
class Cell:
    """One model to evaluate."""

    id: str
    kind: str  # public, 2x or Nx
    experts: tuple[str, ...]  # domain experts in the model
    rank: int | str | None  # int, "full", "best" or None (public)
    top_k: int


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read a sweep YAML; a bare name loads a packaged config (``sweep-default``)."""
    path = Path(path)
    if not path.exists() and (PACKAGED_CONFIGS / f"sweep-{path.name}.yaml").exists():
        path = PACKAGED_CONFIGS / f"sweep-{path.name}.yaml"
    if not path.exists():
        packaged = sorted(
            p.stem.removeprefix("sweep-") for p in PACKAGED_CONFIGS.glob("sweep-*.yaml")
        )
        raise FileNotFoundError(
            f"sweep config {path} not found; give a YAML path or one of {packaged}"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in fields(SweepConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {unknown}; allowed keys are {sorted(known)}"
        )
    return SweepConfig(**raw)


@dataclass
class SweepPlan:
    """A validated sweep: its build, output folder and cells in run order."""

    config: SweepConfig
    build: BuildConfig
    root: Path
    output: Path
    experts: list[str]
    ranks: list[int]
    cells: list[Cell]

    @property
    def results_path(self) -> Path:
        return self.output / RESULTS_NAME


def plan_sweep(config: SweepConfig) -> SweepPlan:
    """Validate a sweep config against its build and list the cells.

    Everything that can be wrong in the config is checked here, before any model is
    loaded: unknown experts, ranks above the expert matrices' smaller side, top-k above
    the number of experts, an unknown ``best_by`` or SVD method.

    Raises:
        ValueError: with the offending value and the allowed range.
        FileNotFoundError: the build folder is missing or unfinished.
    """
    root = Path(config.build)
    if not (root / "build.yaml").exists():
        raise FileNotFoundError(
            f"build folder {root} has no build.yaml; run 'provex moe build' first "
            "or set 'build' to a finished build's output_dir"
        )
    build = load_build_config(root / "build.yaml")
    experts = list(config.experts or build.domain_names)
    unknown = [e for e in experts if e not in build.domain_names]
    if unknown:
        raise ValueError(
            f"unknown expert(s) {unknown} in the sweep config; the build at {root} has "
            f"experts {build.domain_names}"
        )
    if len(set(experts)) != len(experts):
        raise ValueError(f"experts {experts} list a name twice")
    max_allowed = min(build.model.hidden_size, build.model.intermediate_size)
    top = config.max_rank or max_allowed
    ranks = sorted(config.ranks) if config.ranks else _powers_of_two(top)
    bad = [r for r in ranks if not isinstance(r, int) or r < 1 or r > max_allowed]
    if config.max_rank is not None and config.max_rank > max_allowed:
        bad.append(config.max_rank)
    if bad:
        raise ValueError(
            f"rank(s) {bad} are out of range: the expert matrices are "
            f"{build.model.intermediate_size}x{build.model.hidden_size}, so ranks "
            f"must be integers in 1..{max_allowed}"
        )
    nx_ranks = sorted(config.nx_ranks) if config.nx_ranks is not None else ranks
    bad = [r for r in nx_ranks if not isinstance(r, int) or r < 1 or r > max_allowed]
    if bad:
        raise ValueError(
            f"nx_ranks {bad} are out of range; ranks must be integers in "
            f"1..{max_allowed}"
        )
    if config.best_by not in ("score", "loss"):
        raise ValueError(f"invalid best_by {config.best_by!r}; use 'score' or 'loss'")
    if config.method not in ("exact", "randomized", "auto"):
        raise ValueError(
            f"invalid method {config.method!r}; use exact, randomized or auto"
        )
    num_experts = len(experts) + 1
    top_ks = []
    for value in config.top_k:
        k = num_experts if str(value).upper() == "N" else value
        if not isinstance(k, int) or not 1 <= k <= num_experts:
            raise ValueError(
                f"top_k value {value!r} is invalid for {num_experts} experts; use "
                f"integers in 1..{num_experts} or 'N'"
            )
        if k not in top_ks:
            top_ks.append(k)
    missing = [e for e in experts if not (root / "experts" / e / "DONE").exists()]
    if missing or not (root / "tasks" / "DONE").exists():
        raise FileNotFoundError(
            f"build at {root} is unfinished (experts missing: {missing}); rerun "
            "'provex moe build' to resume it"
        )
    _check_tasks(root, config)
    cells = _grid(experts, ranks, nx_ranks, config, top_ks)
    output = Path(config.output) if config.output else root / "sweep"
    return SweepPlan(config, build, root, output, experts, ranks, cells)


def _powers_of_two(top: int) -> list[int]:
    return [2**i for i in range(int(math.log2(top)) + 1)]


def _check_tasks(root: Path, config: SweepConfig) -> None:
    from provex.moe.evaluation import task_categories

    available = task_categories(root / "tasks")
    named = [*(config.tasks or []), *config.exclude_tasks]
    unknown = [t for t in named if t not in available]
    if unknown:
        raise ValueError(
            f"unknown task(s) {unknown} in the sweep config; the build wrote "
            f"{sorted(available)}"
        )


def selected_tasks(root: Path, config: SweepConfig) -> list[str]:
    """Return the task names a sweep evaluates: ``tasks`` (or all) minus excluded."""
    from provex.moe.evaluation import task_categories

    names = config.tasks or list(task_categories(root / "tasks"))
    return [n for n in names if n not in config.exclude_tasks]


def _grid(
    experts: list[str],
    ranks: list[int],
    nx_ranks: list[int],
    config: SweepConfig,
    top_ks: list[int],
) -> list[Cell]:
    cells = [Cell("public", "public", (), None, 1)]
    settings: list[int | str] = [*ranks, "full"] if config.include_full else list(ranks)
    for expert in experts:
        for rank in settings:
            label = f"r{rank}" if isinstance(rank, int) else str(rank)
            cells.append(Cell(f"2x-{expert}-{label}", "2x", (expert,), rank, 2))
    group = tuple(experts)
    nx_settings: list[int | str] = []
    if config.uniform:
        nx_settings.extend(nx_ranks)
    if config.include_full:
        nx_settings.append("full")
    if config.best:
        nx_settings.append("best")
    for rank in nx_settings:
        label = f"r{rank}" if isinstance(rank, int) else str(rank)
        for k in top_ks:
            cells.append(Cell(f"Nx-{label}-a{k}", "Nx", group, rank, k))
    return cells


# ----------------------------------------------------------------------------- results


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Read a results JSONL; a truncated last line (killed writer) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s line %d is incomplete and was skipped", path, number)
    return rows


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one result line under an exclusive lock and fsync it.

    The lock lets several processes (local workers or cluster array tasks on a shared
    file system that supports ``flock``) write to one file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row) + "\n"
    with path.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def best_ranks(
    rows: list[dict[str, Any]], experts: list[str], by: str = "score"
) -> dict[str, int | str]:
    """Pick each expert's best rank from finished 2-expert cells.

    ``by="score"`` maximises the unweighted mean task accuracy. Ties go to the smaller
    rank, and ``full`` counts as larger than every number. ``by="loss"`` minimises the
    held-out loss on the expert's own domain.

    Raises:
        ValueError: an expert has no finished 2-expert cell.
    """
    best: dict[str, int | str] = {}
    for expert in experts:
        candidates = [
            r for r in rows if r.get("kind") == "2x" and r["experts"] == [expert]
        ]
        if not candidates:
            raise ValueError(
                f"no finished 2-expert cell for expert {expert!r}; run the "
                f"2x-{expert}-* cells before the Nx-best cells"
            )

        def key(row: dict[str, Any], expert: str = expert) -> tuple[float, float]:
            order = math.inf if row["rank"] == "full" else float(row["rank"])
            if by == "loss":
                return (row["heldout"][expert]["loss"], order)
            return (-row["category_means"]["all"], order)

        best[expert] = min(candidates, key=key)["rank"]
    return best


# ----------------------------------------------------------------------------- cells


def _cell_model(plan: SweepPlan, cell: Cell, rows: list[dict[str, Any]], cache):
    """Build the cell's model; return (model for evaluation, ranks, parameter count)."""
    import torch
    from transformers import FlexOlmoForCausalLM, Olmo2ForCausalLM

    from provex.moe.modeling import compress_model
    from provex.moe.params import count_parameters

    dtype = getattr(torch, plan.config.dtype)
    if cell.kind == "public":
        model = Olmo2ForCausalLM.from_pretrained(plan.root / "public", dtype=dtype)
        total = sum(p.numel() for p in model.parameters())
        return model, {}, {"total": total, "active": total}
    if cell.kind == "2x":
        source = plan.root / "experts" / cell.experts[0]
        names = ["public", cell.experts[0]]
    else:
        source = plan.root / "merged"
        names = ["public", *plan.build.domain_names]
    model = FlexOlmoForCausalLM.from_pretrained(
        source, dtype=torch.float32, num_experts_per_tok=cell.top_k
    )
    model.config.expert_names = names
    if cell.rank == "best":
        ranks: dict[str, int | str] = best_ranks(
            rows, list(cell.experts), plan.config.best_by
        )
    else:
        ranks = dict.fromkeys(cell.experts, cell.rank)
    # Experts of the merged model outside this sweep's list are kept dense.
    spec = {name: ranks.get(name, "full") for name in names[1:]}
    rank_list = [0] + [0 if spec[n] == "full" else int(spec[n]) for n in names[1:]]
    counts = count_parameters(model.config, ranks=rank_list)
    if any(rank_list):
        model = compress_model(
            model, spec, dense=True, method=plan.config.method, cache=cache
        )
    return model.to(dtype), ranks, {"total": counts.total, "active": counts.active}


def run_cell(plan: SweepPlan, cell_id: str) -> dict[str, Any]:
    """Evaluate one cell and append its line to the results file.

    Returns:
        The result row (also written), or the existing row if the cell already finished.
    """
    import torch
    from transformers import AutoTokenizer

    from provex.moe.build import heldout_chunk_tensors, heldout_loss
    from provex.moe.evaluation import category_means, run_tasks
    from provex.moe.lowrank import DecompositionCache

    cells = {c.id: c for c in plan.cells}
    if cell_id not in cells:
        raise ValueError(f"unknown cell {cell_id!r}; list the cells with --list-cells")
    rows = read_results(plan.results_path)
    for row in rows:
        if row["cell"] == cell_id:
            return row
    cell = cells[cell_id]
    torch.set_num_threads(plan.config.threads_per_job)
    start = time.time()
    cache = DecompositionCache(plan.output / "svd-cache")
    model, ranks, params = _cell_model(plan, cell, rows, cache)
    model.to(plan.config.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(plan.root / "tokenizer")

    build = plan.build
    if plan.config.eval_chunks:
        build.eval_chunks = plan.config.eval_chunks
    heldout = {
        name: asdict(heldout_loss(model, chunks, plan.config.batch_size))
        for name, chunks in heldout_chunk_tensors(plan.root, build).items()
    }
    tasks = run_tasks(
        model,
        tokenizer,
        plan.root / "tasks",
        selected_tasks(plan.root, plan.config),
        plan.config.task_limit,
        plan.config.batch_size,
        max_length=plan.build.model.seq_len,
    )
    row = {
        "cell": cell.id,
        "kind": cell.kind,
        "experts": list(cell.experts),
        "rank": cell.rank,
        "ranks": ranks,
        "top_k": cell.top_k,
        "params": params,
        "heldout": heldout,
        "tasks": tasks,
        "category_means": category_means(tasks),
        "seconds": round(time.time() - start, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    append_result(plan.results_path, row)
    return row


def _worker(config: dict[str, Any], cell_id: str) -> str:
    plan = plan_sweep(SweepConfig(**config))
    run_cell(plan, cell_id)
    return cell_id


def run_sweep(
    plan: SweepPlan, jobs: int = 1, only: list[str] | None = None
) -> list[str]:
    """Run every unfinished cell, ``jobs`` at a time in worker processes.

    Cells whose id is already in the results file are skipped. The cells run in three
    phases: public and 2-expert cells, then ``Nx-full-*`` and ``Nx-best-*`` (best ranks
    come from the finished 2-expert cells), then the uniform-rank N-expert cells.

    Args:
        plan: the validated sweep.
        jobs: worker processes (1 runs cells in this process).
        only: restrict to these cell ids.

    Returns:
        Ids of the cells run by this call.

    Raises:
        ValueError: ``jobs`` is below 1, or ``only`` names a cell the plan lacks.
    """
    import multiprocessing

    from tqdm.auto import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    known = {c.id for c in plan.cells}
    unknown = sorted(set(only or []) - known)
    if unknown:
        raise ValueError(
            f"unknown cell id(s) {unknown}; list the valid ids with "
            "'provex moe sweep --list-cells'"
        )
    plan.output.mkdir(parents=True, exist_ok=True)
    (plan.output / "sweep.yaml").write_text(
        yaml.safe_dump(asdict(plan.config), sort_keys=False)
    )
    done = {row["cell"] for row in read_results(plan.results_path)}
    todo = [
        c for c in plan.cells if c.id not in done and (only is None or c.id in only)
    ]
    # The 2-expert cells come first because best ranks need them. The full and best
    # N-expert cells come next because they are the main comparison.
    phases = [
        [c for c in todo if c.kind != "Nx"],
        [c for c in todo if c.kind == "Nx" and c.rank in ("full", "best")],
        [c for c in todo if c.kind == "Nx" and c.rank not in ("full", "best")],
    ]
    ran: list[str] = []
    bar = tqdm(total=len(todo), desc="cells", unit="cell")
    logger.info("%d cells finished before, %d to run", len(done), len(todo))
    for phase in phases:
        if not phase:
            continue
        if jobs <= 1:
            for cell in phase:
                run_cell(plan, cell.id)
                ran.append(cell.id)
                bar.update()
            continue
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(_worker, asdict(plan.config), c.id) for c in phase]
            for future in as_completed(futures):
                ran.append(future.result())
                bar.update()
    bar.close()
    return ran
