"""Text-only rewards: XML count, strict and soft format, Prolog keyword syntax."""

import pytest

from provex.prolog.rewards import (
    RewardConfig,
    make_soft_format_reward,
    make_strict_format_reward,
    make_syntax_reward,
    make_xmlcount_reward,
)

PROGRAM = ":- use_module(library(clpq)).\nsolve(X) :- {X = 2 + 2}."
GOOD = f"<reasoning>\nAdd 2 and 2.\n</reasoning>\n<answer>\n{PROGRAM}\n</answer>\n"
NO_NEWLINE = GOOD[:-1]


def _padded(length: int) -> str:
    """A well-formed completion of exactly ``length`` characters, no final newline."""
    frame = "<reasoning>\n{}\n</reasoning>\n<answer>\nsolve(4).\n</answer>"
    return frame.format("r" * (length - len(frame.format(""))))


def test_padded_length():
    assert len(_padded(156)) == 156


def test_xmlcount_trailing_newline():
    assert make_xmlcount_reward()([GOOD]) == [pytest.approx(0.5)]


def test_xmlcount_156_chars_without_newline():
    # 0.5 - 0.001 * 156 (whole text) + 0.001 (second penalty is len("") - 1)
    assert make_xmlcount_reward()([_padded(156)]) == [pytest.approx(0.345)]


def test_xmlcount_fixed_without_newline():
    reward = make_xmlcount_reward(RewardConfig.fixed())
    assert reward([_padded(156)]) == [pytest.approx(0.5)]


def test_xmlcount_trailing_text():
    # Each penalty counts the 3 characters of "xyz": 0.5 - 2 * 0.003.
    assert make_xmlcount_reward()([GOOD + "xyz"]) == [pytest.approx(0.494)]


def test_xmlcount_negative_for_long_text():
    assert make_xmlcount_reward()([_padded(1000)]) == [pytest.approx(-0.499)]


def test_xmlcount_clamped_not_negative():
    reward = make_xmlcount_reward(clamp=True)
    # Third tag: 0.375 - 1.0 clamps to 0; fourth: 0 + 0.125 + 0.001.
    assert reward([_padded(1000)]) == [pytest.approx(0.126)]


def test_xmlcount_duplicate_reasoning():
    text = "<reasoning>\n<reasoning>\n" + GOOD[len("<reasoning>\n") :]
    assert make_xmlcount_reward()([text]) == [pytest.approx(0.375)]


def test_xmlcount_empty():
    assert make_xmlcount_reward()([""]) == [0.0]


def test_strict_trailing_newline():
    assert make_strict_format_reward()([GOOD]) == [0.5]


def test_strict_needs_trailing_newline():
    assert make_strict_format_reward()([NO_NEWLINE]) == [0.0]


def test_strict_fixed_accepts_missing_newline():
    reward = make_strict_format_reward(RewardConfig.fixed())
    assert reward([NO_NEWLINE]) == [0.5]


def test_strict_rejects_prefix():
    assert make_strict_format_reward()(["(USER) " + GOOD]) == [0.0]


def test_soft_matches_inline_blocks():
    text = "(USER) <reasoning>r</reasoning> <answer>a</answer> trailing"
    assert make_soft_format_reward()([text]) == [0.5]


def test_soft_needs_reasoning():
    assert make_soft_format_reward()(["<answer>a</answer>"]) == [0.0]


def test_syntax_capped():
    # 8 hits: "." after "2.", 4 in the import line, 3 in the solve line.
    assert make_syntax_reward()([GOOD]) == [1.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("solve(X).", 0.4),
        ("no prolog here", 0.0),
        ("x :- y", 0.2),
        ("clpq clpq clpq", 0.6),
        ("use_module\nend.\n", 0.4),
    ],
)
def test_syntax_hits(text, expected):
    assert make_syntax_reward()([text]) == [pytest.approx(expected)]


def test_syntax_counts_reasoning_by_default():
    text = "<reasoning>\nuse clpq and solve(X).\n</reasoning>\n<answer>\nx\n</answer>\n"
    assert make_syntax_reward()([text]) == [pytest.approx(0.6)]


def test_syntax_answer_only_switch():
    text = "<reasoning>\nuse clpq and solve(X).\n</reasoning>\n<answer>\nx\n</answer>\n"
    reward = make_syntax_reward(RewardConfig(syntax_answer_only=True))
    assert reward([text]) == [0.0]


def test_rewards_accept_conversational():
    completion = [{"role": "assistant", "content": GOOD}]
    assert make_strict_format_reward()([completion]) == [0.5]


def test_reward_names():
    names = [
        make_xmlcount_reward().__name__,
        make_soft_format_reward().__name__,
        make_strict_format_reward().__name__,
        make_syntax_reward().__name__,
    ]
    assert names == [
        "xmlcount_reward_func",
        "soft_format_reward_func",
        "strict_format_reward_func",
        "prolog_syntax_reward_func",
    ]


def test_configurable_format_score():
    reward = make_soft_format_reward(RewardConfig(format_score=1.0))
    assert reward([GOOD]) == [1.0]


def test_docstrings_give_values():
    assert "0.5" in make_strict_format_reward().__doc__
