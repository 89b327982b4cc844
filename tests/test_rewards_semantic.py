"""Semantic similarity with an injected embedding, and one run of real MiniLM."""

import numpy as np
import pytest

from provex.prolog.rewards import (
    functor_names,
    make_semantic_reward,
    predicate_overlap,
)

REF = "q(1).\nsolve(X) :- q(X)."
CODE_A = "p(1).\nsolve(X) :- p(X)."
CODE_B = "r(1).\nsolve(X) :- r(X)."
CODE_C = "s(1).\nsolve(X) :- s(X)."
VECTORS = {REF: [0.6, 0.8], CODE_A: [1.0, 0.0], CODE_B: [0.0, 2.0], CODE_C: [-1.0, 0.0]}


def stub_embed(texts):
    return np.array([VECTORS[text] for text in texts])


def wrap(program: str) -> str:
    return f"<reasoning>\nr\n</reasoning>\n<answer>\n{program}\n</answer>\n"


def test_functor_names():
    assert functor_names(REF) == {"q", "solve"}


def test_overlap_half():
    assert predicate_overlap(CODE_A, REF) == 0.5


def test_overlap_empty_reference():
    assert predicate_overlap(CODE_A, "") == 0.0


def test_overlap_full():
    assert predicate_overlap(REF, REF) == 1.0


@pytest.mark.parametrize(
    ("code", "expected"),
    [(CODE_A, 1.2), (CODE_B, 1.6), (CODE_C, 0.5)],  # 2 * cos, floor 0.5
    ids=["cos_0.6", "cos_0.8", "negative_cos"],
)
def test_semantic_cosine(code, expected):
    reward = make_semantic_reward(embed=stub_embed)
    assert reward([wrap(code)], answer=[REF]) == [pytest.approx(expected)]


def test_semantic_no_code():
    reward = make_semantic_reward(embed=stub_embed)
    assert reward(["no block"], answer=[REF]) == [0.0]


def test_semantic_no_reference():
    reward = make_semantic_reward(embed=stub_embed)
    assert reward([wrap(CODE_A)], answer=[""]) == [0.0]


def test_semantic_with_overlap():
    reward = make_semantic_reward(embed=stub_embed, with_overlap=True)
    # 0.5 * max(0.5, 2 * 0.6) + 0.5 * 2 * (1 / 2)
    assert reward([wrap(CODE_A)], answer=[REF]) == [pytest.approx(1.1)]


def test_semantic_with_overlap_floor():
    reward = make_semantic_reward(embed=stub_embed, with_overlap=True)
    # 0.5 * 0.5 + 0.5 * 2 * (1 / 2)
    assert reward([wrap(CODE_C)], answer=[REF]) == [pytest.approx(0.75)]


def test_semantic_batch_embeds_once():
    calls = []

    def counting_embed(texts):
        calls.append(list(texts))
        return stub_embed(texts)

    reward = make_semantic_reward(embed=counting_embed)
    reward([wrap(CODE_A), wrap(CODE_B), wrap(CODE_A)], answer=[REF] * 3)
    assert len(calls) == 1
    assert sorted(calls[0]) == sorted([CODE_A, CODE_B, REF])


def test_semantic_bad_embedding_rows():
    reward = make_semantic_reward(embed=lambda texts: np.zeros((1, 2)))
    with pytest.raises(ValueError, match="one row per text"):
        reward([wrap(CODE_A)], answer=[REF])


def test_semantic_name():
    assert make_semantic_reward(embed=stub_embed).__name__ == (
        "semantic_similarity_reward"
    )


def test_semantic_real_minilm():
    reward = make_semantic_reward()
    same, other = reward(
        [wrap(REF), wrap("Cats sleep most of the afternoon.")], answer=[REF, REF]
    )
    assert same == pytest.approx(2.0, abs=1e-4)
    assert 0.5 <= other < 1.5
