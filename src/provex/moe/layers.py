"""The maths of one FlexMoRE MoE layer: experts, router and sparse dispatch.

A dense expert is a SwiGLU FFN ``down(silu(gate x) * up x)``. A low-rank expert of rank
r stores only adapter factors and computes, on top of its base (dense) expert's weights,

    g = W_g x + s B_g A_g x,   u = W_u x + s B_u A_u x,
    y = W_d h + s B_d A_d h,   with h = silu(g) * u and s = alpha / r,

which equals a dense expert with ``W = W_base + s B A`` in exact arithmetic. The base
weights are read from the base expert's modules at run time, never copied.

Dispatch groups the routed experts by base. The base's gate and up projections of a
token are computed once and reused by every expert of that group the token is routed
to. A token routed to the public expert and k-1 of its adapters therefore pays for one
dense ``gate``/``up`` product, not k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.flex_olmo.modeling_flex_olmo import FlexOlmoTopKRouter

from provex.moe.configuration import FlexMoreConfig

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


class FlexMoreExpert(nn.Module):
    """One expert: dense (``rank == 0``) or a rank-r adapter on a base expert.

    Dense parameters: ``gate_proj``/``up_proj`` ``[I, H]``, ``down_proj`` ``[H, I]``.
    Adapter parameters: ``{gate,up}_proj_a [r, H]``, ``{gate,up}_proj_b [I, r]``,
    ``down_proj_a [r, I]``, ``down_proj_b [H, r]`` (the keys of the FlexMoRE format).
    """

    def __init__(self, config: FlexMoreConfig, rank: int, alpha: float) -> None:
        super().__init__()
        hidden, inter = config.hidden_size, config.intermediate_size
        self.rank = rank
        self.scaling = alpha / rank if rank else 1.0
        shapes = {
            "gate_proj": (hidden, inter),
            "up_proj": (hidden, inter),
            "down_proj": (inter, hidden),
        }
        for name, (fan_in, fan_out) in shapes.items():
            if rank == 0:
                setattr(self, name, nn.Linear(fan_in, fan_out, bias=False))
            else:
                setattr(self, f"{name}_a", nn.Linear(fan_in, rank, bias=False))
                setattr(self, f"{name}_b", nn.Linear(rank, fan_out, bias=False))

    @property
    def is_dense(self) -> bool:
        return self.rank == 0

    def adapter(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Scaled adapter output ``s B (A x)`` of one projection (low-rank experts)."""
        a: nn.Linear = getattr(self, f"{name}_a")
        b: nn.Linear = getattr(self, f"{name}_b")
        return b(a(x)) * self.scaling

    def delta_weight(self, name: str) -> torch.Tensor:
        """Materialised ``s B A`` of one projection, ``[out, in]``."""
        a: nn.Linear = getattr(self, f"{name}_a")
        b: nn.Linear = getattr(self, f"{name}_b")
        return (b.weight.float() @ a.weight.float()) * self.scaling


class FlexMoreExperts(nn.ModuleList):
    """All experts of one layer (``mlp.experts.{i}``) with grouped sparse dispatch."""

    def __init__(self, config: FlexMoreConfig) -> None:
        super().__init__(
            FlexMoreExpert(config, rank, alpha)
            for rank, alpha in zip(
                config.expert_ranks, config.expert_alphas, strict=True
            )
        )
        self.bases = list(config.expert_bases)
        # False runs every routed expert on its own, as the reference implementation
        # does (base gate/up recomputed per adapter); kept for benchmarks and tests.
        self.share_base_projections = True
        # Kept out of the module registry so that len(self) counts experts only.
        object.__setattr__(self, "act_fn", ACT2FN[config.hidden_act])

    def base_of(self, index: int) -> FlexMoreExpert:
        """Return the dense expert whose weights expert ``index`` uses."""
        expert = self[index]
        return expert if expert.is_dense else self[self.bases[index]]

    def dense_weight(self, index: int, name: str) -> torch.Tensor:
        """Effective dense weight of one projection: base weight plus ``s B A``."""
        base = self.base_of(index)
        weight = getattr(base, name).weight
        if self[index].is_dense:
            return weight
        return (weight.float() + self[index].delta_weight(name)).to(weight.dtype)

    def forward(
        self,
        hidden_states: torch.Tensor,
        top_k_index: torch.Tensor,
        top_k_weights: torch.Tensor,
    ) -> torch.Tensor:
        """Mix the routed experts' outputs.

        Args:
            hidden_states: ``[T, H]`` tokens.
            top_k_index: ``[T, k]`` selected experts.
            top_k_weights: ``[T, k]`` their router probabilities.

        Returns:
            ``[T, H]`` weighted sum of the selected experts' outputs.
        """
        output = torch.zeros_like(hidden_states)
        num_experts = len(self)
        with torch.no_grad():
            # routed[e, slot, t] is 1 when token t chose expert e in that slot.
            routed = F.one_hot(top_k_index, num_classes=num_experts)  # [T, k, E]
            routed = routed.permute(2, 1, 0)  # [E, k, T]
            hit = routed.sum(dim=(1, 2)).nonzero().flatten().tolist()
        groups: dict[int, tuple[int, list[int]]] = {}
        for index in hit:
            base = index if self[index].is_dense else self.bases[index]
            key = base if self.share_base_projections else index
            groups.setdefault(key, (base, []))[1].append(index)
        for base, members in groups.values():
            self._run_group(hidden_states, routed, top_k_weights, base, members, output)
        return output

    def _run_group(
        self,
        hidden_states: torch.Tensor,
        routed: torch.Tensor,
        top_k_weights: torch.Tensor,
        base_index: int,
        members: list[int],
        output: torch.Tensor,
    ) -> None:
        base = self[base_index]
        # For each member: (slot, token) index tensors of the tokens routed to it.
        positions = {index: torch.where(routed[index]) for index in members}
        if len(members) == 1:
            tokens = positions[members[0]][1]
        else:
            tokens = torch.cat([token for _, token in positions.values()]).unique()
        shared_x = hidden_states[tokens]
        # [U, I] base products of the U distinct tokens, shared by all members.
        gate_all = base.gate_proj(shared_x)
        up_all = base.up_proj(shared_x)
        row_of = torch.full(
            (hidden_states.shape[0],), -1, dtype=torch.long, device=tokens.device
        )
        row_of[tokens] = torch.arange(tokens.numel(), device=tokens.device)

        for index in members:
            slot, token = positions[index]
            rows = row_of[token]
            expert = self[index]
            gate, up = gate_all[rows], up_all[rows]
            if not expert.is_dense:
                x = hidden_states[token]
                gate = gate + expert.adapter("gate_proj", x)
                up = up + expert.adapter("up_proj", x)
            hidden = self.act_fn(gate) * up
            out = base.down_proj(hidden)
            if not expert.is_dense:
                out = out + expert.adapter("down_proj", hidden)
            out = out * top_k_weights[token, slot, None]
            output.index_add_(0, token, out.to(output.dtype))


class FlexMoreTopKRouter(FlexOlmoTopKRouter):
    """FlexOlmo's router (fp32 softmax, top-k, optional renormalisation) with an opt-out
    mask: the logits of ``opted_out`` experts are set to -inf before the softmax."""

    def __init__(self, config: FlexMoreConfig) -> None:
        super().__init__(config)
        self.opted_out = list(config.opted_out_experts)

    def forward(
        self, hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        router_logits = F.linear(hidden_states, self.weight)  # [T, E]
        masked = router_logits
        if self.opted_out:
            mask = torch.zeros(
                self.num_experts, dtype=torch.bool, device=router_logits.device
            )
            mask[self.opted_out] = True
            masked = router_logits.masked_fill(mask, float("-inf"))
        router_probs = F.softmax(masked, dtype=torch.float, dim=-1)
        top_k = min(self.top_k, self.num_experts - len(self.opted_out))
        top_value, top_index = torch.topk(router_probs, top_k, dim=-1)  # [T, k]
        if self.norm_topk_prob:
            top_value /= top_value.sum(dim=-1, keepdim=True)
        return router_logits, top_value.to(router_logits.dtype), top_index


class FlexMoreSparseMoeBlock(nn.Module):
    """Router plus experts of one decoder layer (``mlp.gate``, ``mlp.experts``)."""

    def __init__(self, config: FlexMoreConfig) -> None:
        super().__init__()
        self.gate = FlexMoreTopKRouter(config)
        self.experts = FlexMoreExperts(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = hidden_states.shape
        flat = hidden_states.view(-1, hidden)
        _, top_k_weights, top_k_index = self.gate(flat)
        return self.experts(flat, top_k_index, top_k_weights).reshape(
            batch, length, hidden
        )
