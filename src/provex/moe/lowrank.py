"""Low-rank domain experts: truncated SVD of expert-minus-public deltas.

For every domain expert e and each projection p of every layer,
``delta = W_e[p] - W_public[p]`` is factorised as ``delta ~ B @ A`` with
``B = U_r sqrt(S_r)`` (``[out, r]``) and ``A = sqrt(S_r) V_r^T`` (``[r, in]``), the
symmetric split of the rank-r truncated SVD (the best rank-r approximation in Frobenius
norm, by Eckart-Young).

Two SVD methods exist: ``exact`` (``torch.linalg.svd``, all components) and
``randomized`` (``torch.svd_lowrank`` with oversampling and power iterations, only the
top components). ``auto`` uses the randomized method when the rank plus oversampling
is at most a quarter of ``min(rows, cols)``. A :class:`DecompositionCache`
keeps decompositions on disk keyed by a hash of the delta's bytes, so a sweep over many
ranks decomposes each matrix once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provex.moe.checkpoint import (
    DEFAULT_MAX_SHARD_BYTES,
    PROJECTIONS,
    CheckpointError,
    FlexCheckpoint,
    TensorPlan,
    atomic_output_dir,
    copy_plan,
    copy_side_files,
    expert_key,
    fuse_expert_plans,
    parse_expert_key,
    write_config,
    write_sharded,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

METHODS = ("auto", "exact", "randomized")
POWER_ITERATIONS = 4
FULL = None  # rank value meaning "keep the expert dense"
# Below this relative error the report measures ||delta - B A|| directly.
SMALL_ERROR = 1e-2


def oversampling(rank: int) -> int:
    """Extra random directions of the randomized SVD for a target rank."""
    return max(10, rank // 2)


def choose_method(rank: int, rows: int, cols: int) -> str:
    """Pick ``randomized`` when the sketch is small for the matrix, else ``exact``."""
    return (
        "randomized" if rank + oversampling(rank) <= min(rows, cols) // 4 else "exact"
    )


@dataclass
class Decomposition:
    """Leading singular triplets of a delta: ``delta ~ U diag(S) Vh``.

    ``U`` is ``[rows, k]``, ``S`` is ``[k]`` (descending), ``Vh`` is ``[k, cols]``;
    ``k`` is ``min(rows, cols)`` for the exact method. ``frob_sq`` is the squared
    Frobenius norm of the whole delta, used for errors and retained energy.
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    frob_sq: float
    method: str

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(B [rows, r], A [r, cols])`` with ``B @ A = U_r diag(S_r) Vh_r``."""
        if rank > self.rank:
            raise ValueError(
                f"decomposition contains {self.rank} components, rank {rank} requested"
            )
        root = self.S[:rank].sqrt()
        return self.U[:, :rank] * root, root[:, None] * self.Vh[:rank]

    def relative_error(self, rank: int) -> float:
        """Relative Frobenius error ``||delta - B A|| / ||delta||`` at rank r.

        Exact for both methods in exact arithmetic: ``U_r diag(S_r) Vh_r`` is the
        orthogonal projection of the delta on span(U_r), so the residual's squared
        norm is ``||delta||^2 - sum(S_r^2)``. In float32 the subtraction cancels, so
        values below about 1e-3 are noise; ``compress_checkpoint`` measures those
        residuals directly.
        """
        if self.frob_sq == 0.0:
            return 0.0
        return math.sqrt(max(self.frob_sq - self.energy(rank), 0.0) / self.frob_sq)

    def energy(self, rank: int) -> float:
        return float((self.S[:rank].double() ** 2).sum())

    def retained_energy(self, rank: int) -> float:
        """Fraction of ``||delta||_F^2`` kept by the top ``rank`` singular values."""
        return (
            1.0 if self.frob_sq == 0.0 else min(self.energy(rank) / self.frob_sq, 1.0)
        )


def decompose(
    delta: torch.Tensor, rank: int | None = None, method: str = "auto", seed: int = 0
) -> Decomposition:
    """Compute the truncated SVD of a 2-D delta in float32.

    Args:
        delta: ``[rows, cols]`` matrix.
        rank: number of components needed; ``None`` means all (forces ``exact``).
        method: ``auto``, ``exact`` or ``randomized``.
        seed: random seed of the randomized method (results are reproducible).

    Returns:
        A :class:`Decomposition` with at least ``rank`` components.

    Example:
        >>> import torch
        >>> d = decompose(torch.randn(64, 32), rank=4, method="exact")
        >>> B, A = d.factors(4)
    """
    import torch

    rows, cols = delta.shape
    limit = min(rows, cols)
    if rank is not None:
        check_rank(rank, rows, cols)
    if method not in METHODS:
        raise ValueError(f"unknown SVD method {method!r}; use one of {METHODS}")
    if method == "auto":
        method = "exact" if rank is None else choose_method(rank, rows, cols)
    if method == "randomized" and rank is None:
        raise ValueError("the randomized SVD needs a rank")

    work = delta.detach().to(torch.float32)
    frob_sq = float(work.double().pow(2).sum())
    if method == "exact":
        U, S, Vh = torch.linalg.svd(work, full_matrices=False)
    else:
        q = min(rank + oversampling(rank), limit)
        with _seeded(seed):
            U, S, V = torch.svd_lowrank(work, q=q, niter=POWER_ITERATIONS)
        U, S, Vh = U[:, :rank], S[:rank], V[:, :rank].T
    return Decomposition(
        U.contiguous(), S.contiguous(), Vh.contiguous(), frob_sq, method
    )


@contextlib.contextmanager
def _seeded(seed: int):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def check_rank(rank: int, rows: int, cols: int, label: str = "matrix") -> None:
    """Reject a rank outside ``1..min(rows, cols)`` with a message naming the maximum.

    Raises:
        ValueError: the rank is not allowed for a ``rows x cols`` matrix.
    """
    limit = min(rows, cols)
    if not 1 <= rank <= limit:
        raise ValueError(
            f"rank {rank} is not valid for the {rows}x{cols} {label}: the maximum is "
            f"min(rows, cols) = {limit}; use a rank in 1..{limit}, or 'full' to keep "
            "the "
            "expert dense"
        )


# --------------------------------------------------------------------------- cache


class DecompositionCache:
    """Decompositions keyed by a hash of the delta's bytes, in memory and on disk.

    An exact entry serves every rank. A randomized entry serves ranks up to the rank it
    was computed for. Set ``compute_rank`` before a sweep so that every miss computes
    enough components for the largest rank of the sweep.

    Args:
        directory: folder for ``<hash>.safetensors`` entries; None keeps them in memory.
        compute_rank: minimum number of components to compute on a miss.
        max_memory_entries: decompositions kept in memory, least recently used dropped
            first. The default is 8 with a directory and unlimited without one,
            because memory is then the only store (a 7B sweep needs tens of GB).
        device: torch device the SVDs run on (``"cuda"`` on a GPU machine); results are
            kept on the CPU.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        compute_rank: int | None = None,
        max_memory_entries: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.device = device
        self.directory = Path(directory) if directory is not None else None
        self.compute_rank = compute_rank
        if max_memory_entries is None:
            max_memory_entries = 8 if directory is not None else 0
        self.max_memory_entries = max_memory_entries  # 0: unlimited
        self._memory: dict[str, Decomposition] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(delta: torch.Tensor) -> str:
        """Content hash of a delta (shape, dtype and bytes)."""
        import torch

        digest = hashlib.blake2b(digest_size=20)
        digest.update(f"{tuple(delta.shape)}|{delta.dtype}".encode())
        flat = delta.detach().contiguous().reshape(-1).view(torch.uint8)
        digest.update(flat.numpy().data)
        return digest.hexdigest()

    def get(
        self, delta: torch.Tensor, rank: int, method: str = "auto", seed: int = 0
    ) -> Decomposition:
        """Return a decomposition of ``delta`` with at least ``rank`` components."""
        rows, cols = delta.shape
        check_rank(rank, rows, cols)
        key = self.key(delta)
        chosen = choose_method(rank, rows, cols) if method == "auto" else method
        found = self._lookup(key, rank, chosen)
        if found is not None:
            self.hits += 1
            return found

        self.misses += 1
        target = max(rank, min(self.compute_rank or 0, min(rows, cols)))
        if method == "auto":
            chosen = choose_method(target, rows, cols)
        # NOTE: the CUDA path (device="cuda") is not covered by this repository's tests.
        work = delta.to(self.device)
        result = decompose(work, None if chosen == "exact" else target, chosen, seed)
        if result.U.device.type != "cpu":
            result = Decomposition(
                result.U.cpu(),
                result.S.cpu(),
                result.Vh.cpu(),
                result.frob_sq,
                result.method,
            )
        self._store(key, result)
        return result

    def _lookup(self, key: str, rank: int, method: str) -> Decomposition | None:
        # An exact entry serves any request. A randomized one is used for a
        # randomized request only, so that --method exact always gets exact factors.
        def serves(entry_method: str, entry_rank: int) -> bool:
            return entry_method == "exact" or (
                method == "randomized" and entry_rank >= rank
            )

        entry = self._memory.get(key)
        if entry is not None and serves(entry.method, entry.rank):
            self._remember(key, entry)
            return entry
        if self.directory is None:
            return None
        # File names are <key>.<method>-<rank>.safetensors, so only a file that can
        # serve the request is read (an exact 7B entry is about 250 MB).
        for file in sorted(self.directory.glob(f"{key}.*.safetensors")):
            entry_method, _, entry_rank = file.name.split(".")[1].partition("-")
            if not entry_rank.isdigit() or not serves(entry_method, int(entry_rank)):
                continue
            try:
                entry = _load_entry(file)
            except Exception as error:  # an unreadable entry is a miss
                logger.warning("ignoring unreadable cache entry %s: %s", file, error)
                continue
            self._remember(key, entry)
            return entry
        return None

    def _store(self, key: str, entry: Decomposition) -> None:
        self._remember(key, entry)
        if self.directory is None:
            return
        from safetensors.torch import save_file

        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{key}.{entry.method}-{entry.rank}.safetensors"
        tmp = final.with_suffix(f".tmp-{os.getpid()}")
        metadata = {"frob_sq": repr(entry.frob_sq), "method": entry.method}
        save_file(
            {"U": entry.U, "S": entry.S, "Vh": entry.Vh}, str(tmp), metadata=metadata
        )
        tmp.rename(final)

    def _remember(self, key: str, entry: Decomposition) -> None:
        self._memory.pop(key, None)
        self._memory[key] = entry
        while 0 < self.max_memory_entries < len(self._memory):
            self._memory.pop(next(iter(self._memory)))


def _load_entry(file: Path) -> Decomposition:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in ("U", "S", "Vh")}
    return Decomposition(
        frob_sq=float(metadata["frob_sq"]), method=metadata["method"], **tensors
    )


# --------------------------------------------------------------------------- ranks


def parse_ranks(
    spec: str | int | Mapping[str, int | str | None] | None, expert_names: Sequence[str]
) -> dict[int, int | None]:
    """Parse per-expert ranks into ``{expert index: rank or None (dense)}``.

    Accepted forms: one int or ``"64"`` for every domain expert; ``"math=64,code=16"``
    (names from ``config.expert_names`` or indices, unlisted experts stay dense);
    ``"full"``; or a mapping. Values are positive ints or ``full``.

    Raises:
        ValueError: unknown expert name, the public expert, or an invalid rank value.

    Example:
        >>> parse_ranks("math=64,code=full", ["public", "math", "code"])
        {1: 64, 2: None}
    """
    from provex.moe.checkpoint import resolve_experts

    domain = range(1, len(expert_names))
    if spec is None:
        return dict.fromkeys(domain)
    if isinstance(spec, int):
        return dict.fromkeys(domain, _rank_value(spec, "all experts"))
    if isinstance(spec, str) and "=" not in spec:
        return dict.fromkeys(domain, _rank_value(spec.strip(), "all experts"))
    if isinstance(spec, str):
        pairs = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise ValueError(
                    f"invalid rank item {part!r} in {spec!r}; write name=rank, e.g. "
                    "math=64"
                )
            name, value = part.split("=", 1)
            pairs.append((name.strip(), value.strip()))
    else:
        pairs = list(spec.items())
    result: dict[int, int | None] = dict.fromkeys(domain)
    for name, value in pairs:
        (index,) = resolve_experts([name], expert_names)
        result[index] = _rank_value(value, name)
    return result


def _rank_value(value: int | str | None, name: str) -> int | None:
    if value is None or (isinstance(value, str) and value.lower() in {"full", "dense"}):
        return FULL
    try:
        rank = int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"invalid rank {value!r} for {name}; use a positive integer or 'full'"
        ) from None
    if rank < 1:
        raise ValueError(
            f"invalid rank {rank} for {name}; use a positive integer or 'full'"
        )
    return rank


# --------------------------------------------------------------------------- compress


@dataclass
class MatrixReport:
    """Quality of one factorised matrix."""

    layer: int
    expert: int
    expert_name: str
    projection: str
    shape: tuple[int, int]
    rank: int
    method: str
    relative_error: float
    retained_energy: float


@dataclass
class CompressReport:
    """Per-matrix errors of a conversion (``compress_report.json`` and ``.md``)."""

    source: str
    ranks: dict[str, int | None]
    dense: bool
    matrices: list[MatrixReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ranks": self.ranks,
            "dense": self.dense,
            "matrices": [asdict(m) for m in self.matrices],
        }

    def to_markdown(self) -> str:
        lines = [
            f"# Low-rank conversion of {self.source}",
            "",
            "Output: "
            + (
                "dense-materialised FlexOlmo." if self.dense else "factorised FlexMoRE."
            ),
            "",
            "| expert | rank | matrices | mean rel. error | max rel. error | mean "
            "retained energy |",
            "|---|---|---|---|---|---|",
        ]
        by_expert: dict[str, list[MatrixReport]] = {}
        for matrix in self.matrices:
            by_expert.setdefault(matrix.expert_name, []).append(matrix)
        for name, items in by_expert.items():
            errors = [m.relative_error for m in items]
            energies = [m.retained_energy for m in items]
            lines.append(
                f"| {name} | {items[0].rank} | {len(items)} | "
                f"{sum(errors) / len(errors):.4f} | "
                f"{max(errors):.4f} | {sum(energies) / len(energies):.4f} |"
            )
        lines += [
            "",
            "| layer | expert | projection | shape | rank | method | rel. error | "
            "energy |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in self.matrices:
            lines.append(
                f"| {m.layer} | {m.expert_name} | {m.projection} | "
                f"{m.shape[0]}x{m.shape[1]} | "
                f"{m.rank} | {m.method} | {m.relative_error:.5f} | "
                f"{m.retained_energy:.5f} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> None:
        (directory / "compress_report.json").write_text(
            json.dumps(self.to_json(), indent=2) + "\n"
        )
        (directory / "compress_report.md").write_text(self.to_markdown())


class _ExpertFactoriser:
    """Produces the factors (or dense weights) of one domain expert, with a memo so the
    A and B plans of one matrix share one decomposition."""

    def __init__(
        self,
        read,
        cache: DecompositionCache,
        method: str,
        report: CompressReport,
        names: Sequence[str],
    ) -> None:
        self.read = read
        self.cache = cache
        self.method = method
        self.report = report
        self.names = names
        self._memo: dict[
            tuple[int, int, str, int], tuple[torch.Tensor, torch.Tensor]
        ] = {}

    def factors(
        self, layer: int, expert: int, proj: str, rank: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        memo_key = (layer, expert, proj, rank)
        if memo_key in self._memo:
            return self._memo.pop(memo_key)
        public = self.read(expert_key(layer, 0, f"{proj}.weight"))
        weight = self.read(expert_key(layer, expert, f"{proj}.weight"))
        delta = weight.to(torch.float32) - public.to(torch.float32)
        del public, weight
        decomposition = self.cache.get(delta, rank, self.method)
        B, A = decomposition.factors(rank)
        error = decomposition.relative_error(rank)
        if 0.0 < error < SMALL_ERROR:
            # sqrt(||delta||^2 - sum(S_r^2)) cancels in float32 near full rank (about
            # 5e-4 reported for a true 1e-6), so measure the residual directly.
            residual = torch.addmm(delta, B, A, alpha=-1.0)
            error = float(torch.linalg.matrix_norm(residual)) / math.sqrt(
                decomposition.frob_sq
            )
            del residual
        self.report.matrices.append(
            MatrixReport(
                layer=layer,
                expert=expert,
                expert_name=self.names[expert],
                projection=proj,
                shape=tuple(delta.shape),
                rank=rank,
                method=decomposition.method,
                relative_error=error,
                retained_energy=decomposition.retained_energy(rank),
            )
        )
        self._memo.clear()
        self._memo[memo_key] = (B, A)
        return B, A


def _resolve_ranks(
    ranks, names: Sequence[str], rows_cols: tuple[int, int], expert_ranks: Sequence[int]
) -> dict[int, int | None]:
    resolved = parse_ranks(ranks, names)
    for index, rank in resolved.items():
        if expert_ranks[index] != 0:
            raise CheckpointError(
                f"expert {names[index]!r} is already low-rank (rank "
                f"{expert_ranks[index]}); "
                "convert the original dense checkpoint instead"
            )
        if rank is not None:
            check_rank(
                rank, *rows_cols, label=f"projections of expert {names[index]!r}"
            )
    return resolved


def compress_checkpoint(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    ranks: str | int | Mapping[str, int | str | None],
    dense: bool = False,
    method: str = "auto",
    cache: DecompositionCache | str | os.PathLike[str] | None = None,
    layout: str = "per_expert",
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool = False,
    device: str = "cpu",
) -> CompressReport:
    """Convert a FlexOlmo checkpoint's domain experts to rank-r adapters (public base).

    Reads one tensor at a time and streams the output, so memory stays near a few times
    the largest matrix whatever the checkpoint's size.

    Args:
        src: FlexOlmo checkpoint directory (2 or N experts, either layout).
        out: output directory, written atomically.
        ranks: per-expert ranks, e.g. ``"math=64,code=16"``, ``64`` or ``{"math": 64}``.
            ``full`` keeps an expert dense.
        dense: write a dense FlexOlmo checkpoint (``W_public + B A``) that stock
            transformers and vLLM load, instead of a factorised FlexMoRE checkpoint.
        method: SVD method, ``auto``, ``exact`` or ``randomized``.
        cache: a :class:`DecompositionCache` or a directory for one; None uses an
            in-memory cache for this call only.
        layout: ``per_expert`` or, for dense output only, ``fused``.
        max_shard_bytes: shard size limit in bytes.
        overwrite: replace ``out`` if it exists.
        progress: show a progress bar.
        device: torch device for the SVDs when ``cache`` is not a ready cache object.

    Returns:
        The :class:`CompressReport` (also written into ``out``).

    Example:
        >>> compress_checkpoint("Flex-math-2x7B-1T", "r64", 64)  # doctest: +SKIP
    """
    if method not in METHODS:
        raise ValueError(f"unknown SVD method {method!r}; use one of {METHODS}")
    if layout == "fused" and not dense:
        raise ValueError(
            "the fused layout stores dense experts only; add --dense (dense=True) or "
            "use --layout per_expert"
        )
    if not isinstance(cache, DecompositionCache):
        cache = DecompositionCache(cache, device=device)
    with FlexCheckpoint(src) as ckpt:
        names = ckpt.expert_names
        shape = (ckpt.intermediate_size, ckpt.hidden_size)
        resolved = _resolve_ranks(ranks, names, shape, ckpt.expert_ranks)
        report = CompressReport(
            str(ckpt.path), {names[i]: r for i, r in resolved.items()}, dense
        )
        factoriser = _ExpertFactoriser(ckpt.get, cache, method, report, names)
        plans, config = _compress_plans(ckpt, resolved, dense, factoriser)
        if layout == "fused":
            plans = fuse_expert_plans(plans, ckpt.num_experts)
        with atomic_output_dir(out, overwrite) as tmp:
            write_sharded(tmp, plans, max_shard_bytes, progress, "compressing")
            write_config(tmp, config)
            copy_side_files(ckpt.path, tmp)
            report.write(tmp)
    logger.info("decomposition cache: %d hits, %d misses", cache.hits, cache.misses)
    return report


def _compress_plans(
    ckpt: FlexCheckpoint,
    resolved: dict[int, int | None],
    dense: bool,
    factoriser: _ExpertFactoriser,
) -> tuple[list[TensorPlan], dict[str, Any]]:
    import torch

    plans: list[TensorPlan] = []
    for key in ckpt.tensor_keys():
        parsed = parse_expert_key(key)
        rank = resolved.get(parsed[1]) if parsed is not None else None
        if parsed is None or rank is None:
            plans.append(copy_plan(ckpt, key))
            continue
        layer = int(key.split(".")[2])
        expert = parsed[1]
        proj = parsed[2].removesuffix(".weight")
        dtype = ckpt.dtype(key)
        rows, cols = ckpt.shape(key)
        if dense:

            def materialise(
                layer=layer, expert=expert, proj=proj, rank=rank, dtype=dtype
            ) -> torch.Tensor:
                B, A = factoriser.factors(layer, expert, proj, rank)
                # Never in place: safetensors may return tensors backed by the file's
                # private memory map, and a later read would see the change.
                public = ckpt.get(expert_key(layer, 0, f"{proj}.weight")).to(
                    torch.float32
                )
                return torch.addmm(public, B, A).to(dtype)

            plans.append(TensorPlan(key, (rows, cols), dtype, materialise))
            continue

        def factor_a(
            layer=layer, expert=expert, proj=proj, rank=rank, dtype=dtype
        ) -> torch.Tensor:
            return (
                factoriser.factors(layer, expert, proj, rank)[1].to(dtype).contiguous()
            )

        def factor_b(
            layer=layer, expert=expert, proj=proj, rank=rank, dtype=dtype
        ) -> torch.Tensor:
            return (
                factoriser.factors(layer, expert, proj, rank)[0].to(dtype).contiguous()
            )

        prefix = key.removesuffix(f"{proj}.weight")
        # A before B: both come from one decomposition, memoised between the two calls.
        plans.append(
            TensorPlan(f"{prefix}{proj}_a.weight", (rank, cols), dtype, factor_a)
        )
        plans.append(
            TensorPlan(f"{prefix}{proj}_b.weight", (rows, rank), dtype, factor_b)
        )

    config = dict(ckpt.config)
    config["expert_names"] = ckpt.expert_names
    if not dense:
        ranks = [resolved.get(e) or 0 for e in range(ckpt.num_experts)]
        config.update(
            model_type="flex_more",
            architectures=["FlexMoreForCausalLM"],
            expert_ranks=ranks,
            expert_alphas=[float(r or 1) for r in ranks],
            expert_bases=[0] * ckpt.num_experts,
        )
    return plans, config


def materialise_checkpoint(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    layout: str = "per_expert",
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a factorised FlexMoRE checkpoint as a dense FlexOlmo checkpoint.

    Every adapter expert becomes ``W_base + (alpha / r) B A``, computed in float32 and
    stored in the checkpoint's dtype, so stock transformers and vLLM load the result as
    ``FlexOlmoForCausalLM``. Tensors are streamed one at a time.

    Args:
        src: FlexMoRE checkpoint directory (``model_type`` ``flex_more``).
        out: output directory, written atomically.
        layout: ``per_expert`` or ``fused``.
        max_shard_bytes: shard size limit in bytes.
        overwrite: replace ``out`` if it exists.
        progress: show a progress bar.

    Returns:
        The output directory.

    Raises:
        CheckpointError: the source has opted-out experts, which stock FlexOlmo cannot
            mask; remove them with ``remove_experts`` first.
    """
    import torch

    with FlexCheckpoint(src) as ckpt:
        if ckpt.config.get("opted_out_experts"):
            raise CheckpointError(
                f"{ckpt.path} masks experts {ckpt.config['opted_out_experts']}, which "
                "FlexOlmo cannot express; remove them with 'provex moe opt-out' first"
            )
        ranks = ckpt.expert_ranks
        alphas = ckpt.config.get("expert_alphas") or [float(r or 1) for r in ranks]
        bases = ckpt.config.get("expert_bases") or [0] * ckpt.num_experts
        plans: list[TensorPlan] = []
        for key in ckpt.tensor_keys():
            parsed = parse_expert_key(key)
            if parsed is None or ranks[parsed[1]] == 0:
                plans.append(copy_plan(ckpt, key))
                continue
            if not parsed[2].endswith("_a.weight"):
                continue  # each adapter is planned once, from its A factor
            expert = parsed[1]
            proj = parsed[2].removesuffix("_a.weight")
            layer = int(key.split(".")[2])
            base_key = expert_key(layer, bases[expert], f"{proj}.weight")
            scale = alphas[expert] / ranks[expert]
            prefix = key.removesuffix("_a.weight")

            def dense(prefix=prefix, base_key=base_key, scale=scale) -> torch.Tensor:
                base = ckpt.get(base_key)
                A = ckpt.get(f"{prefix}_a.weight").to(torch.float32)
                B = ckpt.get(f"{prefix}_b.weight").to(torch.float32)
                weight = torch.addmm(base.to(torch.float32), B, A, alpha=scale)
                return weight.to(base.dtype)

            plans.append(
                TensorPlan(
                    f"{prefix}.weight",
                    ckpt.shape(base_key),
                    ckpt.dtype(base_key),
                    dense,
                )
            )
        plans.sort(key=lambda plan: plan.name)
        if layout == "fused":
            plans = fuse_expert_plans(plans, ckpt.num_experts)
        config = dict(ckpt.config)
        for name in (
            "expert_ranks",
            "expert_alphas",
            "expert_bases",
            "opted_out_experts",
        ):
            config.pop(name, None)
        config.update(model_type="flex_olmo", architectures=["FlexOlmoForCausalLM"])
        with atomic_output_dir(out, overwrite) as tmp:
            write_sharded(tmp, plans, max_shard_bytes, progress, "materialising")
            write_config(tmp, config)
            copy_side_files(ckpt.path, tmp)
    return Path(out)


def decompose_checkpoint_spectra(
    src: str | os.PathLike[str],
    experts: Sequence[int] | None = None,
    progress: bool = False,
    device: str = "cpu",
) -> dict[tuple[int, int, str], torch.Tensor]:
    """Compute all singular values of every dense domain-expert delta.

    ``experts=None`` selects every dense domain expert. Uses
    ``torch.linalg.svdvals`` (no singular vectors), one matrix at a time, on
    ``device``. Returns ``{(layer, expert, projection): S}`` with CPU tensors.
    """
    import torch
    from tqdm.auto import tqdm

    spectra = {}
    with FlexCheckpoint(src) as ckpt:
        names = ckpt.expert_names
        dense = [e for e in range(1, ckpt.num_experts) if ckpt.expert_ranks[e] == 0]
        chosen = list(experts) if experts is not None else dense
        if not chosen:
            raise CheckpointError(
                f"{src} has no dense domain expert (expert_ranks "
                f"{ckpt.expert_ranks}); inspect the checkpoint from before compress"
            )
        for e in chosen:
            if ckpt.expert_ranks[e] != 0:
                raise CheckpointError(
                    f"expert {names[e]!r} of {src} is a rank-{ckpt.expert_ranks[e]} "
                    "adapter, so it has no dense delta to inspect; choose dense "
                    "experts with --experts or inspect the checkpoint from before "
                    "compress"
                )
        jobs = [
            (layer, e, p)
            for layer in range(ckpt.num_layers)
            for e in chosen
            for p in PROJECTIONS
        ]
        for layer, e, p in tqdm(
            jobs, desc="singular values", disable=not progress, unit="matrix"
        ):
            public = ckpt.get(expert_key(layer, 0, f"{p}.weight")).to(torch.float32)
            delta = (
                ckpt.get(expert_key(layer, e, f"{p}.weight")).to(torch.float32) - public
            )
            spectra[(layer, e, p)] = torch.linalg.svdvals(delta.to(device)).cpu()
    return spectra


def energy_rank(singular_values: torch.Tensor, fraction: float) -> int:
    """Smallest rank whose singular values hold ``fraction`` of ``||delta||_F^2``."""
    import torch

    energy = singular_values.double() ** 2
    total = float(energy.sum())
    if total == 0.0:
        return 0
    cumulative = torch.cumsum(energy, 0) / total
    return (
        int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=torch.float64)))
        + 1
    )


def plot_spectra(
    spectra: Mapping[tuple[int, int, str], torch.Tensor],
    expert_names: Sequence[str],
    out_dir: str | os.PathLike[str],
) -> tuple[list[Path], str]:
    """Plot singular values per expert (one PNG each; a panel per projection, a line per
    layer) and write ``spectra.json``.

    Returns:
        The written files and a Markdown table of energy ranks (90% and 99%) per expert
        and projection, taken as the median over layers.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    experts = sorted({e for _, e, _ in spectra})
    layers = sorted({layer for layer, _, _ in spectra})
    files = []
    rows = [
        "| expert | projection | median rank for 90% energy | for 99% | min(rows, "
        "cols) |",
        "|---|---|---|---|---|",
    ]
    colormap = plt.get_cmap("viridis")
    for expert in experts:
        figure, axes = plt.subplots(
            1, len(PROJECTIONS), figsize=(5 * len(PROJECTIONS), 4), squeeze=False
        )
        for axis, proj in zip(axes[0], PROJECTIONS, strict=True):
            ranks90, ranks99 = [], []
            for layer in layers:
                values = spectra[(layer, expert, proj)]
                color = colormap(layer / max(len(layers) - 1, 1))
                axis.semilogy(
                    range(1, len(values) + 1),
                    values.clamp_min(1e-12).numpy(),
                    color=color,
                    lw=1,
                    label=f"layer {layer}" if len(layers) <= 8 else None,
                )
                ranks90.append(energy_rank(values, 0.90))
                ranks99.append(energy_rank(values, 0.99))
            axis.set_title(f"{expert_names[expert]}: {proj}")
            axis.set_xlabel("component index")
            axis.set_ylabel("singular value of delta")
            axis.set_xscale("log")
            if len(layers) <= 8:
                axis.legend(fontsize=7)
            median = (
                sorted(ranks90)[len(ranks90) // 2],
                sorted(ranks99)[len(ranks99) // 2],
            )
            rows.append(
                f"| {expert_names[expert]} | {proj} | {median[0]} | {median[1]} | "
                f"{len(values)} |"
            )
        figure.suptitle(
            f"Spectra of {expert_names[expert]} - public (colour: layer 0 to "
            f"{layers[-1]})"
        )
        figure.tight_layout()
        file = out_dir / f"spectra_{expert_names[expert]}.png"
        figure.savefig(file, dpi=100)
        plt.close(figure)
        files.append(file)
    data = [
        {
            "layer": layer,
            "expert": expert_names[e],
            "projection": p,
            "singular_values": s.tolist(),
        }
        for (layer, e, p), s in sorted(spectra.items())
    ]
    (out_dir / "spectra.json").write_text(json.dumps(data) + "\n")
    files.append(out_dir / "spectra.json")
    return files, "\n".join(rows)
