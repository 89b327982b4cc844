"""Exact parameter counts from configs, against published totals and built models."""

from __future__ import annotations

import pytest
from transformers import FlexOlmoForCausalLM, Olmo2Config, Olmo2ForCausalLM

from provex.moe.modeling import compress_model
from provex.moe.params import breakeven_rank, count_model_parameters, count_parameters
from provex.moe.testing import tiny_flexolmo_config


def test_olmo2_dense_total():
    assert count_parameters("olmo2-7b").total == 7_298_617_344


def test_flexolmo_2x7b_total():
    assert count_parameters("flexolmo-2x7b").total == 11_627_401_216


def test_flexolmo_7x7b_total():
    assert count_parameters("flexolmo-7x7b").total == 33_270_665_216


def test_flexmore_formula():
    ranks = [0, 16, 32, 64, 16, 64, 32]
    expected = 7_299_534_848 + 1_449_984 * sum(ranks)
    assert count_parameters("flexmore-7x7b", ranks=ranks).total == expected


def test_flexmore_adapter_per_layer():
    one = count_parameters("flexmore-7x7b", ranks=[0, 1, 0, 0, 0, 0, 0]).per_expert[1]
    assert one == 32 * 45_312


def test_active_top4_of_8():
    # 8 dense experts, top-4: shared 2,970,095,616 + router + 4 experts.
    count = count_parameters({**_olmo2(), "num_experts": 8, "num_experts_per_tok": 4})
    assert count.active == 2_970_095_616 + 32 * 8 * 4096 + 4 * 4_328_521_728


def test_active_adapter_touches_base():
    # top-1 on a lone adapter still reads the public expert's weights.
    count = count_parameters(
        {**_olmo2(), "num_experts": 2, "num_experts_per_tok": 1}, ranks=[0, 8]
    )
    assert count.active == count.total


def test_breakeven_rank():
    assert breakeven_rank(4096, 11008) == pytest.approx(2985.22, abs=0.01)


def test_components_sum_to_total():
    count = count_parameters("flexolmo-7x7b")
    assert sum(count.components.values()) == count.total


@pytest.mark.parametrize("experts", [1, 2, 7])
def test_matches_built_flexolmo(experts):
    config = tiny_flexolmo_config(experts, num_experts_per_tok=1)
    assert count_parameters(config).total == count_model_parameters(
        FlexOlmoForCausalLM(config)
    )


def test_matches_built_gqa_flexolmo():
    config = tiny_flexolmo_config(3, num_key_value_heads=2)
    assert count_parameters(config).total == count_model_parameters(
        FlexOlmoForCausalLM(config)
    )


def test_matches_built_flexmore():
    model = compress_model(
        FlexOlmoForCausalLM(tiny_flexolmo_config(4)), "expert1=1,expert2=7,expert3=full"
    )
    assert count_parameters(model.config).total == sum(
        p.numel() for p in model.parameters()
    )


def test_matches_built_olmo2():
    config = Olmo2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        eos_token_id=2,
    )
    assert count_parameters(config).total == count_model_parameters(
        Olmo2ForCausalLM(config)
    )


def test_other_architecture_rejected():
    with pytest.raises(ValueError, match="model_type 'llama'"):
        count_parameters({"model_type": "llama", "hidden_size": 32})


def test_unknown_preset_message():
    with pytest.raises(ValueError, match="neither a preset"):
        count_parameters("flexolmo-9x9b")


def _olmo2() -> dict:
    from provex.moe.params import OLMO2_7B

    return dict(OLMO2_7B)
