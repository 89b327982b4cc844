"""SFT and GRPO training with Prolog rewards, on TRL and PEFT.

API summary:

- ``parse_train_args(argv, mode)``: ``--config FILE|PRESET`` plus overrides
  (``--learning_rate 1e-5``, ``--set beta=0.04``) into ``(ProvexArguments,
  GRPOConfig | SFTConfig)``.
- ``run_grpo(args, config)`` and ``run_sft(args, config)``: train, checkpoint every
  ``save_steps``, resume with ``args.resume``, write per-step metrics to
  ``output_dir/metrics.jsonl`` and save the final adapter in ``output_dir``.
- ``prepare_grpo`` and ``prepare_sft``: every check and load, without training.
- ``list_presets()``: the YAML presets shipped with provex.
- ``plot_run(run_dir)``: reward curves to PNG.
"""

from provex.prolog.train.common import TrainingSetupError, TrainResult
from provex.prolog.train.config import (
    ProvexArguments,
    list_presets,
    parse_train_args,
)
from provex.prolog.train.inputs import TrainingDataError


def run_grpo(*args, **kwargs):
    """See ``provex.prolog.train.grpo.run_grpo``."""
    from provex.prolog.train.grpo import run_grpo as impl

    return impl(*args, **kwargs)


def run_sft(*args, **kwargs):
    """See ``provex.prolog.train.sft.run_sft``."""
    from provex.prolog.train.sft import run_sft as impl

    return impl(*args, **kwargs)


def plot_run(*args, **kwargs):
    """See ``provex.prolog.train.plot.plot_run``."""
    from provex.prolog.train.plot import plot_run as impl

    return impl(*args, **kwargs)


__all__ = [
    "ProvexArguments",
    "TrainResult",
    "TrainingDataError",
    "TrainingSetupError",
    "list_presets",
    "parse_train_args",
    "plot_run",
    "run_grpo",
    "run_sft",
]
