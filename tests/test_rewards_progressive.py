"""The progressive reward's curriculum and combined values, and the presets."""

from types import SimpleNamespace

import numpy as np
import pytest

from provex.prolog.engine import PrologPool
from provex.prolog.rewards import (
    ProgressiveReward,
    RewardConfig,
    curriculum_position,
    curriculum_weights,
    get_preset,
)

CLPQ = ":- use_module(library(clpq)).\n"
CODE = CLPQ + "solve(X) :- {X = 2 + 2}."
REF = CLPQ + "n(2).\nsolve(X) :- n(A), {X = A + A}."
GOOD = f"<reasoning>\nAdd 2 and 2.\n</reasoning>\n<answer>\n{CODE}\n</answer>\n"
# cos(CODE, REF) = 0.5 under this embedding.
VECTORS = {CODE: [1.0, 0.0], REF: [0.5, np.sqrt(0.75)]}


def stub_embed(texts):
    return np.array([VECTORS[text] for text in texts])


@pytest.fixture(scope="module")
def pool():
    with PrologPool(workers=2, time_limit=1.0) as pool:
        yield pool


def halfway():
    return SimpleNamespace(global_step=50, max_steps=100)


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(0.0, 0.0024726), (0.5, 0.5), (1.0, 0.9975274)],
)
def test_curriculum_position(progress, expected):
    assert curriculum_position(progress) == pytest.approx(expected, abs=1e-7)


def test_curriculum_weights_halfway():
    assert curriculum_weights(0.5) == pytest.approx(
        {
            "semantic": 0.225,
            "format": 0.175,
            "syntax": 0.10,
            "correctness": 0.30,
            "structure": 0.20,
        }
    )


def test_curriculum_weights_start_near_early():
    assert curriculum_weights(0.0)["correctness"] == pytest.approx(
        0.15 + 0.30 * 0.0024726, abs=1e-7
    )


def test_progressive_good_halfway(pool):
    reward = ProgressiveReward(pool=pool, embed=stub_embed)
    score = reward(
        [GOOD], answer=[REF], numerical_result=["4"], trainer_state=halfway()
    )
    # semantic: 0.5 * max(0.5, 2 * 0.5) + 0.5 * 2 * 3/4 = 1.25 -> 0.625
    # format: clip(0.67 * 1.5) = 1; syntax 1; correctness 2 -> 1;
    # structure: P = 0, C = 1 -> 0.5 -> 0.25.
    # 2 * (0.225 * 0.625 + 0.175 + 0.1 + 0.3 + 0.2 * 0.25) = 1.53125
    assert score == [pytest.approx(1.53125)]


def test_progressive_empty_halfway(pool):
    reward = ProgressiveReward(pool=pool, embed=stub_embed)
    score = reward([""], answer=[REF], numerical_result=["4"], trainer_state=halfway())
    # Only correctness contributes: 2 * 0.30 * (0.5 / 2)
    assert score == [pytest.approx(0.15)]


def test_progressive_internal_counter(pool):
    config = RewardConfig(total_prompts=4)
    reward = ProgressiveReward(config, pool=pool, embed=stub_embed)
    seen = []
    for _ in range(6):
        reward([""], answer=[REF], numerical_result=["4"])
        seen.append(reward.last_metrics["progressive/progress"])
    assert seen == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_progressive_empty_at_start(pool):
    reward = ProgressiveReward(pool=pool, embed=stub_embed)
    score = reward([""], answer=[REF], numerical_result=["4"])
    weight = 0.15 + 0.30 * curriculum_position(0.0)
    assert score == [pytest.approx(2 * weight * 0.25)]


def test_progressive_logs_metrics(pool):
    logged = {}
    reward = ProgressiveReward(pool=pool, embed=stub_embed)
    reward(
        [GOOD, ""],
        answer=[REF, REF],
        numerical_result=["4", "4"],
        trainer_state=halfway(),
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    assert logged["progressive/correctness"] == pytest.approx(0.625)
    assert logged["progressive/weight_structure"] == pytest.approx(0.2)


def test_progressive_name():
    assert ProgressiveReward(embed=stub_embed).__name__ == "progressive_reward_func"


def test_preset_suite1_names():
    names = [f.__name__ for f in get_preset("suite1")]
    assert names == [
        "xmlcount_reward_func",
        "soft_format_reward_func",
        "strict_format_reward_func",
        "prolog_syntax_reward_func",
        "correctness_reward_func",
    ]


def test_preset_suite1_max_total(pool):
    total = sum(
        f([GOOD], numerical_result=["4"])[0] for f in get_preset("suite1", pool=pool)
    )
    assert total == pytest.approx(4.5)


def test_preset_suite2_adds_semantic():
    names = [f.__name__ for f in get_preset("suite2", embed=stub_embed)]
    assert names[-1] == "semantic_similarity_reward"


def test_preset_suite3_single():
    names = [f.__name__ for f in get_preset("rwd3", embed=stub_embed)]
    assert names == ["progressive_reward_func"]


def test_preset_unknown():
    with pytest.raises(ValueError, match="unknown reward preset"):
        get_preset("suite9")


def test_config_missing_weight():
    with pytest.raises(ValueError, match="lacks weights"):
        RewardConfig(early_weights={"semantic": 1.0})


def test_progressive_counts_prompt_runs(pool):
    reward = ProgressiveReward(
        RewardConfig(total_prompts=4), pool=pool, embed=stub_embed
    )
    prompts = ["p1", "p1", "p2", "p2"]
    reward([""] * 4, answer=[REF] * 4, numerical_result=["4"] * 4, prompts=prompts)
    reward([""], answer=[REF], numerical_result=["4"])
    assert reward.last_metrics["progressive/progress"] == 0.5


def test_progressive_counts_groups_without_prompts(pool):
    config = RewardConfig(total_prompts=4, num_generations=2)
    reward = ProgressiveReward(config, pool=pool, embed=stub_embed)
    reward([""] * 6, answer=[REF] * 6, numerical_result=["4"] * 6)
    reward([""], answer=[REF], numerical_result=["4"])
    assert reward.last_metrics["progressive/progress"] == 0.75


def test_progressive_trainer_state_wins(pool):
    reward = ProgressiveReward(
        RewardConfig(total_prompts=4), pool=pool, embed=stub_embed
    )
    reward([""] * 4, answer=[REF] * 4, numerical_result=["4"] * 4)
    reward([""], answer=[REF], numerical_result=["4"], trainer_state=halfway())
    assert reward.last_metrics["progressive/progress"] == 0.5


def test_config_num_generations_positive():
    with pytest.raises(ValueError, match="num_generations"):
        RewardConfig(num_generations=0)
