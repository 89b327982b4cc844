"""FlexMoRE model: equal to FlexOlmo, factorised vs dense, save/load, sharing."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, FlexOlmoForCausalLM

import provex.moe  # noqa: F401  (registers the Auto classes)
from provex.moe.configuration import FlexMoreConfig
from provex.moe.lowrank import compress_checkpoint
from provex.moe.modeling import FlexMoreForCausalLM, compress_model, flexolmo_state_dict
from provex.moe.testing import make_tiny_flexolmo, tiny_flexolmo_config

TOKENS = torch.tensor([[3, 17, 42, 99, 5, 64, 7, 120], [9, 8, 7, 6, 5, 4, 3, 2]])


@pytest.fixture(scope="module")
def mixture():
    torch.manual_seed(0)
    model = FlexOlmoForCausalLM(tiny_flexolmo_config(4, num_experts_per_tok=3)).eval()
    with torch.no_grad():  # domain experts = public + small delta, like trained experts
        for layer in model.model.layers:
            experts = layer.mlp.experts
            for e in range(1, 4):
                experts.gate_up_proj[e] = experts.gate_up_proj[
                    0
                ] + 0.01 * torch.randn_like(experts.gate_up_proj[0])
                experts.down_proj[e] = experts.down_proj[0] + 0.01 * torch.randn_like(
                    experts.down_proj[0]
                )
    return model


def _logits(model, tokens=TOKENS) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens).logits


def test_full_rank_equals_flexolmo(mixture):
    dense = FlexMoreForCausalLM.from_flexolmo(mixture)
    assert torch.allclose(_logits(dense), _logits(mixture), atol=1e-5)


def test_max_rank_adapters_equal_flexolmo(mixture):
    lowrank = compress_model(mixture, 32, method="exact")
    assert torch.allclose(_logits(lowrank), _logits(mixture), atol=1e-4)


def test_factorised_equals_dense(mixture):
    factorised = compress_model(mixture, "expert1=2,expert2=5,expert3=full")
    dense = compress_model(mixture, "expert1=2,expert2=5,expert3=full", dense=True)
    assert isinstance(dense, FlexOlmoForCausalLM)
    assert torch.allclose(_logits(factorised), _logits(dense), atol=1e-5)


def test_error_falls_with_rank(mixture):
    reference = _logits(mixture)
    errors = [
        (_logits(compress_model(mixture, r)) - reference).abs().mean()
        for r in (1, 4, 16, 32)
    ]
    assert errors[0] > errors[1] > errors[2] > errors[3]


def test_lowrank_shares_public_weights(mixture):
    model = compress_model(mixture, 4)
    experts = model.model.layers[0].mlp.experts
    public = experts[0].gate_proj.weight
    assert experts.base_of(2).gate_proj.weight.data_ptr() == public.data_ptr()
    assert not hasattr(experts[2], "gate_proj")


def test_state_dict_has_no_base_copies(mixture):
    model = compress_model(mixture, 4)
    keys = [k for k in model.state_dict() if "layers.0.mlp.experts.1." in k]
    assert sorted(keys) == sorted(
        f"model.layers.0.mlp.experts.1.{p}_{f}.weight"
        for p in ("gate_proj", "up_proj", "down_proj")
        for f in "ab"
    )


def test_factor_shapes(mixture):
    expert = compress_model(mixture, 4).model.layers[0].mlp.experts[1]
    assert expert.gate_proj_a.weight.shape == (4, 32)
    assert expert.gate_proj_b.weight.shape == (48, 4)
    assert expert.down_proj_a.weight.shape == (4, 48)
    assert expert.down_proj_b.weight.shape == (32, 4)


def test_save_load_round_trip(mixture, tmp_path):
    model = compress_model(mixture, "expert1=3,expert2=full,expert3=7")
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert isinstance(loaded, FlexMoreForCausalLM)
    assert loaded.config.expert_ranks == [0, 3, 0, 7]
    assert torch.equal(_logits(loaded), _logits(model))


def test_auto_config_registered(tmp_path):
    FlexMoreConfig(
        **tiny_flexolmo_config(2).to_dict() | {"expert_ranks": [0, 2]}
    ).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), FlexMoreConfig)


def test_alpha_scales_adapter(mixture):
    model = compress_model(mixture, 4)
    doubled = compress_model(mixture, 4)
    for layer in doubled.model.layers:
        for index in range(1, 4):
            expert = layer.mlp.experts[index]
            expert.scaling = 2.0
            for p in ("gate_proj", "up_proj", "down_proj"):
                getattr(expert, f"{p}_b").weight.data /= 2.0
    assert torch.allclose(_logits(doubled), _logits(model), atol=1e-5)


def test_config_alpha_sets_scaling():
    config = FlexMoreConfig(
        **tiny_flexolmo_config(2).to_dict()
        | {"expert_ranks": [0, 4], "expert_alphas": [1.0, 8.0]}
    )
    model = FlexMoreForCausalLM(config)
    assert model.model.layers[0].mlp.experts[1].scaling == 2.0


def test_config_alpha_default_scale_one():
    config = FlexMoreConfig(
        **tiny_flexolmo_config(3).to_dict() | {"expert_ranks": [0, 4, 8]}
    )
    assert config.expert_scalings == [1.0, 1.0, 1.0]


def test_config_rejects_lowrank_base():
    values = tiny_flexolmo_config(3).to_dict() | {
        "expert_ranks": [0, 4, 8],
        "expert_bases": [0, 0, 1],
    }
    with pytest.raises(ValueError, match="not a dense expert"):
        FlexMoreConfig(**values)


def test_config_rejects_rank_above_width():
    with pytest.raises(ValueError, match="1..32"):
        FlexMoreConfig(**tiny_flexolmo_config(2).to_dict() | {"expert_ranks": [0, 33]})


def _naive_moe_output(experts, x, index, weights):
    """Reference dispatch: every routed expert computes its own dense projections."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for slot in range(index.shape[1]):
            e = int(index[t, slot])
            g = experts.dense_weight(e, "gate_proj") @ x[t]
            u = experts.dense_weight(e, "up_proj") @ x[t]
            out[t] += weights[t, slot] * (
                experts.dense_weight(e, "down_proj") @ (torch.nn.functional.silu(g) * u)
            )
    return out


def test_grouped_dispatch_equals_naive(mixture):
    model = compress_model(mixture, "expert1=2,expert2=full,expert3=6")
    block = model.model.layers[1].mlp
    x = torch.randn(10, 32)
    _, weights, index = block.gate(x)
    with torch.no_grad():
        grouped = block.experts(x, index, weights)
        naive = _naive_moe_output(block.experts, x, index, weights)
    assert torch.allclose(grouped, naive, atol=1e-5)


def test_base_projection_computed_once(mixture):
    model = compress_model(mixture, 4)
    experts = model.model.layers[0].mlp.experts
    calls = []
    handle = experts[0].gate_proj.register_forward_hook(
        lambda m, i, o: calls.append(i[0].shape[0])
    )
    x = torch.randn(5, 32)
    index = torch.tensor([[0, 1, 2]] * 5)
    experts(x, index, torch.full((5, 3), 1 / 3))
    handle.remove()
    assert calls == [5]


def test_mask_equals_removal(mixture):
    full = FlexMoreForCausalLM.from_flexolmo(mixture)
    full.set_opted_out(["expert2"])
    state = flexolmo_state_dict(mixture)
    kept = [0, 1, 3]
    config = tiny_flexolmo_config(3, num_experts_per_tok=3)
    removed = FlexOlmoForCausalLM(config).eval()
    new_state = {}
    for key in removed.state_dict():
        if key.endswith("gate_up_proj"):
            prefix = key.removesuffix("gate_up_proj")
            new_state[key] = torch.stack(
                [
                    torch.cat(
                        [
                            state[f"{prefix}{e}.gate_proj.weight"],
                            state[f"{prefix}{e}.up_proj.weight"],
                        ]
                    )
                    for e in kept
                ]
            )
        elif key.endswith("experts.down_proj"):
            prefix = key.removesuffix("down_proj")
            new_state[key] = torch.stack(
                [state[f"{prefix}{e}.down_proj.weight"] for e in kept]
            )
        elif key.endswith("mlp.gate.weight"):
            new_state[key] = state[key][kept]
        else:
            new_state[key] = state[key]
    removed.load_state_dict(new_state)
    assert torch.allclose(_logits(full), _logits(removed), atol=1e-6)


def test_mask_changes_output(mixture):
    model = FlexMoreForCausalLM.from_flexolmo(mixture)
    before = _logits(model)
    model.set_opted_out(["expert1"])
    assert not torch.allclose(_logits(model), before)


def test_generate_with_cache(mixture):
    model = compress_model(mixture, 4)
    with torch.no_grad():
        cached = model.generate(
            TOKENS[:1], max_new_tokens=5, do_sample=False, use_cache=True
        )
        uncached = model.generate(
            TOKENS[:1], max_new_tokens=5, do_sample=False, use_cache=False
        )
    assert torch.equal(cached, uncached)


def test_checkpoint_factorised_equals_dense(tmp_path):
    path = make_tiny_flexolmo(tmp_path, ["math"])[0]
    compress_checkpoint(path, tmp_path / "fact", 3)
    compress_checkpoint(path, tmp_path / "dense", 3, dense=True)
    factorised = AutoModelForCausalLM.from_pretrained(tmp_path / "fact").eval()
    dense = AutoModelForCausalLM.from_pretrained(tmp_path / "dense").eval()
    assert isinstance(dense, FlexOlmoForCausalLM)
    assert torch.allclose(_logits(factorised), _logits(dense), atol=1e-5)


def test_checkpoint_full_rank_reproduces_expert(tmp_path):
    from provex.moe.checkpoint import FlexCheckpoint, expert_key

    path = make_tiny_flexolmo(tmp_path, ["math"])[0]
    compress_checkpoint(path, tmp_path / "dense", 32, dense=True, method="exact")
    with FlexCheckpoint(path) as source, FlexCheckpoint(tmp_path / "dense") as out:
        key = expert_key(1, 1, "down_proj.weight")
        assert torch.allclose(out.get(key), source.get(key), atol=1e-6)


def test_checkpoint_bf16_dense_output(tmp_path):
    path = make_tiny_flexolmo(tmp_path, ["math"], dtype=torch.bfloat16)[0]
    compress_checkpoint(path, tmp_path / "dense", 8, dense=True, layout="fused")
    model = FlexOlmoForCausalLM.from_pretrained(tmp_path / "dense")
    assert model.model.layers[0].mlp.experts.gate_up_proj.dtype == torch.bfloat16


def test_unshared_dispatch_same_output(mixture):
    model = compress_model(mixture, "expert1=2,expert2=full,expert3=6")
    shared = _logits(model)
    for layer in model.model.layers:
        layer.mlp.experts.share_base_projections = False
    assert torch.allclose(_logits(model), shared, atol=1e-6)


def test_export_dense_equals_factorised(tmp_path):
    from provex.moe.lowrank import materialise_checkpoint

    path = make_tiny_flexolmo(tmp_path, ["math"])[0]
    compress_checkpoint(path, tmp_path / "fact", 3)
    materialise_checkpoint(tmp_path / "fact", tmp_path / "dense")
    factorised = AutoModelForCausalLM.from_pretrained(tmp_path / "fact").eval()
    dense = FlexOlmoForCausalLM.from_pretrained(tmp_path / "dense").eval()
    assert torch.allclose(_logits(factorised), _logits(dense), atol=1e-5)


# Runs in a child process so that neither provex nor its Auto registration is loaded.
DENSE_LOADER = """
import sys
import torch
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
assert not any(name.startswith("provex") for name in sys.modules)
with torch.no_grad():
    logits = model(torch.tensor([[3, 17, 42, 99, 5, 64, 7, 120]])).logits
torch.save(logits, sys.argv[2])
"""


def test_dense_export_loads_without_provex(tmp_path):
    import subprocess
    import sys

    from provex.moe.lowrank import materialise_checkpoint

    path = make_tiny_flexolmo(tmp_path, ["math"])[0]
    compress_checkpoint(path, tmp_path / "fact", 3)
    materialise_checkpoint(tmp_path / "fact", tmp_path / "dense")
    logits_file = tmp_path / "logits.pt"
    command = [sys.executable, "-c", DENSE_LOADER, str(tmp_path / "dense")]
    result = subprocess.run(
        [*command, str(logits_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    factorised = AutoModelForCausalLM.from_pretrained(tmp_path / "fact").eval()
    expected = _logits(factorised, TOKENS[:1])
    assert torch.allclose(torch.load(logits_file), expected, atol=1e-5)


def test_rank_sweep_decomposes_once(mixture):
    from provex.moe.lowrank import DecompositionCache

    cache = DecompositionCache(compute_rank=32)
    for rank in (1, 2, 4, 8, 16, 32):
        compress_model(mixture, rank, cache=cache)
    assert cache.misses == 18  # 3 domain experts x 2 layers x 3 projections
    assert cache.hits == 5 * 18
