"""Training configuration: provex options plus TRL's own config, from YAML and flags.

A run is described by two dataclasses: ``ProvexArguments`` (model, data, prompt,
rewards, LoRA, resume) and TRL's ``GRPOConfig`` or ``SFTConfig`` (everything the
trainer itself takes). Both are filled the way TRL's scripts fill them: a YAML file
of flat ``key: value`` pairs gives the defaults, and flags such as
``--learning_rate 1e-5`` or ``--set learning_rate=1e-5`` override single keys.

``--config`` takes a path or the name of a preset shipped with provex
(``reference-grpo``, ``reference-sft``, ``cpu-gemma-grpo``, ...; see
``list_presets()``).

Example:
    >>> provex_args, grpo = parse_train_args(
    ...     ["--config", "reference-grpo", "--max_steps", "2"], mode="grpo"
    ... )  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ALL_PROJECTIONS = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
]


@dataclass
class ProvexArguments:
    """Options provex adds on top of TRL's trainer configuration."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "Model to train: hub id, local directory, prepared package name "
            "(gemma-3-270m) or tiny-random-qwen2."
        },
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "Weight dtype: auto (bfloat16 on GPU, float32 on CPU), float32, "
            "bfloat16 or float16."
        },
    )
    init_adapter: str | None = field(
        default=None,
        metadata={
            "help": "LoRA adapter directory merged into the model before training, "
            "e.g. the SFT result that GRPO starts from. It is also the KL reference."
        },
    )
    dataset: str = field(
        default="gsm8k-prolog",
        metadata={
            "help": "Training problems: a hub id, a local JSON/JSONL/Parquet file or "
            "dataset directory, or gsm8k-prolog (the reference split from the hub)."
        },
    )
    dataset_split: str = field(
        default="train",
        metadata={"help": "Split to train on (train, validation or test)."},
    )
    num_train_problems: int | None = field(
        default=None,
        metadata={"help": "Use only the first N problems of the split (all if unset)."},
    )
    system_prompt: str = field(
        default="struct",
        metadata={
            "help": "System prompt: base, struct, reflect, declare, or a text file."
        },
    )
    reward_preset: str | None = field(
        default="suite1",
        metadata={
            "help": "Reward preset: suite1, suite2 or suite3. Ignored when "
            "reward_funcs is given."
        },
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Explicit reward functions: xmlcount, soft_format, "
            "strict_format, syntax, correctness, semantic, structure, progressive, "
            "or module:function paths. Weights go in reward_weights."
        },
    )
    use_lora: bool = field(
        default=True, metadata={"help": "Train a LoRA adapter (False: all weights)."}
    )
    lora_r: int = field(default=32, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(ALL_PROJECTIONS),
        metadata={
            "help": "Module names LoRA wraps, or all-linear. Each must match at "
            "least one module of the model."
        },
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Prompt token limit. Unset: prompts are never cut. Set: see "
            "prompt_truncation."
        },
    )
    prompt_truncation: str = field(
        default="left",
        metadata={
            "help": "What happens to prompts over max_prompt_length: left (keep the "
            "last tokens, cutting the start of the system prompt), drop (leave the "
            "problem out) or error."
        },
    )
    resume: bool = field(
        default=False,
        metadata={"help": "Continue from the last checkpoint in output_dir."},
    )
    metrics_file: str = field(
        default="metrics.jsonl",
        metadata={"help": "Per-step metrics file, relative to output_dir."},
    )
    save_merged: bool = field(
        default=False,
        metadata={
            "help": "Also save base plus adapters merged into one model, in "
            "output_dir/merged (loadable by any tool as a local directory)."
        },
    )
    num_threads: int | None = field(
        default=None,
        metadata={"help": "torch CPU threads (unset: torch's default)."},
    )


MODES = ("grpo", "sft")


def presets_dir() -> Path:
    """Directory of the YAML presets shipped in the package."""
    return Path(str(resources.files("provex").joinpath("configs")))


def list_presets() -> dict[str, Path]:
    """Return ``{name: path}`` of the shipped training presets."""
    return {
        path.stem: path
        for path in sorted(presets_dir().glob("*.yaml"))
        if not path.stem.startswith("accelerate-")
    }


def accelerate_config(name: str) -> Path:
    """Path of a shipped ``accelerate launch`` config: zero2, zero3 or fsdp2."""
    path = presets_dir() / f"accelerate-{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"no accelerate config {name!r}; shipped: zero2, zero3, fsdp2"
        )
    return path


def resolve_config(name_or_path: str) -> Path:
    """Map ``--config`` to a file: an existing path, or a shipped preset name.

    Raises:
        FileNotFoundError: when neither exists; the message lists the presets.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    presets = list_presets()
    stem = name_or_path.removesuffix(".yaml")
    if stem in presets:
        return presets[stem]
    raise FileNotFoundError(
        f"config {name_or_path!r} is neither a file nor a preset; presets: "
        f"{', '.join(presets)}"
    )


def _trl_config_class(mode: str):
    if mode == "grpo":
        from trl import GRPOConfig

        return GRPOConfig
    if mode == "sft":
        from trl import SFTConfig

        return SFTConfig
    raise ValueError(f"unknown training mode {mode!r}; use one of {MODES}")


def expand_set_flags(args: list[str]) -> list[str]:
    """Turn ``--set key=value`` pairs into ``--key value``; other flags pass through."""
    out: list[str] = []
    items = iter(args)
    for item in items:
        if item == "--set":
            pair = next(items, None)
            if pair is None or "=" not in pair:
                raise ValueError(f"--set needs key=value, got {pair!r}")
            key, value = pair.split("=", 1)
            out += [f"--{key.strip().lstrip('-')}", value]
        elif item.startswith("--set="):
            key, value = item[len("--set=") :].split("=", 1)
            out += [f"--{key.strip()}", value]
        else:
            out.append(item)
    return out


def _known_keys(mode: str) -> set[str]:
    keys = {f.name for f in fields(ProvexArguments)}
    keys |= {f.name for f in fields(_trl_config_class(mode))}
    return keys


def _check_keys(keys: list[str], mode: str, where: str) -> None:
    known = _known_keys(mode)
    for key in keys:
        if key not in known and key != "env":
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown {mode} option {key!r} in {where}{hint} Options are the "
                f"fields of ProvexArguments and of TRL's {mode.upper()}Config."
            )


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a flat YAML mapping; ``inherit: other.yaml`` pulls in another first."""
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a YAML mapping of option: value")
    parent = data.pop("inherit", None)
    if parent:
        base = load_yaml(resolve_config(str(path.parent / parent)))
        base.update(data)
        data = base
    return data


def parse_train_args(
    argv: list[str], mode: str = "grpo"
) -> tuple[ProvexArguments, Any]:
    """Parse ``--config FILE`` plus flag overrides into the two dataclasses.

    Args:
        argv: command-line words after the command, e.g.
            ``["--config", "reference-grpo", "--learning_rate", "1e-5"]``.
        mode: ``grpo`` (returns a ``GRPOConfig``) or ``sft`` (an ``SFTConfig``).

    Returns:
        ``(ProvexArguments, trl_config)``.

    Raises:
        ValueError: for unknown options, with the closest known names.
    """
    from trl import TrlParser

    argv = expand_set_flags(list(argv))
    config: dict[str, Any] = {}
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise ValueError("--config needs a file or preset name")
        path = resolve_config(argv[index + 1])
        del argv[index : index + 2]
        config = load_yaml(path)
        _check_keys(list(config), mode, str(path))
    flag_keys = [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]
    _check_keys(flag_keys, mode, "the command line")
    if "output_dir" not in config and "--output_dir" not in argv:
        config["output_dir"] = f"runs/{mode}"
    given = set(config) | set(flag_keys)
    if not given & {"use_cpu", "bf16", "fp16"} and not _cuda_available():
        # TRL turns bf16 on by default, which needs a GPU; on a CPU-only machine
        # train on the CPU in float32 unless the config sets one of these keys.
        config.update(use_cpu=True, bf16=False)
    parser = TrlParser([ProvexArguments, _trl_config_class(mode)])
    env = config.pop("env", None)
    if env:
        import os

        for key, value in env.items():
            os.environ[key] = str(value)
    parser.set_defaults_with_config(**config)
    provex_args, trl_args = parser.parse_args_into_dataclasses(args=argv)
    if provex_args.model is None:
        raise ValueError(
            "no model given; pass --model (hub id, local directory, gemma-3-270m or "
            "tiny-random-qwen2) or set model: in the config file"
        )
    if provex_args.prompt_truncation not in ("left", "drop", "error"):
        raise ValueError(
            f"prompt_truncation={provex_args.prompt_truncation!r}; use left, drop or "
            "error"
        )
    return provex_args, trl_args


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def dump_config(provex_args: ProvexArguments, trl_args: Any, path: Path) -> None:
    """Write both configs as one flat YAML file (what the run really used)."""
    import yaml

    record: dict[str, Any] = {}
    for obj in (provex_args, trl_args):
        for f in fields(obj):
            value = getattr(obj, f.name)
            if hasattr(value, "value"):
                value = value.value
            if isinstance(value, (str, int, float, bool, type(None), list, dict)):
                record[f.name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(record, sort_keys=True))
