"""Answer extraction and number parsing."""

from fractions import Fraction

import pytest

from provex.prolog.answers import (
    completion_text,
    extract_answer,
    format_number,
    gold_value,
    is_hardcoded,
    parse_exact,
    parse_gsm8k_answer,
    parse_number,
)


def test_extract_first_block():
    text = "<answer>\nfirst\n</answer>\n<answer>second</answer>"
    assert extract_answer(text) == "first"


def test_extract_strips_content():
    assert extract_answer("<answer>  solve(X).\n\n</answer>") == "solve(X)."


def test_extract_cut_at_endoftext():
    text = "<|endoftext|><answer>late</answer>"
    assert extract_answer(text) is None


def test_extract_cut_keeps_earlier_block():
    text = "<answer>a</answer><|im_end|><answer>b</answer>"
    assert extract_answer(text) == "a"


def test_extract_unclosed_block():
    assert extract_answer("<answer>solve(X) :- {X = 1}.") is None


def test_extract_closing_before_opening():
    assert extract_answer("</answer> text <answer>x</answer>") == "x"


def test_extract_none_and_empty():
    assert extract_answer(None) is None
    assert extract_answer("") is None


def test_completion_text_plain():
    assert completion_text("abc") == "abc"


def test_completion_text_conversational():
    completion = [{"role": "assistant", "content": "abc"}]
    assert completion_text(completion) == "abc"


def test_completion_text_skips_tool_messages():
    completion = [
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "13000"},
        {"role": "assistant", "content": "b"},
    ]
    assert completion_text(completion) == "a\nb"


def test_completion_text_content_parts():
    completion = [{"role": "assistant", "content": [{"type": "text", "text": "ab"}]}]
    assert completion_text(completion) == "ab"


def test_completion_text_rejects_number():
    with pytest.raises(TypeError):
        completion_text(42)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13000", 13000.0),
        (" 42.\n", 42.0),
        ("1,234", 1234.0),
        ("-3.5", -3.5),
        ("15r2", None),
        ("_G123", None),
        ("abc", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234", Fraction(1234)),
        ("$5", Fraction(5)),
        ("0.25", Fraction(1, 4)),
        ("-7.5", Fraction(-15, 2)),
        ("7/2", Fraction(7, 2)),
        ("x", None),
        ("", None),
    ],
)
def test_parse_exact(text, expected):
    assert parse_exact(text) == expected


def test_parse_gsm8k_answer_commas():
    assert parse_gsm8k_answer("So 1000+234=1234\n#### 1,234") == Fraction(1234)


def test_parse_gsm8k_answer_decimal():
    assert parse_gsm8k_answer("#### 0.5") == Fraction(1, 2)


def test_parse_gsm8k_answer_missing():
    with pytest.raises(ValueError, match="####"):
        parse_gsm8k_answer("The answer is 5.")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(1234), "1234"),
        (Fraction(1, 4), "0.25"),
        (Fraction(-15, 2), "-7.5"),
        (Fraction(1, 3), "1/3"),
        (Fraction(1, 40), "0.025"),
        (7, "7"),
        (2.5, "2.5"),
    ],
)
def test_format_number(value, expected):
    assert format_number(value) == expected


def test_gold_value_string():
    assert gold_value("1,234") == 1234.0


def test_gold_value_none():
    assert gold_value(None) is None


def test_gold_value_word():
    assert gold_value("many") is None


def test_hardcoded_literal_solve():
    assert is_hardcoded("solve(X) :- {X = 42}.")


def test_hardcoded_expression_not():
    assert not is_hardcoded("solve(X) :- {X = 2 + 2}.")


def test_hardcoded_none():
    assert not is_hardcoded(None)
