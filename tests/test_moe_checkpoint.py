"""FlexOlmo checkpoints on disk: layouts, sharded writes, merge, opt-out, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest
import torch
from transformers import FlexOlmoForCausalLM

from provex.moe.checkpoint import (
    CheckpointError,
    FlexCheckpoint,
    OutputInterrupted,
    TensorPlan,
    atomic_output_dir,
    convert_layout,
    expert_key,
    merge_checkpoints,
    remove_experts,
    router_key,
    write_sharded,
)
from provex.moe.lowrank import compress_checkpoint
from provex.moe.testing import make_tiny_flexolmo

TOKENS = torch.tensor([[3, 17, 42, 99, 5, 64, 7, 120]])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    paths = make_tiny_flexolmo(root, ["math", "code", "news"])
    return root, paths


def _logits(path) -> torch.Tensor:
    model = FlexOlmoForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        return model(TOKENS).logits


def test_reader_detects_per_expert(tiny):
    _, paths = tiny
    with FlexCheckpoint(paths[0]) as ckpt:
        assert ckpt.layout == "per_expert"
        assert ckpt.num_experts == 2


def test_layout_round_trip(tiny, tmp_path):
    _, paths = tiny
    convert_layout(paths[0], tmp_path / "fused", "fused")
    convert_layout(tmp_path / "fused", tmp_path / "back", "per_expert")
    with FlexCheckpoint(paths[0]) as a, FlexCheckpoint(tmp_path / "back") as b:
        assert a.tensor_keys() == b.tensor_keys()
        for key in a.tensor_keys():
            assert torch.equal(a.get(key), b.get(key)), key


def test_fused_layout_keys(tiny, tmp_path):
    _, paths = tiny
    convert_layout(paths[0], tmp_path / "fused", "fused")
    with FlexCheckpoint(tmp_path / "fused") as ckpt:
        assert ckpt.layout == "fused"
        gate = ckpt.get(expert_key(0, 1, "gate_proj.weight"))
    header_keys = json.loads(
        (tmp_path / "fused" / "model.safetensors")
        .read_bytes()[8:][:4000]
        .split(b"}}")[0]
        + b"}}"
    )
    assert "model.layers.0.mlp.experts.gate_up_proj" in str(header_keys)
    assert gate.shape == (48, 32)


def test_fused_layout_loads_in_transformers(tiny, tmp_path):
    _, paths = tiny
    convert_layout(paths[0], tmp_path / "fused", "fused")
    assert torch.equal(_logits(tmp_path / "fused"), _logits(paths[0]))


def test_sharded_write_index(tmp_path):
    plans = [
        TensorPlan(
            f"t{i}", (256,), torch.float32, lambda i=i: torch.full((256,), float(i))
        )
        for i in range(5)
    ]
    files = write_sharded(tmp_path, plans, max_shard_bytes=2048)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(files) == 3
    assert index["metadata"]["total_size"] == 5 * 1024
    assert index["weight_map"]["t4"] == "model-00003-of-00003.safetensors"


def test_sharded_write_readable(tmp_path):
    from safetensors.torch import load_file

    plans = [
        TensorPlan(
            "a", (2, 3), torch.bfloat16, lambda: torch.ones(2, 3, dtype=torch.bfloat16)
        )
    ]
    write_sharded(tmp_path, plans)
    assert torch.equal(
        load_file(tmp_path / "model.safetensors")["a"],
        torch.ones(2, 3, dtype=torch.bfloat16),
    )


def test_atomic_dir_removed_on_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "half.bin").write_text("x")
        raise RuntimeError("interrupted")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_removed_on_sigterm(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputInterrupted), atomic_output_dir(out) as tmp:
        (tmp / "half.bin").write_text("x")
        os.kill(os.getpid(), signal.SIGTERM)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_restores_sigterm_handler(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with atomic_output_dir(tmp_path / "out"):
        pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_merge_router_rows_in_order(tiny, tmp_path):
    _, paths = tiny
    merge_checkpoints(paths, tmp_path / "merged")
    with FlexCheckpoint(tmp_path / "merged") as merged:
        rows = merged.get(router_key(1))
        for index, path in enumerate(paths, start=1):
            with FlexCheckpoint(path) as source:
                assert torch.equal(rows[index], source.get(router_key(1))[1])
        assert merged.expert_names == ["public", "math", "code", "news"]


def test_merge_copies_domain_experts(tiny, tmp_path):
    _, paths = tiny
    merge_checkpoints(paths, tmp_path / "merged")
    with (
        FlexCheckpoint(tmp_path / "merged") as merged,
        FlexCheckpoint(paths[1]) as code,
    ):
        key = expert_key(0, 1, "down_proj.weight")
        assert torch.equal(
            merged.get(expert_key(0, 2, "down_proj.weight")), code.get(key)
        )


def test_merge_sets_top_k(tiny, tmp_path):
    _, paths = tiny
    merge_checkpoints(paths, tmp_path / "merged", num_experts_per_tok=2)
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["num_experts"] == 4
    assert config["num_experts_per_tok"] == 2


def test_merge_masked_equals_two_expert(tiny, tmp_path):
    from provex.moe.modeling import opt_out

    _, paths = tiny
    merge_checkpoints(paths, tmp_path / "merged")
    model = FlexOlmoForCausalLM.from_pretrained(tmp_path / "merged").eval()
    masked = opt_out(model, ["code", "news"])
    with torch.no_grad():
        logits = masked(TOKENS).logits
    assert torch.allclose(logits, _logits(paths[0]), atol=1e-5)


def test_merge_compressed_inputs(tiny, tmp_path):
    from provex.moe.modeling import FlexMoreForCausalLM

    _, paths = tiny
    compress_checkpoint(paths[0], tmp_path / "math-r4", 4)
    compress_checkpoint(paths[1], tmp_path / "code-r8", 8)
    sources = [tmp_path / "math-r4", tmp_path / "code-r8", paths[2]]
    merge_checkpoints(sources, tmp_path / "merged", names=["math", "code", "news"])
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["expert_ranks"] == [0, 4, 8, 0]
    model = FlexMoreForCausalLM.from_pretrained(tmp_path / "merged").eval()
    model.set_opted_out(["code", "news"])
    two_expert = FlexMoreForCausalLM.from_pretrained(tmp_path / "math-r4").eval()
    with torch.no_grad():
        logits = model(TOKENS).logits
        expected = two_expert(TOKENS).logits
    assert torch.allclose(logits, expected, atol=1e-5)


def test_merge_mixed_layouts(tiny, tmp_path):
    _, paths = tiny
    convert_layout(paths[1], tmp_path / "code-fused", "fused")
    merge_checkpoints(
        [paths[0], tmp_path / "code-fused"], tmp_path / "merged", names=["math", "code"]
    )
    with FlexCheckpoint(tmp_path / "merged") as merged:
        assert merged.num_experts == 3


def test_merge_rejects_other_public(tiny, tmp_path):
    _, paths = tiny
    other = make_tiny_flexolmo(tmp_path / "other", ["poetry"], seed=5)[0]
    with pytest.raises(CheckpointError, match="differ in"):
        merge_checkpoints([paths[0], other], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_rejects_perturbed_public_expert(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    _, paths = tiny
    bad = tmp_path / "bad"
    shutil.copytree(paths[1], bad)
    tensors = load_file(bad / "model.safetensors")
    tensors[expert_key(1, 0, "up_proj.weight")][0, 0] += 1e-3
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="the public expert"):
        merge_checkpoints([paths[0], bad], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_rejects_config_mismatch(tiny, tmp_path):
    _, paths = tiny
    other = make_tiny_flexolmo(tmp_path / "wide", ["poetry"], hidden_size=64)[0]
    with pytest.raises(CheckpointError, match="hidden_size"):
        merge_checkpoints([paths[0], other], tmp_path / "merged")


def test_not_flexolmo_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(CheckpointError, match="model_type 'qwen2'"):
        FlexCheckpoint(tmp_path)


def test_missing_config_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        FlexCheckpoint(tmp_path)


def test_missing_shard_rejected(tiny, tmp_path):
    _, paths = tiny
    sharded = tmp_path / "sharded"
    with FlexCheckpoint(paths[0]) as ckpt:
        from provex.moe.checkpoint import copy_plan

        sharded.mkdir()
        write_sharded(
            sharded,
            [copy_plan(ckpt, k) for k in ckpt.tensor_keys()],
            max_shard_bytes=20_000,
        )
        (sharded / "config.json").write_text(json.dumps(ckpt.config))
    shards = sorted(sharded.glob("model-*.safetensors"))
    shards[1].unlink()
    with pytest.raises(CheckpointError, match=f"shard {shards[1].name} .* is missing"):
        compress_checkpoint(sharded, tmp_path / "out", 4)
    assert not (tmp_path / "out").exists()


def test_truncated_shard_rejected(tiny, tmp_path):
    _, paths = tiny
    bad = tmp_path / "bad"
    shutil.copytree(paths[0], bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        compress_checkpoint(bad, tmp_path / "out", 4)
    assert not (tmp_path / "out").exists()


def test_unknown_expert_rejected(tiny, tmp_path):
    _, paths = tiny
    with pytest.raises(ValueError, match="unknown expert 'poetry'"):
        compress_checkpoint(paths[0], tmp_path / "out", "poetry=4")
    assert not (tmp_path / "out").exists()


def test_expert_typo_suggests_name(tiny, tmp_path):
    _, paths = tiny
    with pytest.raises(ValueError, match="did you mean 'math'"):
        compress_checkpoint(paths[0], tmp_path / "out", "mth=4")


def test_rank_too_large_rejected(tiny, tmp_path):
    _, paths = tiny
    with pytest.raises(ValueError, match="maximum is min.rows, cols. = 32"):
        compress_checkpoint(paths[0], tmp_path / "out", 33)
    assert not (tmp_path / "out").exists()


def test_existing_output_rejected(tiny, tmp_path):
    _, paths = tiny
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        compress_checkpoint(paths[0], tmp_path / "out", 4)


def test_remove_equals_mask(tiny, tmp_path):
    from provex.moe.modeling import opt_out

    _, paths = tiny
    merge_checkpoints(paths, tmp_path / "merged", num_experts_per_tok=3)
    remove_experts(tmp_path / "merged", tmp_path / "removed", ["code"])
    model = FlexOlmoForCausalLM.from_pretrained(tmp_path / "merged").eval()
    masked = opt_out(model, ["code"])
    with torch.no_grad():
        logits = masked(TOKENS).logits
    assert torch.allclose(logits, _logits(tmp_path / "removed"), atol=1e-6)


def test_remove_updates_config(tiny, tmp_path):
    _, paths = tiny
    merge_checkpoints(paths, tmp_path / "merged")
    remove_experts(tmp_path / "merged", tmp_path / "removed", ["news", "math"])
    config = json.loads((tmp_path / "removed" / "config.json").read_text())
    assert config["expert_names"] == ["public", "code"]
    assert config["num_experts_per_tok"] == 2


def test_names_from_directory(tiny):
    _, paths = tiny
    with FlexCheckpoint(paths[1]) as ckpt:
        assert ckpt.expert_names == ["public", "code"]


def test_compress_by_domain_name(tiny, tmp_path):
    _, paths = tiny
    report = compress_checkpoint(paths[0], tmp_path / "out", "math=4")
    assert report.ranks == {"math": 4}
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["expert_names"] == ["public", "math"]


def test_report_full_rank_error_near_zero(tiny, tmp_path):
    _, paths = tiny
    report = compress_checkpoint(paths[0], tmp_path / "r32", 32, method="exact")
    errors = [matrix.relative_error for matrix in report.matrices]
    assert len(errors) == 6
    # The float32 energy formula alone reports about 5e-4 here.
    assert max(errors) < 1e-5


def test_stale_partial_removed(tmp_path):
    stale = tmp_path / ".out.partial-999999999"
    stale.mkdir()
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "config.json").write_text("{}")
    assert not stale.exists()
    assert (tmp_path / "out" / "config.json").exists()


def test_get_row_range(tiny, tmp_path):
    _, paths = tiny
    convert_layout(paths[0], tmp_path / "fused", "fused")
    key = expert_key(1, 1, "up_proj.weight")
    with FlexCheckpoint(paths[0]) as plain, FlexCheckpoint(tmp_path / "fused") as fused:
        assert torch.equal(plain.get(key, (2, 5)), plain.get(key)[2:5])
        assert torch.equal(fused.get(key, (2, 5)), plain.get(key)[2:5])


def test_row_chunks_cover_tensor(tiny):
    _, paths = tiny
    with FlexCheckpoint(paths[0]) as ckpt:
        key = "model.embed_tokens.weight"
        chunks = list(ckpt.iter_row_chunks(key, max_bytes=1000))
        assert len(chunks) == 19  # 128 rows of 128 bytes, 7 rows per 1000-byte chunk
        assert torch.equal(torch.cat(chunks), ckpt.get(key))
