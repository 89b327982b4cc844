"""Rewards that execute or read the extracted program through the Prolog pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from provex.prolog.answers import (
    Verdict,
    analyze_programs,
    check,
    extract_answer,
    gold_value,
    is_hardcoded,
)
from provex.prolog.rewards.config import RewardConfig
from provex.prolog.rewards.format import RewardFunc, _named, texts_of

if TYPE_CHECKING:
    from provex.prolog.engine import PrologPool


def golds_for(numerical_result: Any, size: int) -> list[Any]:
    """Return one gold value per completion from the ``numerical_result`` column."""
    if numerical_result is None:
        return [None] * size
    if isinstance(numerical_result, str | int | float):
        return [numerical_result] * size
    golds = list(numerical_result)
    if len(golds) != size:
        raise ValueError(
            f"numerical_result has {len(golds)} values for {size} completions; "
            "pass the dataset column so that TRL repeats it per completion"
        )
    return golds


def references_for(answer: Any, size: int) -> list[str]:
    """Return one reference program per completion from the ``answer`` column."""
    if answer is None:
        return [""] * size
    if isinstance(answer, str):
        return [answer] * size
    references = ["" if item is None else str(item) for item in answer]
    if len(references) != size:
        raise ValueError(
            f"answer has {len(references)} values for {size} completions; pass "
            "the dataset column so that TRL repeats it per completion"
        )
    return references


def correctness_score(verdict: Verdict, gold: Any, config: RewardConfig) -> float:
    """Return the correctness score of one checked completion."""
    if gold_value(gold) is None:
        return config.fallback_score
    if verdict.correct:
        return config.correct_score
    if verdict.numeric:
        return config.numeric_score
    return config.fallback_score


def structure_score(
    code: str | None, predicates: int, constraints: int, config: RewardConfig
) -> float:
    """Return the structure score of one program from its clause and ``{}`` counts."""
    if not code:
        return 0.0
    score = min(config.per_predicate * predicates, config.predicate_max)
    score += min(config.per_constraint * constraints, config.constraint_max)
    if is_hardcoded(code):
        score *= config.hardcode_factor
    return min(max(score, 0.0), config.structure_max)


def check_completions(
    completions: Sequence[Any],
    golds: Sequence[Any],
    config: RewardConfig,
    pool: PrologPool | None,
    *,
    analyze: bool,
) -> list[Verdict]:
    """Extract and run every completion's program in one concurrent batch."""
    return check(
        texts_of(completions),
        golds,
        pool=pool,
        analyze=analyze,
        query=config.query,
        variable=config.variable,
        tolerance=config.tolerance,
    )


def make_correctness_reward(
    config: RewardConfig | None = None, *, pool: PrologPool | None = None
) -> RewardFunc:
    """Build ``correctness_reward_func``.

    Reads the gold answer from the ``numerical_result`` column. The program's value
    is the line the reference executor would print for it (``reference_line``: X
    after any text the program printed without a final newline), read with
    ``float()``. Values: 2.0 for a number within 1e-6 of gold, 1.0 for any other
    number, and 0.5 otherwise (no ``<answer>`` block, syntax or runtime error,
    timeout, unbound X, a rational such as ``15r2``, a non-numeric term, or no
    gold answer). The three scores are ``correct_score``, ``numeric_score`` and
    ``fallback_score``.
    """
    config = config or RewardConfig()

    def reward(
        completions: Sequence[Any], numerical_result: Any = None, **kwargs: Any
    ) -> list[float]:
        golds = golds_for(numerical_result, len(completions))
        verdicts = check_completions(completions, golds, config, pool, analyze=False)
        return [
            correctness_score(verdict, gold, config)
            for verdict, gold in zip(verdicts, golds, strict=True)
        ]

    reward.__doc__ = make_correctness_reward.__doc__
    return _named(reward, "correctness_reward_func")


def make_structure_reward(
    config: RewardConfig | None = None, *, pool: PrologPool | None = None
) -> RewardFunc:
    """Build ``structure_reward_func``.

    Counts, by reading the answer program as Prolog terms, P = clauses whose head
    is not ``solve`` (directives excluded) and C = ``{}`` constraint occurrences.
    Values: ``min(0.3 * P, 1.0) + min(0.5 * C, 0.5)``, multiplied by 0.2 when
    ``solve/1`` is a single constraint equal to a literal integer, clipped to
    [0, 2] (so at most 1.5); 0.0 without an ``<answer>`` block. Unreadable programs
    count as P = C = 0.
    """
    config = config or RewardConfig()

    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        codes = [extract_answer(text) for text in texts_of(completions)]
        structures = analyze_programs(codes, pool=pool)
        scores = []
        for code in codes:
            structure = structures.get(code) if code else None
            scores.append(
                structure_score(
                    code,
                    getattr(structure, "predicates", 0) or 0,
                    getattr(structure, "constraints", 0) or 0,
                    config,
                )
            )
        return scores

    reward.__doc__ = make_structure_reward.__doc__
    return _named(reward, "structure_reward_func")
