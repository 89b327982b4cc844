"""``FlexMoreConfig``: a FlexOlmo config with per-expert low-rank settings."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import FlexOlmoConfig


@strict
class FlexMoreConfig(FlexOlmoConfig):
    """Configuration of a FlexMoRE mixture: FlexOlmo plus per-expert ranks.

    Every FlexOlmo field keeps its meaning. The extra fields are lists of length
    ``num_experts``:

    - ``expert_ranks``: 0 for a dense expert, r > 0 for a rank-r adapter on its base.
    - ``expert_alphas``: adapter scale numerator, the adapter output is multiplied by
      ``alpha / r``; default ``alpha = r`` (scale 1.0).
    - ``expert_bases``: index of the dense expert an adapter adds its delta to
      (default 0, the public expert). A base must be a dense expert.
    - ``expert_names``: display names, used by ``provex moe`` commands (optional).
    - ``opted_out_experts``: indices whose router logits are masked to -inf, which gives
      the same outputs as removing those experts.
    """

    model_type = "flex_more"

    expert_ranks: list[int] | None = None
    expert_alphas: list[float] | None = None
    expert_bases: list[int] | None = None
    expert_names: list[str] | None = None
    opted_out_experts: list[int] | None = None

    def __post_init__(self, **kwargs):
        num = self.num_experts
        self.expert_ranks = (
            list(self.expert_ranks) if self.expert_ranks is not None else [0] * num
        )
        if self.expert_alphas is None:
            self.expert_alphas = [float(r or 1) for r in self.expert_ranks]
        self.expert_alphas = [float(a) for a in self.expert_alphas]
        self.expert_bases = (
            list(self.expert_bases) if self.expert_bases is not None else [0] * num
        )
        self.opted_out_experts = sorted(set(self.opted_out_experts or []))
        super().__post_init__(**kwargs)
        self._check_experts()

    def _check_experts(self) -> None:
        num = self.num_experts
        for name in ("expert_ranks", "expert_alphas", "expert_bases"):
            value = getattr(self, name)
            if len(value) != num:
                raise ValueError(
                    f"{name} has {len(value)} entries, expected num_experts = {num}: "
                    f"{value}"
                )
        if self.expert_names is not None and len(self.expert_names) != num:
            raise ValueError(
                f"expert_names has {len(self.expert_names)} entries, expected {num}"
            )
        limit = min(self.hidden_size, self.intermediate_size)
        for index, (rank, base) in enumerate(
            zip(self.expert_ranks, self.expert_bases, strict=True)
        ):
            if rank < 0 or rank > limit:
                raise ValueError(
                    f"expert {index} has rank {rank}; ranks must be 0 (dense) or in "
                    f"1..{limit} = min(hidden_size, intermediate_size)"
                )
            if rank > 0 and not (0 <= base < num and self.expert_ranks[base] == 0):
                raise ValueError(
                    f"expert {index} (rank {rank}) has base {base}, which is not a "
                    "dense "
                    "expert; every adapter must add to a dense (rank 0) expert"
                )
        for index in self.opted_out_experts:
            if not 0 <= index < num:
                raise ValueError(
                    f"opted_out_experts contains {index}, outside 0..{num - 1}"
                )
        if len(self.opted_out_experts) >= num:
            raise ValueError("opted_out_experts masks every expert; keep at least one")

    @property
    def expert_scalings(self) -> list[float]:
        """Adapter scale ``alpha / r`` per expert (1.0 for dense experts)."""
        return [
            a / r if r else 1.0
            for a, r in zip(self.expert_alphas, self.expert_ranks, strict=True)
        ]
