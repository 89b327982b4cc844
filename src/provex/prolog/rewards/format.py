"""Rewards that read only the completion text: XML layout and Prolog keywords."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from provex.prolog.answers import completion_text, extract_answer
from provex.prolog.rewards.config import RewardConfig

RewardFunc = Callable[..., list[float]]

SYNTAX_RE = re.compile(r"(?::-|solve\s*\(|use_module|clpq|\.\s*$)", re.MULTILINE)
STRICT_RE = re.compile(
    r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$", re.DOTALL
)
STRICT_FIXED_RE = re.compile(
    r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\s*$", re.DOTALL
)
SOFT_RE = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)


def texts_of(completions: Sequence[Any]) -> list[str]:
    """Return the assistant text of each completion (plain or conversational)."""
    return [completion_text(completion) for completion in completions]


def syntax_score(text: str, config: RewardConfig) -> float:
    """Return ``min(per_hit * hits, max)`` for the Prolog keyword hits in ``text``."""
    if config.syntax_answer_only:
        text = extract_answer(text) or ""
    hits = len(SYNTAX_RE.findall(text))
    return min(config.syntax_per_hit * hits, config.syntax_max)


def strict_format_score(text: str, config: RewardConfig) -> float:
    """Return ``format_score`` when the whole text is exactly the XML layout."""
    pattern = STRICT_RE if config.strict_trailing_newline else STRICT_FIXED_RE
    return config.format_score if pattern.match(text) else 0.0


def soft_format_score(text: str, config: RewardConfig) -> float:
    """Return ``format_score`` when a reasoning block is followed by an answer block."""
    return config.format_score if SOFT_RE.search(text) else 0.0


def xml_count_score(text: str, config: RewardConfig, *, clamp: bool = False) -> float:
    """Return the XML tag count score of one text.

    Adds ``xml_tag_score`` for each of ``"<reasoning>\\n"``, ``"\\n</reasoning>\\n"``,
    ``"\\n<answer>\\n"`` and ``"\\n</answer>"`` occurring exactly once. With the third
    tag it subtracts ``xml_penalty_per_char`` times the length of the text after the
    last ``"\\n</answer>\\n"`` (the whole text when that is absent, unless
    ``xml_whole_text_penalty`` is off). With the fourth it subtracts the same rate
    times the length after the last ``"\\n</answer>"`` minus one. ``clamp`` keeps the
    running count from going below 0 after each penalty.
    """
    tag = config.xml_tag_score
    rate = config.xml_penalty_per_char
    count = 0.0
    if text.count("<reasoning>\n") == 1:
        count += tag
    if text.count("\n</reasoning>\n") == 1:
        count += tag
    if text.count("\n<answer>\n") == 1:
        count += tag
        if config.xml_whole_text_penalty:
            trailing = text.split("\n</answer>\n")[-1]
        else:
            trailing = _after_answer(text)
        count -= len(trailing) * rate
        if clamp:
            count = max(count, 0.0)
    if text.count("\n</answer>") == 1:
        count += tag
        if config.xml_whole_text_penalty:
            count -= (len(text.split("\n</answer>")[-1]) - 1) * rate
        else:
            count -= len(_after_answer(text)) * rate
        if clamp:
            count = max(count, 0.0)
    return count


def _after_answer(text: str) -> str:
    tail = text.split("\n</answer>")[-1] if "\n</answer>" in text else ""
    return tail[1:] if tail.startswith("\n") else tail


def _named(func: RewardFunc, name: str) -> RewardFunc:
    func.__name__ = name
    func.__qualname__ = name
    return func


def _text_reward(
    score: Callable[[str], float], name: str, doc: str | None
) -> RewardFunc:
    """Wrap a score of one completion text as a TRL reward function."""

    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [score(text) for text in texts_of(completions)]

    reward.__doc__ = doc
    return _named(reward, name)


def make_syntax_reward(config: RewardConfig | None = None) -> RewardFunc:
    """Build ``prolog_syntax_reward_func``.

    Values: ``min(0.2 * hits, 1.0)`` by default, where ``hits`` counts the matches of
    ``:-``, ``solve(``, ``use_module``, ``clpq`` and a ``.`` ending a line, over the
    whole completion (over the answer block with ``syntax_answer_only``).
    """
    config = config or RewardConfig()
    return _text_reward(
        lambda text: syntax_score(text, config),
        "prolog_syntax_reward_func",
        make_syntax_reward.__doc__,
    )


def make_strict_format_reward(config: RewardConfig | None = None) -> RewardFunc:
    """Build ``strict_format_reward_func``.

    Values: 0.5 when the completion is exactly
    ``<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>\\n``, else 0.0.
    By default the newline after ``</answer>`` is required (the reference
    behaviour); ``strict_trailing_newline=False`` accepts its absence.
    """
    config = config or RewardConfig()
    return _text_reward(
        lambda text: strict_format_score(text, config),
        "strict_format_reward_func",
        make_strict_format_reward.__doc__,
    )


def make_soft_format_reward(config: RewardConfig | None = None) -> RewardFunc:
    """Build ``soft_format_reward_func``.

    Values: 0.5 when a ``<reasoning>...</reasoning>`` block is followed (after
    optional whitespace) by an ``<answer>...</answer>`` block anywhere in the
    completion, else 0.0.
    """
    config = config or RewardConfig()
    return _text_reward(
        lambda text: soft_format_score(text, config),
        "soft_format_reward_func",
        make_soft_format_reward.__doc__,
    )


def make_xmlcount_reward(
    config: RewardConfig | None = None, *, clamp: bool = False
) -> RewardFunc:
    """Build ``xmlcount_reward_func``.

    Values: up to 0.5 (0.125 per well-formed tag), reached when the completion ends
    with ``</answer>\\n``; minus 0.001 per character of trailing text. Without the
    final newline the default (reference) rule penalises the whole text length, for
    example 0.345 for a 156-character completion, and can go below 0.
    ``clamp=True`` keeps the count at or above 0.
    """
    config = config or RewardConfig()
    return _text_reward(
        lambda text: xml_count_score(text, config, clamp=clamp),
        "xmlcount_reward_func",
        make_xmlcount_reward.__doc__,
    )
