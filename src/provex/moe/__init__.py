"""FlexMoRE: FlexOlmo mixtures whose domain experts are low-rank adapters.

Importing this package registers ``FlexMoreConfig`` / ``FlexMoreForCausalLM``
(``model_type="flex_more"``) with transformers' ``AutoConfig`` and
``AutoModelForCausalLM``. ``import provex`` alone does not import torch.

Modules:

- :mod:`provex.moe.checkpoint`: read/write FlexOlmo checkpoints in both layouts, merge,
  opt-out by removal, streaming sharded writes, atomic output directories.
- :mod:`provex.moe.lowrank`: truncated SVD of expert deltas, the decomposition cache,
  rank parsing, checkpoint-to-checkpoint compression with a per-matrix report.
- :mod:`provex.moe.configuration`, :mod:`provex.moe.layers`, :mod:`provex.moe.modeling`:
  the FlexMoRE config, MoE layer maths and model, and in-memory model surgery.
- :mod:`provex.moe.params`: exact parameter counts from a config.
- :mod:`provex.moe.testing`: tiny random FlexOlmo checkpoints sharing a public expert.

Main entry points (all importable from ``provex.moe``)::

    compress_checkpoint(src, out, ranks, dense=False, method="auto", cache=None,
                        layout="per_expert", max_shard_bytes=5 GiB, overwrite=False,
                        progress=False, device="cpu") -> CompressReport
        # ranks: "math=64,code=16" | 64 | {"math": 64, "code": "full"}. Names come from
        # config.expert_names (written by merge), else for a 2-expert checkpoint from
        # its directory (Flex-math-2x7B-1T: public, math), else public, expert1, ...
        # cache: DecompositionCache or a directory path, reused across calls.
        # device="cuda" runs the SVDs on a GPU (not covered by the tests).
    materialise_checkpoint(src, out, layout="per_expert") -> Path
        # factorised FlexMoRE checkpoint -> dense FlexOlmo checkpoint (W_base + B A).
    compress_model(model, ranks, dense=False, method="auto", cache=None,
                   expert_names=None) -> FlexMoreForCausalLM | FlexOlmoForCausalLM
        # in memory; model is a transformers FlexOlmoForCausalLM (2 or N experts).
    DecompositionCache(directory=None, compute_rank=None, max_memory_entries=None,
                       device="cpu")
        # set compute_rank to the largest rank of a sweep: one SVD per matrix.
        # directory=None keeps every entry in memory; a directory persists them.
    merge_checkpoints(sources, out, names=None, num_experts_per_tok=None,
                      overwrite=False, progress=False) -> Path
    remove_experts(src, out, experts) -> Path          # opt-out by removal
    FlexMoreForCausalLM.set_opted_out(experts)         # opt-out by router mask
    opt_out(model, experts) -> FlexMoreForCausalLM
    FlexMoreForCausalLM.from_flexolmo(model) / .to_flexolmo()
    convert_layout(src, out, layout="per_expert" | "fused") -> Path
    count_parameters(config_or_dir_or_preset, ranks=None) -> ParamCount
        # .total, .active, .components, .per_expert
    count_model_parameters(model) -> int
    make_tiny_flexolmo(out_dir, domains=("math", "code"), seed=0, delta_scale=0.5,
                       layout="per_expert", **config_overrides) -> list[Path]
    tiny_flexolmo_config(num_experts=2, **overrides) -> FlexOlmoConfig
"""

from provex.moe.checkpoint import (
    CheckpointError,
    FlexCheckpoint,
    convert_layout,
    merge_checkpoints,
    remove_experts,
)
from provex.moe.configuration import FlexMoreConfig
from provex.moe.lowrank import (
    CompressReport,
    Decomposition,
    DecompositionCache,
    compress_checkpoint,
    decompose,
    materialise_checkpoint,
    parse_ranks,
)
from provex.moe.modeling import (
    FlexMoreForCausalLM,
    FlexMoreModel,
    compress_model,
    flexolmo_state_dict,
    opt_out,
    register_auto_classes,
)
from provex.moe.params import ParamCount, count_model_parameters, count_parameters
from provex.moe.testing import make_tiny_flexolmo, tiny_flexolmo_config

register_auto_classes()

__all__ = [
    "CheckpointError",
    "CompressReport",
    "Decomposition",
    "DecompositionCache",
    "FlexCheckpoint",
    "FlexMoreConfig",
    "FlexMoreForCausalLM",
    "FlexMoreModel",
    "ParamCount",
    "compress_checkpoint",
    "compress_model",
    "convert_layout",
    "count_model_parameters",
    "count_parameters",
    "decompose",
    "flexolmo_state_dict",
    "make_tiny_flexolmo",
    "materialise_checkpoint",
    "merge_checkpoints",
    "opt_out",
    "parse_ranks",
    "register_auto_classes",
    "remove_experts",
    "tiny_flexolmo_config",
]
