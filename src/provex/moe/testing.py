"""Tiny random FlexOlmo checkpoints for tests, examples and benchmarks.

:func:`make_tiny_flexolmo` writes 2-expert FlexOlmo checkpoints the way the released
``Flex-<domain>-2x7B-1T`` models are laid out: every checkpoint holds the same public
expert (index 0), router row 0 and shared weights, and its own domain expert (index 1)
and router row 1. Each domain expert is the public expert plus a delta with a decaying
spectrum, so truncation errors fall smoothly with rank.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import FlexOlmoConfig, FlexOlmoForCausalLM


def tiny_flexolmo_config(num_experts: int = 2, **overrides: Any) -> FlexOlmoConfig:
    """Build a FlexOlmo config for CPU tests: H=32, I=48, 2 layers, vocab 128.

    Keyword overrides replace any field, e.g. ``hidden_size=64``.
    """
    values: dict[str, Any] = {
        "vocab_size": 128,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128,
        "num_experts": num_experts,
        "num_experts_per_tok": num_experts,
        "pad_token_id": 1,
        "eos_token_id": 2,
        "bos_token_id": None,
    }
    values.update(overrides)
    return FlexOlmoConfig(**values)


def _decaying_delta(
    rows: int, cols: int, generator: torch.Generator, scale: float
) -> torch.Tensor:
    rank = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, rank, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(cols, rank, generator=generator))
    singular = scale * torch.tensor([0.8**i for i in range(rank)])
    return (u * singular) @ v.T  # [rows, cols] with singular values scale * 0.8**i


def make_tiny_flexolmo(
    out_dir: str | os.PathLike[str],
    domains: Sequence[str] = ("math", "code"),
    seed: int = 0,
    delta_scale: float = 0.5,
    layout: str = "per_expert",
    dtype: torch.dtype = torch.float32,
    **config_overrides: Any,
) -> list[Path]:
    """Write one 2-expert FlexOlmo checkpoint per domain, sharing the public model.

    Args:
        out_dir: parent directory of the ``Flex-<domain>-2x7B-1T`` checkpoint folders
            created (the name mimics the released models so merge can name experts).
        domains: domain names, one checkpoint each.
        seed: random seed of all weights.
        delta_scale: largest singular value of each expert-minus-public delta.
        layout: ``per_expert`` (what ``save_pretrained`` writes) or ``fused``.
        dtype: weight dtype on disk.
        **config_overrides: fields passed to :func:`tiny_flexolmo_config`.

    Returns:
        The checkpoint directories, in ``domains`` order.

    Example:
        >>> paths = make_tiny_flexolmo(tmp_path, ["math", "code"])  # doctest: +SKIP
    """
    from provex.moe.checkpoint import convert_layout

    out_dir = Path(out_dir)
    config = tiny_flexolmo_config(2, **config_overrides)
    torch.manual_seed(seed)
    public = FlexOlmoForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    paths = []
    for domain in domains:
        model = FlexOlmoForCausalLM(config).eval()
        model.load_state_dict(public.state_dict())
        with torch.no_grad():
            for layer in model.model.layers:
                experts, router = layer.mlp.experts, layer.mlp.gate
                experts.gate_up_proj[1] = experts.gate_up_proj[0]
                experts.down_proj[1] = experts.down_proj[0]
                inter, hidden = config.intermediate_size, config.hidden_size
                experts.gate_up_proj[1, :inter] += _decaying_delta(
                    inter, hidden, generator, delta_scale
                )
                experts.gate_up_proj[1, inter:] += _decaying_delta(
                    inter, hidden, generator, delta_scale
                )
                experts.down_proj[1] += _decaying_delta(
                    hidden, inter, generator, delta_scale
                )
                router.weight[1] = torch.randn(hidden, generator=generator) * 0.5
        path = out_dir / f"Flex-{domain}-2x7B-1T"
        model.to(dtype).save_pretrained(path)
        if layout == "fused":
            convert_layout(path, path, layout="fused", overwrite=True)
        paths.append(path)
    return paths
