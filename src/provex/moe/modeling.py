"""``FlexMoreForCausalLM`` and the surgery between FlexOlmo and FlexMoRE models.

The decoder reuses transformers' FlexOlmo attention, RMSNorm, rotary embedding and
decoder-layer forward (post-norm blocks, q/k norm over the full width). Only the MoE
block differs (:mod:`provex.moe.layers`). With every expert dense, a FlexMoRE model
computes what ``transformers.FlexOlmoForCausalLM`` computes.

Importing :mod:`provex.moe` registers ``flex_more`` with ``AutoConfig`` and
``AutoModelForCausalLM``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    FlexOlmoConfig,
    FlexOlmoForCausalLM,
)
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.flex_olmo.modeling_flex_olmo import (
    FlexOlmoAttention,
    FlexOlmoDecoderLayer,
    FlexOlmoModel,
    FlexOlmoPreTrainedModel,
    FlexOlmoRMSNorm,
    FlexOlmoRotaryEmbedding,
)
from transformers.utils.output_capturing import OutputRecorder

from provex.moe.checkpoint import default_expert_names, resolve_experts
from provex.moe.configuration import FlexMoreConfig
from provex.moe.layers import PROJECTIONS, FlexMoreSparseMoeBlock, FlexMoreTopKRouter
from provex.moe.lowrank import DecompositionCache, check_rank, parse_ranks

logger = logging.getLogger(__name__)


class FlexMoreDecoderLayer(FlexOlmoDecoderLayer):
    """FlexOlmo decoder layer (post-norm attention and MoE) with the FlexMoRE block."""

    def __init__(self, config: FlexMoreConfig, layer_idx: int) -> None:
        GradientCheckpointingLayer.__init__(self)
        self.hidden_size = config.hidden_size
        self.self_attn = FlexOlmoAttention(config=config, layer_idx=layer_idx)
        self.mlp = FlexMoreSparseMoeBlock(config)
        self.post_attention_layernorm = FlexOlmoRMSNorm(
            config.hidden_size, eps=config.rms_norm_eps
        )
        self.post_feedforward_layernorm = FlexOlmoRMSNorm(
            config.hidden_size, eps=config.rms_norm_eps
        )


class FlexMorePreTrainedModel(FlexOlmoPreTrainedModel):
    config: FlexMoreConfig
    config_class = FlexMoreConfig
    _no_split_modules = ["FlexMoreDecoderLayer"]
    _can_record_outputs = {
        "router_logits": OutputRecorder(FlexMoreTopKRouter, index=0),
        "hidden_states": FlexMoreDecoderLayer,
        "attentions": FlexOlmoAttention,
    }


class FlexMoreModel(FlexMorePreTrainedModel, FlexOlmoModel):
    """FlexOlmo decoder stack whose MoE layers hold dense and low-rank experts."""

    def __init__(self, config: FlexMoreConfig) -> None:
        FlexOlmoPreTrainedModel.__init__(self, config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.hidden_size, self.padding_idx
        )
        self.layers = nn.ModuleList(
            FlexMoreDecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = FlexOlmoRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = FlexOlmoRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()


class FlexMoreForCausalLM(FlexMorePreTrainedModel, FlexOlmoForCausalLM):
    """Causal LM over a FlexMoRE mixture; loads and saves with ``from_pretrained`` and
    ``save_pretrained`` (keys ``mlp.experts.{i}.{proj}`` and ``{proj}_a``/``{proj}_b``).

    Example:
        >>> import provex.moe  # registers the Auto classes  # doctest: +SKIP
        >>> AutoModelForCausalLM.from_pretrained("Flex-math-r64")  # doctest: +SKIP
    """

    def __init__(self, config: FlexMoreConfig) -> None:
        FlexOlmoPreTrainedModel.__init__(self, config)
        self.model = FlexMoreModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.router_aux_loss_coef = config.router_aux_loss_coef
        self.num_experts = config.num_experts
        self.num_experts_per_tok = config.num_experts_per_tok
        self.post_init()

    # -- opt-out

    def set_opted_out(self, experts: Sequence[str | int]) -> None:
        """Mask the router logits of these experts (names or indices).

        An empty list clears the mask. Masking gives the same outputs as removing the
        experts, see :func:`provex.moe.checkpoint.remove_experts`.
        """
        names = self.config.expert_names or default_expert_names(
            self.config.num_experts
        )
        indices = sorted(set(resolve_experts(experts, names)))
        if len(indices) >= self.config.num_experts:
            raise ValueError("cannot opt out every expert")
        self.config.opted_out_experts = indices
        for layer in self.model.layers:
            layer.mlp.gate.opted_out = list(indices)

    # -- conversions

    @classmethod
    def from_flexolmo(cls, model: FlexOlmoForCausalLM) -> FlexMoreForCausalLM:
        """Build an all-dense FlexMoRE model from a transformers FlexOlmo model."""
        config = flexmore_config_from(model.config)
        new = cls(config).to(model.dtype)
        state = flexolmo_state_dict(model)
        missing, unexpected = new.load_state_dict(state, strict=False)
        _check_load(missing, unexpected)
        return new.eval() if not model.training else new

    def to_flexolmo(self) -> FlexOlmoForCausalLM:
        """Return a dense ``FlexOlmoForCausalLM`` with ``W_base + s B A`` for adapters.

        Opted-out experts are kept (stock FlexOlmo has no router mask); remove them with
        :func:`provex.moe.checkpoint.remove_experts` after saving if needed.
        """
        fields = FlexOlmoConfig().to_dict().keys()
        values = {k: v for k, v in self.config.to_dict().items() if k in fields}
        values.pop("model_type", None)
        values.pop("transformers_version", None)
        values["architectures"] = ["FlexOlmoForCausalLM"]
        config = FlexOlmoConfig(**values)
        dense = FlexOlmoForCausalLM(config).to(self.dtype)
        state = {}
        for key, value in self.state_dict().items():
            if ".mlp.experts." not in key:
                state[key] = value
        inter = self.config.intermediate_size
        for index, layer in enumerate(self.model.layers):
            experts = layer.mlp.experts
            gate_up = torch.stack(
                [
                    torch.cat(
                        [
                            experts.dense_weight(e, "gate_proj"),
                            experts.dense_weight(e, "up_proj"),
                        ]
                    )
                    for e in range(len(experts))
                ]
            )
            prefix = f"model.layers.{index}.mlp.experts"
            state[f"{prefix}.gate_up_proj"] = gate_up
            state[f"{prefix}.down_proj"] = torch.stack(
                [experts.dense_weight(e, "down_proj") for e in range(len(experts))]
            )
            assert gate_up.shape[1] == 2 * inter
        missing, unexpected = dense.load_state_dict(state, strict=False)
        _check_load(missing, unexpected)
        return dense.eval() if not self.training else dense


def _check_load(missing: Sequence[str], unexpected: Sequence[str]) -> None:
    if missing or unexpected:
        raise RuntimeError(
            "weights do not match the model: "
            f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
        )


def flexmore_config_from(config: FlexOlmoConfig, **overrides) -> FlexMoreConfig:
    """Copy a FlexOlmo (or FlexMoRE) config into a ``FlexMoreConfig`` with overrides."""
    values = config.to_dict()
    for key in ("model_type", "transformers_version", "architectures"):
        values.pop(key, None)
    values.update(overrides)
    values["architectures"] = ["FlexMoreForCausalLM"]
    return FlexMoreConfig(**values)


def flexolmo_state_dict(model: FlexOlmoForCausalLM) -> dict[str, torch.Tensor]:
    """State dict of a transformers-5 FlexOlmo model in the per-expert key layout.

    Expert tensors are views into the fused parameters, not copies.
    """
    inter = model.config.intermediate_size
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("mlp.experts.gate_up_proj"):
            prefix = key.removesuffix("gate_up_proj")
            for e in range(value.shape[0]):
                state[f"{prefix}{e}.gate_proj.weight"] = value[e, :inter]
                state[f"{prefix}{e}.up_proj.weight"] = value[e, inter:]
        elif key.endswith("mlp.experts.down_proj"):
            prefix = key.removesuffix("down_proj")
            for e in range(value.shape[0]):
                state[f"{prefix}{e}.down_proj.weight"] = value[e]
        else:
            state[key] = value
    return state


def _expert_state(
    model: FlexOlmoForCausalLM | FlexMoreForCausalLM,
) -> tuple[dict[str, torch.Tensor], list[int]]:
    if isinstance(model, FlexMoreForCausalLM):
        return model.state_dict(), list(model.config.expert_ranks)
    return flexolmo_state_dict(model), [0] * model.config.num_experts


def compress_model(
    model: FlexOlmoForCausalLM | FlexMoreForCausalLM,
    ranks: str | int | Mapping[str, int | str | None],
    dense: bool = False,
    method: str = "auto",
    cache: DecompositionCache | None = None,
    expert_names: Sequence[str] | None = None,
) -> FlexMoreForCausalLM | FlexOlmoForCausalLM:
    """Convert an in-memory FlexOlmo model's domain experts to rank-r adapters.

    The input model is not changed. Each adapter's delta is taken against the public
    expert (index 0).

    Args:
        model: a transformers ``FlexOlmoForCausalLM`` or an all-dense FlexMoRE model.
        ranks: per-expert ranks: ``"math=64,code=16"``, ``64`` or ``{"expert1": 8}``;
            ``full`` keeps an expert dense.
        dense: return a dense ``FlexOlmoForCausalLM`` with ``W_public + B A`` instead.
        method: SVD method, ``auto``, ``exact`` or ``randomized``.
        cache: decomposition cache to reuse across calls (a rank sweep); default: a new
            in-memory cache.
        expert_names: names for ``ranks``; default ``config.expert_names`` or
            ``public, expert1, ...``.

    Returns:
        A ``FlexMoreForCausalLM`` (factorised) or a ``FlexOlmoForCausalLM`` (dense).

    Example:
        >>> cache = DecompositionCache(compute_rank=64)  # doctest: +SKIP
        >>> for r in (1, 4, 16, 64):  # doctest: +SKIP
        ...     small = compress_model(flexolmo, r, cache=cache)
    """
    cache = cache or DecompositionCache()
    state, source_ranks = _expert_state(model)
    num = model.config.num_experts
    names = list(
        expert_names
        or getattr(model.config, "expert_names", None)
        or default_expert_names(num)
    )
    resolved = parse_ranks(ranks, names)
    hidden, inter = model.config.hidden_size, model.config.intermediate_size
    for index, rank in resolved.items():
        if source_ranks[index] != 0:
            raise ValueError(
                f"expert {names[index]!r} is already low-rank; compress the dense model"
            )
        if rank is not None:
            check_rank(
                rank, inter, hidden, label=f"projections of expert {names[index]!r}"
            )

    expert_ranks = [resolved.get(e) or 0 for e in range(num)]
    config = flexmore_config_from(
        model.config,
        expert_ranks=expert_ranks,
        expert_alphas=[float(r or 1) for r in expert_ranks],
        expert_bases=[0] * num,
        expert_names=names,
    )
    new_state = {}
    for key, value in state.items():
        parts = key.split(".")
        if ".mlp.experts." not in key or expert_ranks[int(parts[5])] == 0:
            new_state[key] = value
            continue
        layer, expert, proj = int(parts[2]), int(parts[5]), parts[6]
        public = state[f"model.layers.{layer}.mlp.experts.0.{proj}.weight"]
        delta = value.float() - public.float()
        B, A = cache.get(delta, expert_ranks[expert], method).factors(
            expert_ranks[expert]
        )
        prefix = key.removesuffix(f"{proj}.weight")
        new_state[f"{prefix}{proj}_a.weight"] = A.to(value.dtype)
        new_state[f"{prefix}{proj}_b.weight"] = B.to(value.dtype)

    with torch.device("meta"):
        new = FlexMoreForCausalLM(config)
    new.load_state_dict(new_state, strict=True, assign=True)
    _restore_buffers(new)
    new = new.to(model.dtype)
    new.train(model.training)
    return new.to_flexolmo() if dense else new


def _restore_buffers(model: FlexMoreForCausalLM) -> None:
    rotary = model.model.rotary_emb
    fresh = FlexOlmoRotaryEmbedding(config=model.config)
    rotary.inv_freq = fresh.inv_freq
    rotary.original_inv_freq = fresh.original_inv_freq


def opt_out(
    model: FlexMoreForCausalLM | FlexOlmoForCausalLM, experts: Sequence[str | int]
) -> FlexMoreForCausalLM:
    """Return a FlexMoRE model whose router masks ``experts`` (names or indices).

    A transformers FlexOlmo model is first converted (all experts dense); a FlexMoRE
    model is changed in place and returned.
    """
    if not isinstance(model, FlexMoreForCausalLM):
        model = FlexMoreForCausalLM.from_flexolmo(model)
    model.set_opted_out(experts)
    return model


def register_auto_classes() -> None:
    """Register ``flex_more`` with ``AutoConfig`` and ``AutoModelForCausalLM``."""
    AutoConfig.register("flex_more", FlexMoreConfig, exist_ok=True)
    AutoModelForCausalLM.register(FlexMoreConfig, FlexMoreForCausalLM, exist_ok=True)


__all__ = [
    "PROJECTIONS",
    "FlexMoreForCausalLM",
    "FlexMoreModel",
    "compress_model",
    "flexmore_config_from",
    "flexolmo_state_dict",
    "opt_out",
    "register_auto_classes",
]
