"""Every number the reward functions use, in one dataclass.

The defaults reproduce the reference reward suites, quirks included.
``RewardConfig.fixed()`` switches the quirks off.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

CURRICULUM_TERMS = ("semantic", "format", "syntax", "correctness", "structure")


def _early_weights() -> dict[str, float]:
    return {
        "semantic": 0.35,
        "format": 0.25,
        "syntax": 0.10,
        "correctness": 0.15,
        "structure": 0.15,
    }


def _late_weights() -> dict[str, float]:
    return {
        "semantic": 0.10,
        "format": 0.10,
        "syntax": 0.10,
        "correctness": 0.45,
        "structure": 0.25,
    }


@dataclass
class RewardConfig:
    """Scores, thresholds and switches of the reward functions."""

    # Correctness: the score for a number within `tolerance` of gold, for any other
    # number, and for everything else (no code, errors, unbound, rationals).
    correct_score: float = 2.0
    numeric_score: float = 1.0
    fallback_score: float = 0.5
    tolerance: float = 1e-6
    query: str = "solve(X)"
    variable: str = "X"

    # Syntax: score per keyword hit, capped.
    syntax_per_hit: float = 0.2
    syntax_max: float = 1.0
    # Quirk kept by default: the keywords are counted over the whole completion,
    # reasoning included. True counts them in the answer block only.
    syntax_answer_only: bool = False

    # Strict and soft format: the score when the layout matches.
    format_score: float = 0.5
    # Quirk kept by default: strict format requires a newline after </answer>.
    strict_trailing_newline: bool = True

    # XML tag count: score per tag, and penalty per character after </answer>.
    xml_tag_score: float = 0.125
    xml_penalty_per_char: float = 0.001
    # Quirk kept by default: without a newline after the final </answer>, the first
    # penalty counts the whole text, so long completions can score below zero.
    # False counts only the characters after "</answer>" and its one newline.
    xml_whole_text_penalty: bool = True

    # Semantic similarity: max(floor, scale * cosine); 0 without code or reference.
    semantic_floor: float = 0.5
    semantic_scale: float = 2.0
    # Weights of the cosine part and of the predicate-overlap part in the
    # progressive reward's semantic term; the overlap is scaled by 2 like cosine.
    semantic_cosine_weight: float = 0.5
    semantic_overlap_weight: float = 0.5

    # Structure: min(per_predicate * P, predicate_max) + min(per_constraint * C,
    # constraint_max), times hardcode_factor when solve/1 states a literal.
    per_predicate: float = 0.3
    predicate_max: float = 1.0
    per_constraint: float = 0.5
    constraint_max: float = 0.5
    hardcode_factor: float = 0.2
    structure_max: float = 2.0

    # Progressive reward: weights move from early to late along
    # s = 1 / (1 + exp(-steepness * (progress - midpoint))).
    curriculum_steepness: float = 12.0
    curriculum_midpoint: float = 0.5
    # Prompts in one training run (train rows times epochs). Without TRL's
    # trainer_state, the progress is the number of prompts scored so far over this.
    total_prompts: int = 1750
    # Completions per prompt. A call without a `prompts` keyword counts as
    # ceil(len(completions) / num_generations) prompts.
    num_generations: int = 8
    early_weights: dict[str, float] = field(default_factory=_early_weights)
    late_weights: dict[str, float] = field(default_factory=_late_weights)
    format_scale: float = 0.67
    final_scale: float = 2.0

    def __post_init__(self) -> None:
        for name in ("early_weights", "late_weights"):
            weights = getattr(self, name)
            missing = set(CURRICULUM_TERMS) - set(weights)
            if missing:
                raise ValueError(
                    f"{name} lacks weights for {sorted(missing)}; give all of "
                    f"{list(CURRICULUM_TERMS)}"
                )
        if self.total_prompts < 1:
            raise ValueError(
                f"total_prompts must be at least 1, got {self.total_prompts}"
            )
        if self.num_generations < 1:
            raise ValueError(
                f"num_generations must be at least 1, got {self.num_generations}"
            )

    @classmethod
    def fixed(cls, **overrides: object) -> RewardConfig:
        """Return a config with the reference quirks switched off.

        Syntax keywords count in the answer block only, strict format accepts a
        missing final newline, and the XML count penalises only trailing text.
        """
        config = cls(
            syntax_answer_only=True,
            strict_trailing_newline=False,
            xml_whole_text_penalty=False,
        )
        return replace(config, **overrides)
