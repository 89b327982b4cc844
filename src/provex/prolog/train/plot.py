"""Reward curves of a training run, from its metrics JSONL, to a PNG file."""

from __future__ import annotations

import logging
from pathlib import Path

from provex.prolog.train.callbacks import read_metrics

logger = logging.getLogger(__name__)


def _moving_average(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return values
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def plot_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    smooth: int = 1,
    metrics_file: str = "metrics.jsonl",
) -> Path:
    """Plot each reward's mean per step, the Prolog rates, and KL or loss.

    Args:
        run_dir: the run's output directory.
        out: PNG path; ``run_dir/rewards.png`` by default.
        smooth: moving-average window in steps.
        metrics_file: metrics file name inside ``run_dir``.

    Returns:
        The PNG path.

    Raises:
        FileNotFoundError: when the run has no metrics file.
        ValueError: when the file holds no training steps.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / metrics_file
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found; pass the output_dir of a provex training run"
        )
    rows = [r for r in read_metrics(path) if r.get("event") != "summary"]
    if not rows:
        raise ValueError(f"{path} holds no training steps yet")
    steps = [r["step"] for r in rows]
    reward_keys = sorted(
        {k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")}
    )
    rate_keys = [
        k
        for k in ("prolog/correct_rate", "prolog/structure_rate", "prolog/numeric_rate")
        if any(k in r for r in rows)
    ]
    extra_keys = [k for k in ("kl", "loss") if any(k in r for r in rows)]
    panels = [("rewards (mean per step)", [*reward_keys, "reward"])]
    panels.append(("Prolog checks (fraction of completions)", rate_keys))
    panels.append(("KL and loss", extra_keys))
    panels = [
        (title, [k for k in keys if any(k in r for r in rows)])
        for title, keys in panels
    ]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3 * len(panels)), sharex=True)
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            label = key.removeprefix("rewards/").removesuffix("/mean")
            ax.plot(xs, _moving_average(list(ys), smooth), label=label)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("step")
    fig.suptitle(f"{run_dir.name}: steps {min(steps)}-{max(steps)}")
    fig.tight_layout()
    out_path = Path(out) if out else run_dir / "rewards.png"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    logger.info("wrote %s", out_path)
    return out_path
