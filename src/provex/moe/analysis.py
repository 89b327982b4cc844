"""Analysis of a rank sweep: loss and score against rank, regressions, Pareto frontier.

Input is the sweep's ``results.jsonl`` (one line per cell). Outputs, in one folder:

- ``report.md``: every table below in Markdown.
- ``loss_vs_rank.png``: held-out loss of each domain with its own expert, by rank.
- ``score_vs_rank.png``: mean task accuracy per category by rank (2-expert cells).
- ``params_vs_score.png``: parameters against mean accuracy, Pareto frontier marked.
- ``regression.json``: the fitted coefficients, intervals and best ranks.

The regression is ordinary least squares of accuracy on ``x = log2(rank)`` and ``x^2``
over the 2-expert cells with a numeric rank (``full`` is left out because it has no
position on the rank axis). Per task it runs with expert fixed effects, and per category
with task and expert fixed effects. The fitted best rank is ``2^x`` at the maximum of
the fitted curve on the swept range. The grid best rank is the swept rank with the
highest observed mean, as FlexMoRE's own analysis picks it.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provex.moe.sweep import read_results

logger = logging.getLogger(__name__)


@dataclass
class Fit:
    """One quadratic fit of accuracy on log2(rank)."""

    target: str  # task or category name
    n: int  # observations
    slope: float  # coefficient of log2(rank)
    slope_ci: tuple[float, float]  # 95% confidence interval
    quadratic: float  # coefficient of log2(rank)^2
    quadratic_ci: tuple[float, float]
    r_squared: float
    best_rank: float  # 2^x at the fitted maximum within the swept range
    grid_best_rank: int  # swept rank with the highest observed mean


def _frame(rows: list[dict[str, Any]]):
    """Long table of 2-expert task scores: expert, rank, x, task, category, acc."""
    import pandas as pd

    records = []
    for row in rows:
        if row.get("kind") != "2x" or not isinstance(row.get("rank"), int):
            continue
        for task, result in row["tasks"].items():
            records.append(
                {
                    "expert": row["experts"][0],
                    "rank": row["rank"],
                    "x": math.log2(row["rank"]),
                    "task": task,
                    "category": result["category"],
                    "acc": result["acc"],
                }
            )
    return pd.DataFrame.from_records(records)


def _fit(data, target: str, formula: str) -> Fit | None:
    import numpy as np
    import statsmodels.formula.api as smf

    if data["x"].nunique() < 3 or len(data) < 4:
        return None
    with warnings.catch_warnings():
        # Constant accuracy (all cells tied) makes R^2 0/0; it is reported as nan.
        warnings.simplefilter("ignore", RuntimeWarning)
        model = smf.ols(formula, data=data).fit()
        ci = model.conf_int(alpha=0.05)
        r_squared = float(model.rsquared)
    slope, quad = float(model.params["x"]), float(model.params["I(x ** 2)"])
    grid = np.linspace(data["x"].min(), data["x"].max(), 201)
    best_x = float(grid[np.argmax(slope * grid + quad * grid**2)])
    means = data.groupby("rank")["acc"].mean()
    return Fit(
        target=target,
        n=len(data),
        slope=slope,
        slope_ci=(float(ci.loc["x", 0]), float(ci.loc["x", 1])),
        quadratic=quad,
        quadratic_ci=(float(ci.loc["I(x ** 2)", 0]), float(ci.loc["I(x ** 2)", 1])),
        r_squared=r_squared,
        best_rank=2**best_x,
        grid_best_rank=int(means.idxmax()),
    )


def regressions(rows: list[dict[str, Any]]) -> dict[str, list[Fit]]:
    """Fit accuracy ~ log2(rank) + log2(rank)^2 per task and per category.

    Returns:
        ``{"task": [...], "category": [...], "expert_category": [...]}``; the last
        contains one fit per (expert, category) without fixed effects.
    """
    data = _frame(rows)
    result: dict[str, list[Fit]] = {"task": [], "category": [], "expert_category": []}
    if data.empty:
        return result
    many_experts = data["expert"].nunique() > 1
    for task, part in data.groupby("task"):
        formula = "acc ~ x + I(x**2)" + (" + C(expert)" if many_experts else "")
        fit = _fit(part, str(task), formula)
        if fit:
            result["task"].append(fit)
    for category, part in data.groupby("category"):
        terms = " + C(task)" if part["task"].nunique() > 1 else ""
        terms += " + C(expert)" if many_experts else ""
        fit = _fit(part, str(category), "acc ~ x + I(x**2)" + terms)
        if fit:
            result["category"].append(fit)
    for (expert, category), part in data.groupby(["expert", "category"]):
        terms = " + C(task)" if part["task"].nunique() > 1 else ""
        fit = _fit(part, f"{expert}/{category}", "acc ~ x + I(x**2)" + terms)
        if fit:
            result["expert_category"].append(fit)
    return result


def loss_by_rank(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Own-domain held-out loss of each 2-expert model.

    Returns ``{expert: {rank label: loss}}``.

    The ``public`` label contains the public model's loss on that domain.
    """
    public = next((r for r in rows if r.get("kind") == "public"), None)
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.get("kind") != "2x":
            continue
        expert = row["experts"][0]
        label = f"r{row['rank']}" if isinstance(row["rank"], int) else str(row["rank"])
        table.setdefault(expert, {})[label] = row["heldout"][expert]["loss"]
    if public:
        for expert in table:
            table[expert]["public"] = public["heldout"][expert]["loss"]
    return table


def gain_ranks(
    losses: dict[str, dict[str, float]], fraction: float = 0.9
) -> dict[str, int | str | None]:
    """Smallest swept rank that keeps ``fraction`` of the full expert's loss gain.

    The gain is the public model's own-domain loss minus the full expert's. None means
    the gain is not positive (the expert does not help its domain).

    Example:
        >>> gain_ranks({"m": {"public": 2.0, "r1": 1.5, "r2": 1.05, "full": 1.0}})
        {'m': 2}
    """
    out: dict[str, int | str | None] = {}
    for expert, row in losses.items():
        if "public" not in row or "full" not in row or row["public"] <= row["full"]:
            out[expert] = None
            continue
        target = row["public"] - fraction * (row["public"] - row["full"])
        ranks = sorted(int(k[1:]) for k in row if k.startswith("r"))
        out[expert] = next((r for r in ranks if row[f"r{r}"] <= target), "full")
    return out


def best_rank_per_expert(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Grid best ranks of each expert: by mean accuracy, per category, and by loss."""
    out: dict[str, dict[str, Any]] = {}
    experts = sorted({r["experts"][0] for r in rows if r.get("kind") == "2x"})
    for expert in experts:
        cells = [r for r in rows if r.get("kind") == "2x" and r["experts"] == [expert]]

        def order(row: dict[str, Any]) -> float:
            return math.inf if row["rank"] == "full" else float(row["rank"])

        entry: dict[str, Any] = {}
        entry["score"] = min(
            cells, key=lambda r: (-r["category_means"]["all"], order(r))
        )["rank"]
        categories = sorted(
            {k for r in cells for k in r["category_means"] if k != "all"}
        )
        for category in categories:
            scored = [r for r in cells if category in r["category_means"]]
            entry[category] = min(
                scored, key=lambda r, c=category: (-r["category_means"][c], order(r))
            )["rank"]
        entry["loss"] = min(
            cells, key=lambda r: (r["heldout"][expert]["loss"], order(r))
        )["rank"]
        out[expert] = entry
    return out


def pareto_frontier(
    points: list[tuple[int, float, str]],
) -> list[tuple[int, float, str]]:
    """Return the points no other point beats on both fewer parameters and higher score.

    Args:
        points: ``(parameters, score, label)``.

    Returns:
        The frontier, sorted by parameters.

    Example:
        >>> pareto_frontier([(1, 0.5, "a"), (2, 0.4, "b"), (3, 0.6, "c")])
        [(1, 0.5, 'a'), (3, 0.6, 'c')]
    """
    frontier = []
    best = -math.inf
    for params, score, label in sorted(points, key=lambda p: (p[0], -p[1])):
        if score > best:
            frontier.append((params, score, label))
            best = score
    return frontier


def _mean_loss(row: dict[str, Any]) -> float:
    values = [v["loss"] for v in row["heldout"].values()]
    return sum(values) / len(values)


def mixture_comparison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compare each ``Nx-best-a<k>`` cell with ``Nx-full-a<k>``.

    Compares accuracy, mean held-out loss and parameters.
    """
    by_id = {r["cell"]: r for r in rows}
    table = []
    for row in rows:
        if row.get("kind") != "Nx" or row["rank"] != "best":
            continue
        full = by_id.get(row["cell"].replace("-best-", "-full-"))
        if full is None:
            continue
        table.append(
            {
                "top_k": row["top_k"],
                "ranks": row["ranks"],
                "best_score": row["category_means"]["all"],
                "full_score": full["category_means"]["all"],
                "best_loss": _mean_loss(row),
                "full_loss": _mean_loss(full),
                "best_params": row["params"]["total"],
                "full_params": full["params"]["total"],
                "best_categories": row["category_means"],
                "full_categories": full["category_means"],
            }
        )
    return table


# ----------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _md_table(header: list[str], body: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def _rank_labels(table: dict[str, dict[str, float]]) -> list[str]:
    labels = {label for row in table.values() for label in row}
    numeric = sorted(int(x[1:]) for x in labels if x.startswith("r"))
    return (
        (["public"] if "public" in labels else [])
        + [f"r{r}" for r in numeric]
        + (["full"] if "full" in labels else [])
    )


def _fit_rows(fits: list[Fit]) -> list[list[Any]]:
    return [
        [
            f.target,
            f.n,
            f"{f.slope:+.4f} [{f.slope_ci[0]:+.4f}, {f.slope_ci[1]:+.4f}]",
            f"{f.quadratic:+.4f} [{f.quadratic_ci[0]:+.4f}, {f.quadratic_ci[1]:+.4f}]",
            f.r_squared,
            f"{f.best_rank:.1f}",
            f.grid_best_rank,
        ]
        for f in fits
    ]


def _plots(rows: list[dict[str, Any]], out: Path, losses, frontier, points) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for expert, row in sorted(losses.items()):
        ranks = sorted(int(k[1:]) for k in row if k.startswith("r"))
        line = ax.plot(ranks, [row[f"r{r}"] for r in ranks], marker="o", label=expert)[
            0
        ]
        if "full" in row:
            ax.axhline(row["full"], color=line.get_color(), linestyle=":", linewidth=1)
        if "public" in row:
            ax.axhline(
                row["public"], color=line.get_color(), linestyle="--", linewidth=1
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank of the domain expert")
    ax.set_ylabel("held-out loss on its domain (nats/token)")
    ax.set_title("dotted: full expert, dashed: public model")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_vs_rank.png", dpi=120)
    plt.close(fig)

    data = _frame(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    if not data.empty:
        for category, part in data.groupby("category"):
            means = part.groupby("rank")["acc"].mean()
            ax.plot(means.index, means.values, marker="o", label=str(category))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank of the domain expert (2-expert models)")
    ax.set_ylabel("mean accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "score_vs_rank.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    kinds = {"public": "k", "2x": "tab:blue", "Nx": "tab:orange"}
    names = {"public": "public model", "2x": "2-expert", "Nx": "N-expert"}
    for kind, color in kinds.items():
        chosen = [p for p in points if p[2].split("-")[0] == kind]
        if chosen:
            xs, ys = [p[0] for p in chosen], [p[1] for p in chosen]
            ax.scatter(xs, ys, s=12, color=color, label=names[kind])
    ax.plot(
        [p[0] for p in frontier],
        [p[1] for p in frontier],
        "r-",
        label="Pareto frontier",
    )
    ax.set_xscale("log")
    ax.set_xlabel("total parameters")
    ax.set_ylabel("mean accuracy over tasks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "params_vs_score.png", dpi=120)
    plt.close(fig)


def analyze(results: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the Markdown report, plots and regression JSON for a sweep's results.

    Args:
        results: ``results.jsonl`` of a sweep (or its folder).
        out_dir: folder for ``report.md``, the PNG plots and ``regression.json``.

    Returns:
        The data behind the report (regressions, best ranks, frontier, comparison).
    """
    results = Path(results)
    if results.is_dir():
        results = results / "results.jsonl"
    if not results.exists():
        raise FileNotFoundError(
            f"{results} not found; give a sweep's results.jsonl or its folder"
        )
    rows = read_results(results)
    if not rows:
        raise ValueError(
            f"{results} contains no result lines; run 'provex moe sweep' first"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    fits = regressions(rows)
    losses = loss_by_rank(rows)
    best = best_rank_per_expert(rows)
    gains = {f: gain_ranks(losses, f) for f in (0.5, 0.9, 0.99)}
    points = [
        (r["params"]["total"], r["category_means"]["all"], r["cell"]) for r in rows
    ]
    frontier = pareto_frontier(points)
    comparison = mixture_comparison(rows)
    _plots(rows, out, losses, frontier, points)

    sections = [f"# Rank sweep analysis\n\n{len(rows)} cells from `{results}`.\n"]
    labels = _rank_labels(losses)
    sections.append(
        "## Held-out loss on each domain with its own expert\n\n"
        + _md_table(
            ["expert", *labels],
            [
                [e, *[row.get(x, "") for x in labels]]
                for e, row in sorted(losses.items())
            ],
        )
    )
    sections.append(
        "## Smallest rank keeping a share of the full expert's loss gain\n\n"
        + _md_table(
            ["expert", *[f"{int(f * 100)}% of the gain" for f in gains]],
            [[e, *[gains[f][e] for f in gains]] for e in sorted(losses)],
        )
    )
    categories = sorted({k for v in best.values() for k in v} - {"score", "loss"})
    sections.append(
        "## Best rank per expert (grid)\n\n"
        + _md_table(
            ["expert", "mean accuracy", *categories, "own-domain loss"],
            [
                [e, v["score"], *[v.get(c, "") for c in categories], v["loss"]]
                for e, v in sorted(best.items())
            ],
        )
    )
    header = [
        "target",
        "n",
        "log2 rank (95% CI)",
        "log2 rank^2 (95% CI)",
        "R^2",
        "fitted best rank",
        "grid best rank",
    ]
    sections.append(
        "## Regression per category\n\n"
        + _md_table(header, _fit_rows(fits["category"]))
    )
    sections.append(
        "## Regression per task\n\n" + _md_table(header, _fit_rows(fits["task"]))
    )
    sections.append(
        "## Regression per expert and category\n\n"
        + _md_table(header, _fit_rows(fits["expert_category"]))
    )
    sections.append(
        "## Pareto frontier (parameters against mean accuracy)\n\n"
        + _md_table(
            ["cell", "parameters", "mean accuracy"],
            [[lab, p, s] for p, s, lab in frontier],
        )
    )
    if comparison:
        sections.append(
            "## Best-rank mixture against the full mixture\n\n"
            + _md_table(
                [
                    "top-k",
                    "ranks",
                    "accuracy best",
                    "accuracy full",
                    "loss best",
                    "loss full",
                    "params best",
                    "params full",
                    "params ratio",
                ],
                [
                    [
                        c["top_k"],
                        ", ".join(f"{k}={v}" for k, v in c["ranks"].items()),
                        c["best_score"],
                        c["full_score"],
                        c["best_loss"],
                        c["full_loss"],
                        c["best_params"],
                        c["full_params"],
                        f"{c['best_params'] / c['full_params']:.3f}",
                    ]
                    for c in comparison
                ],
            )
        )
    cells = sorted(rows, key=lambda r: r["cell"])
    sections.append(
        "## All cells\n\n"
        + _md_table(
            [
                "cell",
                "params",
                "mean loss",
                "accuracy",
                *[c for c in ("reasoning", "knowledge")],
            ],
            [
                [
                    r["cell"],
                    r["params"]["total"],
                    _mean_loss(r),
                    r["category_means"]["all"],
                    r["category_means"].get("reasoning", ""),
                    r["category_means"].get("knowledge", ""),
                ]
                for r in cells
            ],
        )
    )
    (out / "report.md").write_text("\n\n".join(sections) + "\n")
    data = {
        "regressions": {k: [f.__dict__ for f in v] for k, v in fits.items()},
        "loss_by_rank": losses,
        "best_rank_per_expert": best,
        "gain_ranks": {str(f): v for f, v in gains.items()},
        "pareto_frontier": frontier,
        "mixture_comparison": comparison,
    }
    (out / "regression.json").write_text(json.dumps(data, indent=2))
    return data
