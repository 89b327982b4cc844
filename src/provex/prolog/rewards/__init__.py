"""TRL-compatible reward functions for Prolog answers, and the three presets.

Every reward is a callable ``(completions, **kwargs) -> list[float]`` with
``__name__`` set (TRL logs rewards by that name). Completions may be strings or
conversational (``[{"role": "assistant", "content": ...}]``). Dataset columns
arrive as keyword arguments: ``numerical_result`` (gold answers as strings) and
``answer`` (reference programs). Programs run through the Prolog pool in one
concurrent batch per call (``shared_pool()`` unless a pool is given).

API summary:

- ``RewardConfig``: every score and switch; ``RewardConfig.fixed()`` turns off
  the reference quirks.
- Factories: ``make_correctness_reward``, ``make_syntax_reward``,
  ``make_strict_format_reward``, ``make_soft_format_reward``,
  ``make_xmlcount_reward``, ``make_semantic_reward``, ``make_structure_reward``,
  ``make_progressive_reward``.
- ``get_preset(name, config=None, pool=None, embed=None)``: ``suite1`` (xmlcount,
  soft format, strict format, syntax, correctness; maximum 4.5), ``suite2`` (suite1
  plus semantic similarity), ``suite3`` (the progressive reward alone).
- ``curriculum_position(p)`` and ``curriculum_weights(p)``: the sigmoid schedule.

Example:
    >>> rewards = get_preset("suite1")
    >>> [f.__name__ for f in rewards][-1]
    'correctness_reward_func'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provex.prolog.rewards.config import CURRICULUM_TERMS, RewardConfig
from provex.prolog.rewards.execution import (
    correctness_score,
    make_correctness_reward,
    make_structure_reward,
    structure_score,
)
from provex.prolog.rewards.format import (
    RewardFunc,
    make_soft_format_reward,
    make_strict_format_reward,
    make_syntax_reward,
    make_xmlcount_reward,
    soft_format_score,
    strict_format_score,
    syntax_score,
    xml_count_score,
)
from provex.prolog.rewards.progressive import (
    ProgressiveReward,
    curriculum_position,
    curriculum_weights,
    make_progressive_reward,
)
from provex.prolog.rewards.semantic import (
    EmbedFunc,
    cosine_similarities,
    functor_names,
    make_semantic_reward,
    minilm_embed,
    predicate_overlap,
)

if TYPE_CHECKING:
    from provex.prolog.engine import PrologPool

PRESETS: tuple[str, ...] = ("suite1", "suite2", "suite3")


def get_preset(
    name: str,
    *,
    config: RewardConfig | None = None,
    pool: PrologPool | None = None,
    embed: EmbedFunc | None = None,
) -> list[RewardFunc]:
    """Return the reward functions of a preset, in the reference order.

    Args:
        name: ``suite1``, ``suite2`` or ``suite3`` (``rwd1``..``rwd3`` also work).
        config: scores and switches; ``RewardConfig()`` by default.
        pool: the Prolog pool; ``shared_pool()`` by default.
        embed: embedding function for the semantic terms; MiniLM by default.

    Raises:
        ValueError: for an unknown preset name.
    """
    key = name.strip().lower().replace("rwd", "suite")
    config = config or RewardConfig()
    if key not in PRESETS:
        raise ValueError(f"unknown reward preset {name!r}; use one of {PRESETS}")
    if key == "suite3":
        return [make_progressive_reward(config, pool=pool, embed=embed)]
    rewards = [
        make_xmlcount_reward(config),
        make_soft_format_reward(config),
        make_strict_format_reward(config),
        make_syntax_reward(config),
        make_correctness_reward(config, pool=pool),
    ]
    if key == "suite2":
        rewards.append(make_semantic_reward(config, embed=embed))
    return rewards


__all__ = [
    "CURRICULUM_TERMS",
    "PRESETS",
    "EmbedFunc",
    "ProgressiveReward",
    "RewardConfig",
    "RewardFunc",
    "correctness_score",
    "cosine_similarities",
    "curriculum_position",
    "curriculum_weights",
    "functor_names",
    "get_preset",
    "make_correctness_reward",
    "make_progressive_reward",
    "make_semantic_reward",
    "make_soft_format_reward",
    "make_strict_format_reward",
    "make_structure_reward",
    "make_syntax_reward",
    "make_xmlcount_reward",
    "minilm_embed",
    "predicate_overlap",
    "soft_format_score",
    "strict_format_score",
    "structure_score",
    "syntax_score",
    "xml_count_score",
]
