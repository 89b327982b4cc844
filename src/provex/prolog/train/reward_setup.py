"""Pick the reward functions and weights for a GRPO run, and add progress metrics.

Rewards come from ``provex.prolog.rewards``: a preset (``suite1``, ``suite2``,
``suite3``) or an explicit list of names (``xmlcount``, ``soft_format``,
``strict_format``, ``syntax``, ``correctness``, ``semantic``, ``structure``,
``progressive``, or ``module:function`` paths). Every function has TRL's signature
``f(completions, **kwargs) -> list[float]``.

``StatsProbe`` wraps the first reward function. Once per reward call it checks the
batch of completions with the Prolog engine and logs, through TRL's ``log_metric``,
the fraction of correct answers, of numeric answers and of structurally valid
programs, plus the fraction of each error class. These show up in TRL's logs (and
so in the metrics JSONL and any tracker) as ``prolog/correct_rate`` and so on.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float]]


def resolve_rewards(
    preset: str | None, names: Sequence[str] | None
) -> tuple[list[RewardFunc], list[float] | None]:
    """Return the reward functions and the preset's weights (``None``: all 1.0).

    Args:
        preset: a preset name for ``provex.prolog.rewards.get_preset``.
        names: explicit functions; when given, ``preset`` is ignored.

    Raises:
        ValueError: for unknown names, listing what is available.
    """
    rewards = importlib.import_module("provex.prolog.rewards")
    if names:
        return [_resolve_one(rewards, name) for name in names], None
    if not preset:
        raise ValueError("no rewards: set reward_preset (suite1) or reward_funcs")
    try:
        got = rewards.get_preset(preset)
    except (KeyError, ValueError) as err:
        raise ValueError(f"unknown reward preset {preset!r}: {err}") from err
    return _split_preset(got)


def _split_preset(got: Any) -> tuple[list[RewardFunc], list[float] | None]:
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], list):
        funcs, weights = got
        return list(funcs), (list(map(float, weights)) if weights else None)
    for attr_funcs, attr_weights in (("funcs", "weights"), ("functions", "weights")):
        if hasattr(got, attr_funcs):
            weights = getattr(got, attr_weights, None)
            return list(getattr(got, attr_funcs)), (
                list(map(float, weights)) if weights else None
            )
    return list(got), None


SHORT_NAMES = (
    "xmlcount",
    "soft_format",
    "strict_format",
    "syntax",
    "correctness",
    "semantic",
    "structure",
    "progressive",
)


def _resolve_one(module: Any, name: str) -> RewardFunc:
    """Build one reward from a short name (``correctness``), a TRL log name
    (``correctness_reward_func``) or a ``module:function`` path."""
    if ":" in name:
        mod_name, func_name = name.split(":", 1)
        func = getattr(importlib.import_module(mod_name), func_name, None)
        if callable(func):
            return func
    else:
        key = name.strip().lower().removesuffix("_reward_func").removesuffix("_reward")
        key = {"xml_count": "xmlcount", "prolog_syntax": "syntax"}.get(key, key)
        factory = getattr(module, f"make_{key}_reward", None)
        if key in SHORT_NAMES and callable(factory):
            return factory()
    raise ValueError(
        f"unknown reward function {name!r}; use one of {', '.join(SHORT_NAMES)} "
        "or a module:function path"
    )


def reward_name(func: RewardFunc) -> str:
    """The name TRL logs a reward function under."""
    return getattr(func, "__name__", None) or type(func).__name__


def batch_stats(completions: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
    """Check completions against gold numbers; return rates for logging.

    Keys: ``prolog/correct_rate``, ``prolog/numeric_rate``,
    ``prolog/structure_rate`` and ``prolog/error/<class>`` for each error class seen.
    """
    from provex.prolog.answers import check

    verdicts = check(list(completions), list(golds))
    n = max(len(verdicts), 1)
    stats = {
        "prolog/correct_rate": sum(v.correct for v in verdicts) / n,
        "prolog/numeric_rate": sum(v.numeric for v in verdicts) / n,
        "prolog/structure_rate": sum(v.structure_valid for v in verdicts) / n,
    }
    for name, count in Counter(str(v.error_class) for v in verdicts).items():
        stats[f"prolog/error/{name}"] = count / n
    return stats


def with_stats_probe(func: RewardFunc) -> RewardFunc:
    """Wrap a reward function so each call also logs ``batch_stats``.

    The wrapper keeps the function's name (TRL logs rewards by name) and its return
    value; a failure of the probe is logged and never stops training.
    """

    @functools.wraps(func)
    def probed(completions, **kwargs):
        rewards = func(completions=completions, **kwargs)
        log_metric = kwargs.get("log_metric")
        golds = kwargs.get("numerical_result")
        if log_metric is not None and golds is not None:
            try:
                for key, value in batch_stats(completions, golds).items():
                    log_metric(key, value)
            except Exception as err:  # noqa: BLE001 - metrics must not stop training
                logger.warning("progress metrics failed: %s", err)
        return rewards

    return probed
