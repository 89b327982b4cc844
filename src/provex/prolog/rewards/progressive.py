"""The progressive combined reward: five normalised terms on a sigmoid curriculum."""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from provex.prolog.answers import Verdict
from provex.prolog.rewards.config import CURRICULUM_TERMS, RewardConfig
from provex.prolog.rewards.execution import (
    check_completions,
    correctness_score,
    golds_for,
    structure_score,
)
from provex.prolog.rewards.format import (
    soft_format_score,
    strict_format_score,
    syntax_score,
    texts_of,
    xml_count_score,
)
from provex.prolog.rewards.semantic import EmbedFunc, minilm_embed, semantic_scores

if TYPE_CHECKING:
    from provex.prolog.engine import PrologPool

logger = logging.getLogger(__name__)


def curriculum_position(progress: float, config: RewardConfig | None = None) -> float:
    """Return ``s = 1 / (1 + exp(-k * (progress - midpoint)))``, k = 12 by default.

    Example:
        >>> round(curriculum_position(0.0), 4), curriculum_position(0.5)
        (0.0025, 0.5)
    """
    config = config or RewardConfig()
    exponent = -config.curriculum_steepness * (progress - config.curriculum_midpoint)
    return 1.0 / (1.0 + math.exp(exponent))


def curriculum_weights(
    progress: float, config: RewardConfig | None = None
) -> dict[str, float]:
    """Return each term's weight ``early + (late - early) * s`` at ``progress``."""
    config = config or RewardConfig()
    position = curriculum_position(progress, config)
    return {
        term: config.early_weights[term]
        + (config.late_weights[term] - config.early_weights[term]) * position
        for term in CURRICULUM_TERMS
    }


def trainer_progress(trainer_state: Any) -> float | None:
    """Return ``global_step / max_steps`` from a transformers ``TrainerState``."""
    if trainer_state is None:
        return None
    max_steps = getattr(trainer_state, "max_steps", 0) or 0
    if max_steps <= 0:
        return None
    return min(1.0, getattr(trainer_state, "global_step", 0) / max_steps)


class ProgressiveReward:
    """``progressive_reward_func``: one combined reward in [0, 2].

    Terms per completion, each normalised to [0, 1]:

    - semantic: ``min(sem, 2) / 2`` with ``sem = 0.5 * max(0.5, 2 * cos) +
      0.5 * 2 * overlap`` against the ``answer`` column (0 without code);
    - format: ``clip(0.67 * (xml + soft + strict), 0, 1)``, with the XML count
      clamped at 0;
    - syntax: ``min(syntax, 1)``;
    - correctness: ``min(correctness, 2) / 2`` (2.0 / 1.0 / 0.5 as in
      ``correctness_reward_func``, so at least 0.25);
    - structure: ``min(structure, 2) / 2``.

    The reward is ``2 * sum(weight * term)``. The weights move from early to late
    values along ``s = 1 / (1 + exp(-12 * (p - 0.5)))``: semantic 0.35 to 0.10,
    format 0.25 to 0.10, syntax 0.10, correctness 0.15 to 0.45, structure 0.15 to
    0.25. The progress p is ``global_step / max_steps`` from TRL's
    ``trainer_state`` keyword when present. Otherwise it is the number of prompts
    scored in earlier calls over ``total_prompts``, so the first call has p = 0.
    A call counts its prompts as the runs of equal consecutive entries of the
    ``prompts`` keyword (TRL repeats each prompt once per completion), or as
    ``ceil(len(completions) / num_generations)`` without it.

    NOTE: the count is per process. Under data parallelism each process scores
    only its share of the prompts, so without ``trainer_state`` set
    ``total_prompts`` to the share of one process.
    """

    def __init__(
        self,
        config: RewardConfig | None = None,
        *,
        pool: PrologPool | None = None,
        embed: EmbedFunc | None = None,
    ) -> None:
        self.config = config or RewardConfig()
        self.pool = pool
        self.embed = embed or minilm_embed
        self.calls = 0
        self.prompts_seen = 0
        self.last_metrics: dict[str, float] = {}
        self._lock = threading.Lock()
        self.__name__ = "progressive_reward_func"

    def progress(self, trainer_state: Any = None) -> float:
        """Return the training progress in [0, 1] used for the next call."""
        from_state = trainer_progress(trainer_state)
        if from_state is not None:
            return from_state
        return min(1.0, self.prompts_seen / self.config.total_prompts)

    def count_prompts(self, completions: Sequence[Any], prompts: Any = None) -> int:
        """Return how many prompts one call scores (see the class docstring)."""
        if prompts is not None and len(prompts) == len(completions) and prompts:
            runs = 1
            for previous, current in itertools.pairwise(prompts):
                runs += previous != current
            return runs
        return max(1, math.ceil(len(completions) / self.config.num_generations))

    def terms(
        self, text: str, verdict: Verdict, gold: Any, semantic: float
    ) -> dict[str, float]:
        """Return the five normalised terms of one completion, each in [0, 1]."""
        config = self.config
        fmt = (
            xml_count_score(text, config, clamp=True)
            + soft_format_score(text, config)
            + strict_format_score(text, config)
        )
        structure = structure_score(
            verdict.code, verdict.predicates, verdict.constraints, config
        )
        return {
            "semantic": min(semantic, 2.0) / 2.0,
            "format": min(max(config.format_scale * fmt, 0.0), 1.0),
            "syntax": min(syntax_score(text, config), 1.0),
            "correctness": min(correctness_score(verdict, gold, config), 2.0) / 2.0,
            "structure": min(structure, 2.0) / 2.0,
        }

    def __call__(
        self,
        completions: Sequence[Any],
        answer: Any = None,
        numerical_result: Any = None,
        trainer_state: Any = None,
        log_metric: Any = None,
        prompts: Any = None,
        **kwargs: Any,
    ) -> list[float]:
        config = self.config
        with self._lock:
            progress = self.progress(trainer_state)
            self.calls += 1
            self.prompts_seen += self.count_prompts(completions, prompts)
        weights = curriculum_weights(progress, config)
        texts = texts_of(completions)
        golds = golds_for(numerical_result, len(texts))
        verdicts = check_completions(
            completions, golds, config, self.pool, analyze=True
        )
        semantic = semantic_scores(
            completions, answer, self.embed, config, with_overlap=True
        )
        rewards = []
        sums = dict.fromkeys(CURRICULUM_TERMS, 0.0)
        for text, verdict, gold, sem in zip(
            texts, verdicts, golds, semantic, strict=True
        ):
            terms = self.terms(text, verdict, gold, sem)
            for term, value in terms.items():
                sums[term] += value
            total = sum(weights[term] * terms[term] for term in CURRICULUM_TERMS)
            rewards.append(config.final_scale * total)

        count = max(1, len(texts))
        metrics = {f"progressive/{term}": sums[term] / count for term in sums}
        metrics["progressive/progress"] = progress
        metrics.update({f"progressive/weight_{t}": w for t, w in weights.items()})
        self.last_metrics = metrics
        if callable(log_metric):
            for name, value in metrics.items():
                log_metric(name, value)
        logger.debug("progressive reward metrics: %s", metrics)
        return rewards


def make_progressive_reward(
    config: RewardConfig | None = None,
    *,
    pool: PrologPool | None = None,
    embed: EmbedFunc | None = None,
) -> ProgressiveReward:
    """Build ``progressive_reward_func`` (see ``ProgressiveReward`` for its values)."""
    return ProgressiveReward(config, pool=pool, embed=embed)
