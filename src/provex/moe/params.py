"""Exact parameter counts of FlexOlmo and FlexMoRE models from a config alone.

Per layer: attention ``4 H^2`` (MHA; ``2 H (H + KV)`` in general) plus q/k norms over
the full projected width, two post-norms ``2 H``, a router ``E H``, ``3 H I`` per dense
expert and ``r (2 H + 2 I) + r (I + H) = 3 r (H + I)`` per rank-r adapter. Outside the
layers: the embedding ``V H``, an untied ``lm_head`` ``V H`` and the final norm ``H``.
For OLMo-2-7B dimensions this gives 7,298,617,344 (dense), 11,627,401,216 (2x7B),
33,270,665,216 (FlexOlmo-7x7B) and ``7,299,534,848 + 1,449,984 * sum(r)`` for a 7-expert
FlexMoRE with one dense public expert.

"Active" parameters are those one token can touch: everything outside the experts plus
the largest union of ``num_experts_per_tok`` experts' parameters, where an adapter also
touches its base expert's weights.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OLMO2_7B = {
    "vocab_size": 100352,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "tie_word_embeddings": False,
}

# Expert order of the FlexMoRE 7-expert mixtures: public first, then the six domains.
SEVEN_EXPERT_NAMES = ["public", "code", "creative", "math", "news", "pes2o", "reddit"]

PRESETS: dict[str, dict[str, Any]] = {
    "olmo2-7b": {
        **OLMO2_7B,
        "num_experts": 1,
        "num_experts_per_tok": 1,
        "router": False,
    },
    "flexolmo-2x7b": {**OLMO2_7B, "num_experts": 2, "num_experts_per_tok": 2},
    "flexolmo-7x7b": {
        **OLMO2_7B,
        "num_experts": 7,
        "num_experts_per_tok": 5,
        "expert_names": SEVEN_EXPERT_NAMES,
    },
    "flexmore-7x7b": {
        **OLMO2_7B,
        "num_experts": 7,
        "num_experts_per_tok": 5,
        "model_type": "flex_more",
        "expert_names": SEVEN_EXPERT_NAMES,
    },
}


@dataclass
class ParamCount:
    """Parameter counts of one model configuration."""

    total: int
    active: int
    components: dict[str, int] = field(default_factory=dict)
    per_expert: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "active": self.active,
            "components": self.components,
            "per_expert": self.per_expert,
        }


def load_config(source: str | Path | Mapping[str, Any] | Any) -> dict[str, Any]:
    """Turn a preset name, a directory, a ``config.json`` path, a dict or a transformers
    config into a plain dict.

    Raises:
        ValueError: an unknown preset or a path without ``config.json``.
    """
    if hasattr(source, "to_dict"):
        return source.to_dict()
    if isinstance(source, Mapping):
        return dict(source)
    text = str(source)
    if text.lower() in PRESETS:
        return dict(PRESETS[text.lower()])
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    raise ValueError(
        f"{text!r} is neither a preset ({', '.join(PRESETS)}) nor a config.json or "
        "checkpoint directory"
    )


def count_parameters(
    config: str | Path | Mapping[str, Any] | Any,
    ranks: Sequence[int] | None = None,
) -> ParamCount:
    """Count parameters of a FlexOlmo / FlexMoRE config exactly.

    Args:
        config: preset name (``flexolmo-7x7b``, ``flexolmo-2x7b``, ``olmo2-7b``,
            ``flexmore-7x7b``), checkpoint directory, ``config.json`` path, dict or
            config object.
        ranks: per-expert ranks (0 = dense) overriding ``config.expert_ranks``.

    Returns:
        A :class:`ParamCount` with the total, the active count per token and a
        per-component breakdown.

    Example:
        >>> count_parameters("flexolmo-7x7b").total
        33270665216
        >>> count_parameters("flexmore-7x7b", ranks=[0, 1, 1, 1, 1, 1, 1]).total
        7308234752
    """
    cfg = load_config(config)
    _check_model_type(cfg)
    hidden = int(cfg["hidden_size"])
    inter = int(cfg["intermediate_size"])
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    vocab = int(cfg["vocab_size"])
    experts = int(cfg.get("num_experts", 1))
    top_k = int(cfg.get("num_experts_per_tok", experts))
    has_router = bool(cfg.get("router", cfg.get("model_type") != "olmo2"))
    bias = bool(cfg.get("attention_bias", False))
    ranks = (
        list(ranks)
        if ranks is not None
        else list(cfg.get("expert_ranks") or [0] * experts)
    )
    bases = list(cfg.get("expert_bases") or [0] * experts)
    if len(ranks) != experts:
        raise ValueError(f"got {len(ranks)} ranks for {experts} experts: {ranks}")

    q_out, kv_out = heads * head_dim, kv_heads * head_dim
    attention = hidden * q_out * 2 + hidden * kv_out * 2 + q_out + kv_out
    if bias:
        attention += q_out + 2 * kv_out + hidden  # q, k, v and o biases
    per_expert_layer = [
        3 * hidden * inter if r == 0 else 3 * r * (hidden + inter) for r in ranks
    ]
    components = {
        "embed_tokens": vocab * hidden,
        "lm_head": 0 if cfg.get("tie_word_embeddings", False) else vocab * hidden,
        "final_norm": hidden,
        "attention": layers * attention,
        "layer_norms": layers * 2 * hidden,
        "router": layers * experts * hidden if has_router else 0,
        "experts": layers * sum(per_expert_layer),
    }
    total = sum(components.values())
    per_expert = [layers * p for p in per_expert_layer]
    shared = total - components["experts"]
    return ParamCount(
        total,
        shared + _max_active_experts(per_expert, ranks, bases, top_k),
        components,
        per_expert,
    )


# Architectures the formula describes: OLMo-2 style decoders (post-norms, q/k norms
# over the full width) with a FlexOlmo MoE, a FlexMoRE MoE or one dense MLP.
COUNTED_MODEL_TYPES = ("flex_olmo", "flex_more", "olmo2")


def _check_model_type(cfg: Mapping[str, Any]) -> None:
    model_type = cfg.get("model_type")
    if model_type is None or model_type in COUNTED_MODEL_TYPES:
        return
    raise ValueError(
        f"cannot count parameters of model_type {model_type!r}: the formula covers "
        f"{', '.join(COUNTED_MODEL_TYPES)} (OLMo-2 layers with q/k norms and "
        "post-norms); pass a FlexOlmo or FlexMoRE checkpoint, or a preset "
        f"({', '.join(PRESETS)})"
    )


def _max_active_experts(
    per_expert: list[int], ranks: list[int], bases: list[int], top_k: int
) -> int:
    num = len(per_expert)
    top_k = min(top_k, num)

    def touched(chosen: Sequence[int]) -> int:
        used = set(chosen) | {bases[e] for e in chosen if ranks[e] > 0}
        return sum(per_expert[e] for e in used)

    if _combinations(num, top_k) <= 100_000:
        return max(touched(c) for c in itertools.combinations(range(num), top_k))
    # NOTE: greedy for very large mixtures; exact whenever all experts are dense.
    chosen: list[int] = []
    for _ in range(top_k):
        best = max(
            (e for e in range(num) if e not in chosen),
            key=lambda e: touched([*chosen, e]),
        )
        chosen.append(best)
    return touched(chosen)


def _combinations(n: int, k: int) -> int:
    import math

    return math.comb(n, k)


def count_model_parameters(model: Any) -> int:
    """``sum(p.numel())`` over a model's parameters, each shared tensor counted once."""
    seen = set()
    total = 0
    for param in model.parameters():
        if param.data_ptr() in seen:
            continue
        seen.add(param.data_ptr())
        total += param.numel()
    return total


def breakeven_rank(hidden: int, intermediate: int) -> float:
    """Return the rank above which an adapter has more parameters than a dense expert:
    ``H I / (H + I)`` (about 2985 for 4096 x 11008)."""
    return hidden * intermediate / (hidden + intermediate)
