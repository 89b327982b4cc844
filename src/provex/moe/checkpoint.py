"""FlexOlmo and FlexMoRE checkpoints on disk: read, write, convert layouts, merge.

Two transformers layouts exist for the same FlexOlmo weights:

- ``per_expert`` (transformers 4.57, and what transformers 5.x writes on save):
  ``model.layers.{l}.mlp.experts.{e}.{gate,up,down}_proj.weight``.
- ``fused`` (the in-memory layout of transformers 5.x): ``mlp.experts.gate_up_proj``
  of shape ``[E, 2I, H]`` (gate rows first, then up rows) and ``mlp.experts.down_proj``
  of shape ``[E, H, I]``.

:class:`FlexCheckpoint` reads either layout through one *logical* per-expert view, one
tensor (or one expert's slice of a fused tensor) at a time, so memory does not grow with
the checkpoint's size. :func:`write_sharded` streams tensors into safetensors shards
without holding a shard in memory. Every command that writes a checkpoint goes through
:func:`atomic_output_dir`, so an interrupted run leaves no partial directory behind.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import math
import os
import re
import shutil
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
SINGLE_WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3
PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
FLEX_MODEL_TYPES = ("flex_olmo", "flex_more")

# Config keys that may differ between inputs that are otherwise the same model.
_CONFIG_KEYS_ALLOWED_TO_DIFFER = {
    "num_experts",
    "num_experts_per_tok",
    "expert_names",
    "expert_ranks",
    "expert_alphas",
    "expert_bases",
    "opted_out_experts",
    "architectures",
    "model_type",
    "_name_or_path",
    "transformers_version",
    "dtype",
    "torch_dtype",
}

_EXPERT_KEY = re.compile(
    r"^(?P<prefix>.*\.mlp\.experts)\.(?P<expert>\d+)\.(?P<rest>.+)$"
)
_FUSED_KEY = re.compile(
    r"^(?P<prefix>.*\.mlp\.experts)\.(?P<proj>gate_up_proj|down_proj)$"
)
_ROUTER_KEY = re.compile(r"^.*\.mlp\.gate\.weight$")
_LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.")


class CheckpointError(ValueError):
    """Raised when a checkpoint is missing, corrupt, or not the expected kind."""


def expert_key(layer: int, expert: int, name: str) -> str:
    """Return a per-expert key: ``model.layers.{layer}.mlp.experts.{expert}.{name}``.

    Args:
        layer: decoder layer index.
        expert: expert index (0 is the public expert).
        name: module and parameter name below the expert, e.g. ``gate_proj.weight``.
    """
    return f"model.layers.{layer}.mlp.experts.{expert}.{name}"


def router_key(layer: int) -> str:
    """Return the router weight key of one layer (shape ``[E, H]``)."""
    return f"model.layers.{layer}.mlp.gate.weight"


def parse_expert_key(key: str) -> tuple[str, int, str] | None:
    """Split a per-expert key into ``(prefix, expert index, rest)``, or None."""
    match = _EXPERT_KEY.match(key)
    if match is None:
        return None
    return match["prefix"], int(match["expert"]), match["rest"]


def is_router_key(key: str) -> bool:
    """Return whether ``key`` names a router weight ``mlp.gate.weight``."""
    return _ROUTER_KEY.match(key) is not None


# --------------------------------------------------------------------------- reading


class FlexCheckpoint:
    """Read-only view of a FlexOlmo or FlexMoRE checkpoint directory.

    Tensors are read lazily, one at a time, with positioned file reads into fresh
    memory (no memory map, so resident memory does not grow with the files). Keys are
    exposed in the per-expert (transformers 4.57) form whatever the layout on disk,
    so a fused ``gate_up_proj [E, 2I, H]`` appears as ``experts.{e}.gate_proj.weight``
    and ``experts.{e}.up_proj.weight``, each read as a slice of one expert.

    Args:
        path: checkpoint directory with ``config.json`` and safetensors weights, or a
            hub id such as ``allenai/Flex-math-2x7B-1T`` (downloaded to the hub cache).

    Raises:
        CheckpointError: the directory, config or a shard is missing or corrupt, or the
            model type is not ``flex_olmo`` / ``flex_more``.

    Example:
        >>> with FlexCheckpoint("Flex-math-2x7B-1T") as ckpt:  # doctest: +SKIP
        ...     w = ckpt.get(expert_key(0, 1, "gate_proj.weight"))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = resolve_checkpoint(path)
        self.config = read_config(self.path)
        model_type = self.config.get("model_type")
        if model_type not in FLEX_MODEL_TYPES:
            raise CheckpointError(
                f"{self.path} is not a FlexOlmo checkpoint: config.json has model_type "
                f"{model_type!r}, expected one of {FLEX_MODEL_TYPES}. Pass a directory "
                "saved from FlexOlmoForCausalLM (for example "
                "allenai/Flex-math-2x7B-1T)."
            )
        self._weight_map = _read_weight_map(self.path)
        self._offsets: dict[str, int] = {}
        self._shapes: dict[str, list[int]] = {}
        self._dtypes: dict[str, str] = {}
        self._read_headers()
        self.layout = (
            "fused" if any(_FUSED_KEY.match(k) for k in self._shapes) else "per_expert"
        )
        self._logical = self._build_logical_view()

    # -- properties from the config

    @property
    def model_type(self) -> str:
        return str(self.config["model_type"])

    @property
    def num_experts(self) -> int:
        return int(self.config["num_experts"])

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def intermediate_size(self) -> int:
        return int(self.config["intermediate_size"])

    @property
    def expert_ranks(self) -> list[int]:
        ranks = self.config.get("expert_ranks")
        return list(ranks) if ranks else [0] * self.num_experts

    @property
    def expert_names(self) -> list[str]:
        """Names of the experts: ``config.expert_names``; else, for a 2-expert
        checkpoint, ``public`` and the domain in the directory name
        (``Flex-math-2x7B-1T`` gives ``math``); else ``public, expert1, ...``."""
        names = self.config.get("expert_names")
        if names and len(names) == self.num_experts:
            return list(names)
        if self.num_experts == 2:
            return ["public", domain_name_from_path(self.path.resolve())]
        return default_expert_names(self.num_experts)

    # -- tensor access

    def tensor_keys(self) -> list[str]:
        """Logical (per-expert layout) tensor names, sorted."""
        return sorted(self._logical)

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of a logical tensor without reading it."""
        return tuple(self._lookup(key)[2])

    def dtype(self, key: str) -> torch.dtype:
        """Torch dtype of a logical tensor without reading it."""
        return _torch_dtype(self._dtypes[self._lookup(key)[0]])

    def get(self, key: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Read one logical tensor (for a fused layout, one expert's slice).

        The tensor is read into fresh memory, so it does not alias the file and may be
        changed in place.

        Args:
            key: logical tensor name.
            rows: optional ``(start, stop)`` range of the first dimension to read.
        """
        import torch

        stored, index, shape = self._lookup(key)
        dtype = _torch_dtype(self._dtypes[stored])
        element = torch.empty((), dtype=dtype).element_size()
        row_bytes = math.prod(shape[1:]) * element
        start = self._offsets[stored]
        if index is not None:
            # One expert's rows of a [E, rows, cols] tensor are contiguous on disk.
            expert, (first, _) = index
            full_rows = self._shapes[stored][1]
            start += (expert * full_rows + first) * row_bytes
        if rows is not None:
            start += rows[0] * row_bytes
            shape = [rows[1] - rows[0], *shape[1:]]
        tensor = torch.empty(shape, dtype=dtype)
        buffer = tensor.reshape(-1).view(torch.uint8).numpy()
        with open(self.path / self._weight_map[stored], "rb") as handle:
            handle.seek(start)
            count = handle.readinto(buffer)
        if count != buffer.nbytes:
            raise CheckpointError(
                f"failed to read tensor {stored!r} from "
                f"{self.path / self._weight_map[stored]}: got {count} of "
                f"{buffer.nbytes} bytes. The shard is truncated; download or convert "
                "it again."
            )
        return tensor

    def iter_row_chunks(
        self, key: str, max_bytes: int = 64 * 2**20
    ) -> Iterator[torch.Tensor]:
        """Read a tensor in blocks of whole rows of at most ``max_bytes`` (at least one
        row), so comparing two large tensors needs little memory."""
        shape = self.shape(key)
        if len(shape) < 2:
            yield self.get(key)
            return
        row_bytes = max(1, self.get(key, (0, 1)).nbytes)
        step = max(1, max_bytes // row_bytes)
        for first in range(0, shape[0], step):
            yield self.get(key, (first, min(first + step, shape[0])))

    def expert(self, layer: int, expert: int) -> dict[str, torch.Tensor]:
        """Read one dense expert: ``{"gate_proj": [I, H], "up_proj": [I, H],
        "down_proj": [H, I]}``."""
        return {
            p: self.get(expert_key(layer, expert, f"{p}.weight")) for p in PROJECTIONS
        }

    def close(self) -> None:
        """Kept for the context-manager protocol; files are opened per read."""

    def __enter__(self) -> FlexCheckpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals

    def _read_headers(self) -> None:
        for shard in sorted(set(self._weight_map.values())):
            file = self.path / shard
            header = read_safetensors_header(file)
            with open(file, "rb") as handle:
                data_start = 8 + int.from_bytes(handle.read(8), "little")
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                self._shapes[name] = list(info["shape"])
                self._dtypes[name] = info["dtype"]
                self._offsets[name] = data_start + info["data_offsets"][0]
        missing = [k for k in self._weight_map if k not in self._shapes]
        if missing:
            raise CheckpointError(
                f"{self.path}: the index lists {len(missing)} tensors that no shard "
                f"contains, e.g. {missing[0]!r}. The checkpoint is incomplete."
            )

    def _build_logical_view(self) -> dict[str, tuple[str, Any, list[int]]]:
        view: dict[str, tuple[str, Any, list[int]]] = {}
        inter = self.intermediate_size
        for name, shape in self._shapes.items():
            match = _FUSED_KEY.match(name)
            if match is None:
                view[name] = (name, None, shape)
                continue
            prefix = match["prefix"]
            num_experts, rows, cols = shape
            for e in range(num_experts):
                if match["proj"] == "down_proj":
                    view[f"{prefix}.{e}.down_proj.weight"] = (
                        name,
                        (e, (0, rows)),
                        [rows, cols],
                    )
                else:
                    view[f"{prefix}.{e}.gate_proj.weight"] = (
                        name,
                        (e, (0, inter)),
                        [inter, cols],
                    )
                    view[f"{prefix}.{e}.up_proj.weight"] = (
                        name,
                        (e, (inter, 2 * inter)),
                        [inter, cols],
                    )
        return view

    def _lookup(self, key: str) -> tuple[str, Any, list[int]]:
        try:
            return self._logical[key]
        except KeyError:
            raise KeyError(f"{self.path} has no tensor {key!r}") from None


def default_expert_names(num_experts: int) -> list[str]:
    """Return ``["public", "expert1", ...]`` for a checkpoint without expert names."""
    return ["public"] + [f"expert{i}" for i in range(1, num_experts)]


_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Return a local checkpoint directory for ``path``, downloading a hub id.

    A path that exists locally is returned as it is. A string shaped like a hub id
    (``owner/name``) that is not a local path is fetched with
    ``huggingface_hub.snapshot_download`` (config, tokenizer and safetensors files).
    Anything else is returned unchanged, so ``read_config`` reports it as missing.
    """
    local = Path(path)
    if local.exists() or not _HUB_ID.match(str(path)):
        return local
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            str(path), allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]
        )
    except Exception as error:  # the hub client raises many types when offline
        raise CheckpointError(
            f"checkpoint {path} is neither a local directory nor downloadable from "
            f"the hub ({type(error).__name__}: {error}). Download it first, e.g. "
            f"`hf download {path} --local-dir DIR`, and pass DIR."
        ) from error
    return Path(folder)


def read_config(path: Path) -> dict[str, Any]:
    """Read ``config.json`` of a checkpoint directory, with clear errors."""
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint directory {path} not found; pass the directory that holds "
            "config.json and the *.safetensors files"
        )
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(
            f"{path} has no {CONFIG_NAME}, so it is not a transformers checkpoint; "
            "pass the directory that holds config.json and the *.safetensors files"
        )
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_file} is not valid JSON: {error}") from error


def _read_weight_map(path: Path) -> dict[str, str]:
    index_file = path / INDEX_NAME
    if index_file.is_file():
        try:
            weight_map = json.loads(index_file.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as error:
            raise CheckpointError(
                f"{index_file} is not a valid safetensors index: {error}"
            ) from error
    elif (path / SINGLE_WEIGHTS_NAME).is_file():
        header = read_safetensors_header(path / SINGLE_WEIGHTS_NAME)
        weight_map = {k: SINGLE_WEIGHTS_NAME for k in header if k != "__metadata__"}
    else:
        raise CheckpointError(
            f"{path} has neither {INDEX_NAME} nor {SINGLE_WEIGHTS_NAME}; only "
            "safetensors "
            "checkpoints are supported (re-save with "
            "save_pretrained(safe_serialization=True))"
        )
    missing = sorted({s for s in weight_map.values() if not (path / s).is_file()})
    if missing:
        raise CheckpointError(
            f"{path}: shard {missing[0]} listed in {INDEX_NAME} is missing "
            f"({len(missing)} missing in all); download the complete checkpoint"
        )
    return weight_map


def read_safetensors_header(file: Path) -> dict[str, Any]:
    """Read and validate the JSON header of a safetensors file without loading data.

    Raises:
        CheckpointError: the file is truncated, its header is not valid JSON, or the
            data section is shorter than the header claims.
    """
    size = file.stat().st_size
    with open(file, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(
                f"{file} is corrupt: shorter than a safetensors header; download or "
                "write it again"
            )
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise CheckpointError(
                f"{file} is corrupt: header length {header_len} exceeds the file; "
                "download or write it again"
            )
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(
                f"{file} is corrupt: invalid header ({error}); download or write it "
                "again"
            ) from error
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        first, last = info["data_offsets"]
        width = _DTYPE_BYTES.get(info["dtype"], 0)
        if width and last - first != width * math.prod(info["shape"]):
            raise CheckpointError(
                f"{file} is corrupt: tensor {name!r} of shape {info['shape']} spans "
                f"{last - first} bytes in the header"
            )
        end = max(end, last)
    if 8 + header_len + end > size:
        raise CheckpointError(
            f"{file} is corrupt: the header describes {end} data bytes but the file "
            "holds "
            f"{size - 8 - header_len}; the download was probably interrupted"
        )
    return header


# --------------------------------------------------------------------------- writing

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2}
_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, _SAFETENSORS_DTYPES[name])


def _safetensors_dtype(dtype: torch.dtype) -> str:
    names = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
    return names[str(dtype).removeprefix("torch.")]


@dataclass
class TensorPlan:
    """One output tensor: its name, shape, dtype and a function that produces it."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    produce: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        import math

        import torch

        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def write_sharded(
    out_dir: Path,
    plan: Sequence[TensorPlan],
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    progress: bool = False,
    description: str = "writing tensors",
) -> list[Path]:
    """Stream tensors into safetensors shards with a transformers index file.

    Each shard's header is written first from the plan's shapes and dtypes, then every
    tensor is produced, written and dropped in turn, so peak memory is one tensor plus
    whatever ``produce`` needs, not one shard.

    Args:
        out_dir: existing directory to write into.
        plan: output tensors in the order they are written.
        max_shard_bytes: size limit of one shard in bytes (a larger tensor gets its
            own shard).
        progress: show a tqdm progress bar.
        description: label of the progress bar.

    Returns:
        Paths of the written shard files.
    """
    from tqdm.auto import tqdm

    shards: list[list[TensorPlan]] = [[]]
    size = 0
    for item in plan:
        if shards[-1] and size + item.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += item.nbytes
    count = len(shards)
    names = (
        [SINGLE_WEIGHTS_NAME]
        if count == 1
        else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
    )

    bar = tqdm(total=len(plan), desc=description, disable=not progress, unit="tensor")
    weight_map: dict[str, str] = {}
    paths = []
    for shard_name, items in zip(names, shards, strict=True):
        _write_one_shard(out_dir / shard_name, items, bar)
        weight_map.update({item.name: shard_name for item in items})
        paths.append(out_dir / shard_name)
    bar.close()

    if count > 1:
        total = sum(item.nbytes for item in plan)
        index = {
            "metadata": {"total_size": total},
            "weight_map": dict(sorted(weight_map.items())),
        }
        (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return paths


def _write_one_shard(file: Path, items: Sequence[TensorPlan], bar: Any) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for item in items:
        header[item.name] = {
            "dtype": _safetensors_dtype(item.dtype),
            "shape": list(item.shape),
            "data_offsets": [offset, offset + item.nbytes],
        }
        offset += item.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned
    with open(file, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for item in items:
            tensor = item.produce()
            if tuple(tensor.shape) != tuple(item.shape) or tensor.dtype != item.dtype:
                raise RuntimeError(
                    f"tensor {item.name} has shape {tuple(tensor.shape)} and dtype "
                    f"{tensor.dtype}, planned {item.shape} and {item.dtype}"
                )
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            handle.write(flat.view(_uint8()).numpy().data)
            del tensor, flat
            bar.update(1)


def _uint8() -> torch.dtype:
    import torch

    return torch.uint8


@contextlib.contextmanager
def atomic_output_dir(
    out: str | os.PathLike[str], overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary directory beside ``out`` and rename it to ``out`` on success.

    On any exception, Ctrl-C or SIGTERM the temporary directory is removed, so ``out``
    either does not exist or is complete. SIGTERM is turned into
    :class:`OutputInterrupted` while the block runs (main thread only, because Python
    delivers signals there). SIGKILL cannot be caught: its partial directory is
    deleted by the next run that writes to the same ``out``.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        OutputInterrupted: the process received SIGTERM while writing.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"output directory {out} already exists; choose another path, or "
            "replace it with --overwrite (overwrite=True in Python)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with _sigterm_as_exception():
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


class OutputInterrupted(Exception):
    """The process received SIGTERM while writing an output directory."""


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise OutputInterrupted(f"interrupted by signal {signum}; nothing was written")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_stale_partials(out: Path) -> None:
    """Delete temporary directories of killed runs (their process no longer exists)."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            logger.info("removing %s left by an interrupted run", stale)
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            continue


def write_config(out_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` with sorted keys, as transformers does."""
    (out_dir / CONFIG_NAME).write_text(
        json.dumps(config, indent=2, sort_keys=True) + "\n"
    )


def copy_side_files(src: Path, out_dir: Path) -> None:
    """Copy tokenizer and generation files (not weights or config) to the output."""
    skip = {CONFIG_NAME, INDEX_NAME}
    for file in src.iterdir():
        if (
            file.is_file()
            and file.name not in skip
            and not file.name.endswith(".safetensors")
        ):
            if file.suffix in {".bin", ".pt", ".pth", ".pkl"}:
                continue
            shutil.copy2(file, out_dir / file.name)


def copy_plan(ckpt: FlexCheckpoint, key: str, name: str | None = None) -> TensorPlan:
    """Plan that copies one logical tensor of ``ckpt`` (optionally under a new name)."""
    return TensorPlan(
        name or key, ckpt.shape(key), ckpt.dtype(key), lambda: ckpt.get(key)
    )


def fuse_expert_plans(
    plans: Sequence[TensorPlan], num_experts: int
) -> list[TensorPlan]:
    """Rewrite per-expert dense plans into the fused transformers 5.x layout.

    ``experts.{e}.gate_proj``/``up_proj`` become ``experts.gate_up_proj [E, 2I, H]`` and
    ``experts.{e}.down_proj`` becomes ``experts.down_proj [E, H, I]``. Only dense
    experts can be fused, so FlexMoRE factor keys raise an error.
    """
    import torch

    by_name = {p.name: p for p in plans}
    out: list[TensorPlan] = []
    fused_prefixes: list[str] = []
    for plan in plans:
        parsed = parse_expert_key(plan.name)
        if parsed is None:
            out.append(plan)
            continue
        prefix, _, rest = parsed
        if rest not in {f"{p}.weight" for p in PROJECTIONS}:
            raise CheckpointError(
                "only dense experts can be written in the fused layout, found "
                f"{plan.name}"
            )
        if prefix not in fused_prefixes:
            fused_prefixes.append(prefix)

    for prefix in fused_prefixes:
        gates = [by_name[f"{prefix}.{e}.gate_proj.weight"] for e in range(num_experts)]
        ups = [by_name[f"{prefix}.{e}.up_proj.weight"] for e in range(num_experts)]
        downs = [by_name[f"{prefix}.{e}.down_proj.weight"] for e in range(num_experts)]
        inter, hidden = gates[0].shape

        def gate_up(gates=gates, ups=ups) -> torch.Tensor:
            return torch.stack(
                [
                    torch.cat([g.produce(), u.produce()])
                    for g, u in zip(gates, ups, strict=True)
                ]
            )

        def down(downs=downs) -> torch.Tensor:
            return torch.stack([d.produce() for d in downs])

        out.append(
            TensorPlan(
                f"{prefix}.gate_up_proj",
                (num_experts, 2 * inter, hidden),
                gates[0].dtype,
                gate_up,
            )
        )
        out.append(
            TensorPlan(
                f"{prefix}.down_proj",
                (num_experts, hidden, inter),
                downs[0].dtype,
                down,
            )
        )
    return sorted(out, key=lambda p: p.name)


def convert_layout(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    layout: str = "per_expert",
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Rewrite a FlexOlmo checkpoint in the ``per_expert`` (4.57) or ``fused`` layout.

    Args:
        src: input checkpoint directory (either layout).
        out: output directory, written atomically.
        layout: ``"per_expert"`` or ``"fused"``.
        max_shard_bytes: shard size limit in bytes.
        overwrite: replace ``out`` if it exists.
        progress: show a progress bar.

    Returns:
        The output directory.
    """
    if layout not in ("per_expert", "fused"):
        raise ValueError(f"unknown layout {layout!r}; use 'per_expert' or 'fused'")
    with FlexCheckpoint(src) as ckpt:
        plans = [copy_plan(ckpt, key) for key in ckpt.tensor_keys()]
        if layout == "fused":
            plans = fuse_expert_plans(plans, ckpt.num_experts)
        with atomic_output_dir(out, overwrite) as tmp:
            write_sharded(tmp, plans, max_shard_bytes, progress, "converting layout")
            write_config(tmp, ckpt.config)
            copy_side_files(ckpt.path, tmp)
    return Path(out)


# --------------------------------------------------------------------------- merging


def domain_name_from_path(path: Path) -> str:
    """Guess a domain name from a directory: ``Flex-math-2x7B-1T`` gives ``math``."""
    match = re.match(r"^Flex-([A-Za-z0-9_]+)-\d+x\d+B", path.name)
    return match[1] if match else path.name


def merge_checkpoints(
    sources: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    num_experts_per_tok: int | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Merge FlexOlmo/FlexMoRE checkpoints that share a public expert into one mixture.

    Each input holds the public expert at index 0 and one or more domain experts (the
    released ``Flex-<domain>-2x7B-1T`` models hold one). The output has the public
    expert first, then every input's domain experts in input order. Router rows are
    concatenated the same way. Before anything is written, every input's public expert,
    router row 0 and shared weights (attention, norms, embeddings, ``lm_head``) are
    checked to be bit-identical to the first input's.

    Args:
        sources: input checkpoint directories.
        out: output directory, written atomically.
        names: one name per domain expert of the output; default: each input's
            ``expert_names`` from its config, or a name guessed from the directory.
        num_experts_per_tok: top-k of the output; default: all experts.
        max_shard_bytes: shard size limit in bytes.
        overwrite: replace ``out`` if it exists.
        progress: show progress bars.

    Returns:
        The output directory.

    Raises:
        CheckpointError: an input is not FlexOlmo, the inputs differ in architecture, or
            a public expert, router row 0 or shared weight differs.
    """
    if not sources:
        raise ValueError("merge needs at least one input checkpoint")
    with contextlib.ExitStack() as stack:
        ckpts = [stack.enter_context(FlexCheckpoint(s)) for s in sources]
        _check_same_architecture(ckpts)
        _check_identical_shared(ckpts, progress)
        config, plans = _merged_plan(ckpts, names, num_experts_per_tok)
        with atomic_output_dir(out, overwrite) as tmp:
            write_sharded(tmp, plans, max_shard_bytes, progress, "merging")
            write_config(tmp, config)
            copy_side_files(ckpts[0].path, tmp)
    logger.info(
        "merged %d checkpoints into %s (%d experts)",
        len(sources),
        out,
        config["num_experts"],
    )
    return Path(out)


def _check_same_architecture(ckpts: Sequence[FlexCheckpoint]) -> None:
    first = ckpts[0]
    for ckpt in ckpts:
        if ckpt.num_experts < 2:
            raise CheckpointError(
                f"{ckpt.path} has {ckpt.num_experts} expert; merge needs a public and "
                "a domain expert"
            )
        if ckpt.expert_ranks[0] != 0 or any(
            b != 0 for b in ckpt.config.get("expert_bases") or []
        ):
            raise CheckpointError(
                f"{ckpt.path}: the public expert must be dense and the base of all "
                "experts"
            )
        for key in sorted(set(first.config) | set(ckpt.config)):
            if key in _CONFIG_KEYS_ALLOWED_TO_DIFFER:
                continue
            if first.config.get(key) != ckpt.config.get(key):
                raise CheckpointError(
                    f"{ckpt.path} differs from {first.path} in config {key!r}: "
                    f"{ckpt.config.get(key)!r} != {first.config.get(key)!r}; only "
                    "checkpoints "
                    "of the same base model can be merged"
                )


def _shared_keys(ckpt: FlexCheckpoint) -> list[str]:
    keys = []
    for key in ckpt.tensor_keys():
        parsed = parse_expert_key(key)
        if parsed is None or parsed[1] == 0:
            keys.append(key)
    return keys


def _check_identical_shared(ckpts: Sequence[FlexCheckpoint], progress: bool) -> None:
    import torch
    from tqdm.auto import tqdm

    first = ckpts[0]
    reference_keys = _shared_keys(first)
    for ckpt in ckpts[1:]:
        keys = _shared_keys(ckpt)
        if keys != reference_keys:
            extra = sorted(set(keys) ^ set(reference_keys))
            raise CheckpointError(
                f"{ckpt.path} and {first.path} have different shared tensors, e.g. "
                f"{extra[0]!r}"
            )
        for key in tqdm(
            keys, desc=f"checking {ckpt.path.name}", disable=not progress, unit="tensor"
        ):
            if is_router_key(key):
                part = "router row 0 (the public expert's row)"
                same = torch.equal(first.get(key, (0, 1)), ckpt.get(key, (0, 1)))
            else:
                is_expert = parse_expert_key(key) is not None
                part = "the public expert" if is_expert else "a shared weight"
                same = _same_tensor(first, ckpt, key)
            if not same:
                raise CheckpointError(
                    f"{ckpt.path} and {first.path} differ in {part} {key!r}; all "
                    "inputs must be trained from the same public model with the "
                    "public expert frozen"
                )


def _same_tensor(a: FlexCheckpoint, b: FlexCheckpoint, key: str) -> bool:
    import torch

    if a.shape(key) != b.shape(key) or a.dtype(key) != b.dtype(key):
        return False
    chunks = zip(a.iter_row_chunks(key), b.iter_row_chunks(key), strict=True)
    return all(torch.equal(x, y) for x, y in chunks)


def _merged_plan(
    ckpts: Sequence[FlexCheckpoint],
    names: Sequence[str] | None,
    num_experts_per_tok: int | None,
) -> tuple[dict[str, Any], list[TensorPlan]]:
    import torch

    first = ckpts[0]
    sources: list[tuple[FlexCheckpoint, int]] = [
        (c, e) for c in ckpts for e in range(1, c.num_experts)
    ]
    num_experts = 1 + len(sources)
    default_names = [ckpt.expert_names[e] for ckpt, e in sources]
    names = list(names) if names is not None else default_names
    if len(names) != len(sources):
        raise ValueError(
            f"got {len(names)} expert names for {len(sources)} domain experts: {names}"
        )
    full_names = ["public", *names]
    if len(set(full_names)) != len(full_names):
        raise ValueError(
            f"expert names must be unique, got {full_names}; pass names explicitly"
        )
    top_k = num_experts if num_experts_per_tok is None else num_experts_per_tok
    if not 1 <= top_k <= num_experts:
        raise ValueError(f"num_experts_per_tok={top_k} must be in 1..{num_experts}")

    plans: list[TensorPlan] = []
    for key in _shared_keys(first):
        if is_router_key(key):
            rows = [(c, key, e) for c, e in sources]

            def router(key=key, rows=rows) -> torch.Tensor:
                return torch.cat(
                    [first.get(key)[:1]] + [c.get(k)[e : e + 1] for c, k, e in rows]
                )

            plans.append(
                TensorPlan(
                    key, (num_experts, first.hidden_size), first.dtype(key), router
                )
            )
        else:
            plans.append(copy_plan(first, key))
    for new_index, (ckpt, e) in enumerate(sources, start=1):
        for key in ckpt.tensor_keys():
            parsed = parse_expert_key(key)
            if parsed is not None and parsed[1] == e:
                plans.append(
                    copy_plan(ckpt, key, f"{parsed[0]}.{new_index}.{parsed[2]}")
                )

    ranks = [0] + [c.expert_ranks[e] for c, e in sources]
    config = dict(first.config)
    config.update(
        num_experts=num_experts, num_experts_per_tok=top_k, expert_names=full_names
    )
    config.pop("opted_out_experts", None)
    if any(ranks):
        alphas = [1.0] + [_alpha_of(c, e) for c, e in sources]
        config.update(
            model_type="flex_more",
            architectures=["FlexMoreForCausalLM"],
            expert_ranks=ranks,
            expert_alphas=alphas,
            expert_bases=[0] * num_experts,
        )
    else:
        for key in ("expert_ranks", "expert_alphas", "expert_bases"):
            config.pop(key, None)
        config.update(model_type="flex_olmo", architectures=["FlexOlmoForCausalLM"])
    return config, sorted(plans, key=lambda p: p.name)


def _alpha_of(ckpt: FlexCheckpoint, expert: int) -> float:
    alphas = ckpt.config.get("expert_alphas")
    if alphas:
        return float(alphas[expert])
    return float(ckpt.expert_ranks[expert] or 1.0)


# --------------------------------------------------------------------------- opt-out


def resolve_experts(
    requested: Sequence[str | int], expert_names: Sequence[str]
) -> list[int]:
    """Map expert names or indices to indices, rejecting unknown and public experts.

    Raises:
        ValueError: a name is unknown or an index is out of range; the message lists the
            valid names.
    """
    indices = []
    for item in requested:
        text = str(item)
        if text.isdigit():
            index = int(text)
            if not 0 <= index < len(expert_names):
                raise ValueError(
                    f"expert index {index} is out of range 0..{len(expert_names) - 1}"
                )
        elif text in expert_names:
            index = list(expert_names).index(text)
        else:
            close = difflib.get_close_matches(text, list(expert_names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown expert {text!r}; this checkpoint has experts "
                f"{list(expert_names)}{hint}"
            )
        if index == 0:
            raise ValueError(
                "the public expert (index 0) cannot be opted out or converted"
            )
        indices.append(index)
    return indices


def remove_experts(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    experts: Sequence[str | int],
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Opt experts out by removing them: drop their weights and router rows.

    ``num_experts_per_tok`` becomes ``min(k, remaining experts)``. Because FlexOlmo
    does not renormalise the top-k probabilities, this gives the same outputs as masking
    the removed experts' router logits to -inf (``FlexMoreConfig.opted_out_experts``).

    Args:
        src: input checkpoint directory.
        out: output directory, written atomically.
        experts: expert names (``config.expert_names``) or indices to remove.

    Returns:
        The output directory.
    """

    with FlexCheckpoint(src) as ckpt:
        removed = set(resolve_experts(experts, ckpt.expert_names))
        remaining = [e for e in range(ckpt.num_experts) if e not in removed]
        new_index = {old: new for new, old in enumerate(remaining)}
        plans = []
        for key in ckpt.tensor_keys():
            parsed = parse_expert_key(key)
            if parsed is not None:
                if parsed[1] in new_index:
                    plans.append(
                        copy_plan(
                            ckpt, key, f"{parsed[0]}.{new_index[parsed[1]]}.{parsed[2]}"
                        )
                    )
            elif is_router_key(key):

                def rows(key=key) -> torch.Tensor:
                    return ckpt.get(key)[remaining].contiguous()

                plans.append(
                    TensorPlan(
                        key, (len(remaining), ckpt.hidden_size), ckpt.dtype(key), rows
                    )
                )
            else:
                plans.append(copy_plan(ckpt, key))
        config = dict(ckpt.config)
        config["num_experts"] = len(remaining)
        config["num_experts_per_tok"] = min(
            int(config["num_experts_per_tok"]), len(remaining)
        )
        config["expert_names"] = [ckpt.expert_names[e] for e in remaining]
        for list_key in ("expert_ranks", "expert_alphas"):
            if config.get(list_key):
                config[list_key] = [config[list_key][e] for e in remaining]
        if config.get("expert_bases"):
            bases = [config["expert_bases"][e] for e in remaining]
            if any(b not in new_index for b in bases):
                raise ValueError(
                    "cannot remove an expert that other experts use as their base"
                )
            config["expert_bases"] = [new_index[b] for b in bases]
        config.pop("opted_out_experts", None)
        if ckpt.layout == "fused":
            plans = fuse_expert_plans(plans, len(remaining))
        with atomic_output_dir(out, overwrite) as tmp:
            write_sharded(
                tmp,
                sorted(plans, key=lambda p: p.name),
                progress=progress,
                description="removing",
            )
            write_config(tmp, config)
            copy_side_files(ckpt.path, tmp)
    return Path(out)


def layer_of(key: str) -> int | None:
    """Return the decoder layer index of a key, or None for non-layer tensors."""
    match = _LAYER_KEY.match(key)
    return int(match[1]) if match else None
