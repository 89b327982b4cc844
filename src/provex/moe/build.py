"""Build a small FlexOlmo from real corpora, following FlexOlmo's recipe.

Stages, each checkpointed in its own folder under the output directory and skipped when
its ``DONE`` marker exists, so an interrupted build resumes where it stopped:

1. ``corpora``: read each domain, split it into train and held-out documents.
2. ``tokenizer``: a byte-level BPE tokenizer trained on all domains.
3. ``public``: a dense OLMo-2 model (``Olmo2ForCausalLM``) trained on a mix of domains.
4. ``experts/<domain>``: the public model upcycled into a 2-expert FlexOlmo (the public
   FFN copied into both slots, router rows initialised from domain embeddings), then the
   domain FFN and its router row trained on the domain with top-2 routing. Attention,
   embeddings, norms, ``lm_head``, the public expert and router row 0 stay frozen, and a
   check after training confirms they are bit-identical to the public model.
5. ``merged``: the 2-expert checkpoints merged into one N-expert FlexOlmo.
6. ``tasks``: per-domain held-out continuation tasks for the evaluation.

``progress.jsonl`` in the output directory gets one line per finished stage.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from provex.moe.corpora import CorpusSpec, Domain, load_domain

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

PACKAGED_CONFIGS = Path(__file__).parent / "configs"


@dataclass
class ModelSize:
    """Width and depth shared by the public model and every expert."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    seq_len: int = 128  # tokens per training and evaluation sequence


@dataclass
class TrainSpec:
    """Optimiser settings for one training stage (AdamW, warmup then cosine decay)."""

    steps: int = 300
    batch_size: int = 16  # sequences per step
    lr: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.0
    grad_clip: float = 1.0


@dataclass
class BuildConfig:
    """Everything that defines one small FlexOlmo build."""

    output_dir: str = "runs/flexolmo-small"
    seed: int = 0
    threads: int = 2  # torch CPU threads
    heldout_fraction: float = 0.1
    vocab_size: int = 2048
    eval_chunks: int = 24  # held-out sequences per domain for loss evaluation
    router_init_norm: float = 1.0  # L2 norm of each router row after initialisation
    embedding_chunks: int = 16  # sequences per domain for the domain embedding
    task_items: int = 100  # items per continuation task
    task_choices: int = 4
    merged_top_k: int = 2  # num_experts_per_tok of the merged N-expert model
    olmes_tasks: list[str] | None = None  # OLMES tasks to write; None: all, []: none
    olmes_limit: int = 500  # documents kept per OLMES task
    corpora: list[CorpusSpec] = field(default_factory=list)
    model: ModelSize = field(default_factory=ModelSize)
    public: TrainSpec = field(default_factory=TrainSpec)
    expert: TrainSpec = field(default_factory=lambda: TrainSpec(steps=150, lr=3e-3))

    @property
    def domain_names(self) -> list[str]:
        return [c.name for c in self.corpora]


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(known)}"
        )
    return cls(**data)


def load_build_config(path: str | Path) -> BuildConfig:
    """Read a build config YAML; a bare name loads a packaged config (``default``).

    Example:
        >>> cfg = load_build_config("tiny")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists() and (PACKAGED_CONFIGS / f"build-{path.name}.yaml").exists():
        path = PACKAGED_CONFIGS / f"build-{path.name}.yaml"
    if not path.exists():
        packaged = sorted(
            p.stem.removeprefix("build-") for p in PACKAGED_CONFIGS.glob("build-*.yaml")
        )
        raise FileNotFoundError(
            f"build config {path} not found; give a YAML path or one of {packaged}"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    nested = {
        "model": ModelSize,
        "public": TrainSpec,
        "expert": TrainSpec,
    }
    for key, cls in nested.items():
        if key in raw:
            raw[key] = _from_dict(cls, raw[key] or {}, f"{path}: {key}")
    raw["corpora"] = [
        _from_dict(CorpusSpec, c, f"{path}: corpora[{i}]")
        for i, c in enumerate(raw.get("corpora") or [])
    ]
    config = _from_dict(BuildConfig, raw, str(path))
    if not config.corpora:
        raise ValueError(f"{path}: 'corpora' is empty; list at least one domain")
    names = config.domain_names
    if len(set(names)) != len(names) or "public" in names:
        raise ValueError(
            f"{path}: corpus names {names} must be unique and must not be 'public'"
        )
    return config


# ----------------------------------------------------------------------------- stages


class Progress:
    """Stage markers and a JSONL log of finished stages in the build folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def done(self, stage: str) -> bool:
        return (self.root / stage / "DONE").exists()

    def finish(self, stage: str, **info: Any) -> None:
        folder = self.root / stage
        folder.mkdir(parents=True, exist_ok=True)
        record = {"stage": stage, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        (folder / "DONE").write_text(json.dumps(record) + "\n")
        with (self.root / "progress.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        logger.info("stage %s finished: %s", stage, info)


def _stage_corpora(config: BuildConfig, folder: Path) -> dict[str, Domain]:
    path = folder / "corpora.json"
    if path.exists():
        raw = json.loads(path.read_text())
        return {name: Domain(name, d["train"], d["heldout"]) for name, d in raw.items()}
    domains = {
        spec.name: load_domain(spec, config.heldout_fraction, config.seed)
        for spec in config.corpora
    }
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {n: {"train": d.train, "heldout": d.heldout} for n, d in domains.items()}
        )
    )
    return domains


def load_token_data(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Load the tokenized corpora of a build: ``{domain: {"train", "heldout"}}``."""
    import torch

    return torch.load(root / "tokenizer" / "tokens.pt")


def _stage_tokenizer(config: BuildConfig, domains: dict[str, Domain], folder: Path):
    import torch

    from provex.moe.corpora import encode_documents, train_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    # Equal character share per domain, so no domain dominates the merges.
    share = min(sum(len(t) for t in d.train) for d in domains.values())
    texts: list[str] = []
    for domain in domains.values():
        used = 0
        for doc in domain.train:
            if used >= share:
                break
            texts.append(doc)
            used += len(doc)
    tokenizer = train_tokenizer(texts, config.vocab_size, folder)
    tokens = {
        name: {
            "train": encode_documents(tokenizer, d.train),
            "heldout": encode_documents(tokenizer, d.heldout),
        }
        for name, d in domains.items()
    }
    torch.save(tokens, folder / "tokens.pt")
    return {
        name: {k: int(v.numel()) for k, v in t.items()} for name, t in tokens.items()
    }


def olmo2_config(config: BuildConfig, tokenizer) -> Any:
    """Return the ``Olmo2Config`` of the public model for this build."""
    from transformers import Olmo2Config

    size = config.model
    return Olmo2Config(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_attention_heads,
        max_position_embeddings=max(size.seq_len, 2048),
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


class WindowSampler:
    """Random training windows of ``seq_len + 1`` tokens from one or more domains."""

    def __init__(self, streams: list[torch.Tensor], seq_len: int, seed: int) -> None:
        import torch

        self.streams = [s for s in streams if s.numel() > seq_len + 1]
        if not self.streams:
            raise ValueError(
                f"no training text is longer than one sequence of {seq_len} tokens; "
                "raise train_chars or lower model.seq_len"
            )
        self.seq_len = seq_len
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, batch_size: int) -> torch.Tensor:
        """Return a (batch_size, seq_len + 1) tensor, domains drawn uniformly."""
        import torch

        rows = []
        picks = torch.randint(
            len(self.streams), (batch_size,), generator=self.generator
        )
        for pick in picks.tolist():
            stream = self.streams[pick]
            start = torch.randint(
                stream.numel() - self.seq_len - 1, (1,), generator=self.generator
            ).item()
            rows.append(stream[start : start + self.seq_len + 1])
        return torch.stack(rows)


def train_causal_lm(
    model: PreTrainedModel,
    sampler: WindowSampler,
    spec: TrainSpec,
    params: list[torch.nn.Parameter] | None = None,
    desc: str = "train",
) -> list[float]:
    """Train ``model`` on next-token loss with AdamW, warmup and cosine decay.

    Args:
        model: any causal LM returning ``.loss`` when given ``labels``.
        sampler: source of token windows.
        spec: steps, batch size, learning rate, warmup, weight decay, clipping.
        params: parameters to optimise; all trainable ones when None.
        desc: label for the progress bar.

    Returns:
        The training loss of every step.
    """
    import torch
    from tqdm.auto import tqdm

    params = params or [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=spec.lr, betas=(0.9, 0.95), weight_decay=spec.weight_decay
    )

    def lr_at(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(spec.steps), desc=desc, leave=False, mininterval=5)
    for _ in bar:
        batch = sampler.batch(spec.batch_size)
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return losses


@dataclass
class HeldoutLoss:
    """Mean next-token loss (nats) and perplexity on one domain's held-out text."""

    loss: float
    perplexity: float
    tokens: int


def heldout_loss(model: PreTrainedModel, chunks: torch.Tensor, batch_size: int = 8):
    """Return the token-weighted mean loss of ``model`` over held-out ``chunks``.

    Args:
        model: causal LM.
        chunks: (n, seq_len) token ids.
        batch_size: sequences per forward pass.

    Returns:
        A ``HeldoutLoss`` with loss in nats per token and its exponential.
    """
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, chunks.shape[0], batch_size):
            batch = chunks[start : start + batch_size].to(model.device)
            logits = model(input_ids=batch).logits[:, :-1].float()
            targets = batch[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                reduction="sum",
            )
            total += float(nll)
            count += targets.numel()
    loss = total / count
    return HeldoutLoss(loss, math.exp(loss), count)


def domain_embeddings(
    model: PreTrainedModel, chunks: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Mean input of every FFN block of the public model, per domain.

    FlexOlmo initialises router row i from an embedding of domain i. Here the embedding
    is the public model's own hidden state at the FFN input, averaged over the domain's
    tokens, taken per layer so that each layer's router gets vectors from its own space.

    Args:
        model: the dense public model (``Olmo2ForCausalLM``).
        chunks: ``{domain: (n, seq_len) token ids}``.

    Returns:
        ``{domain: (num_layers, hidden_size)}`` mean hidden states.
    """
    import torch

    layers = model.model.layers
    sums: list[torch.Tensor] = []
    hooks = []

    def capture(index: int):
        def hook(_module, inputs):
            sums[index] += inputs[0].detach().reshape(-1, inputs[0].shape[-1]).mean(0)

        return hook

    result = {}
    model.eval()
    for name, data in chunks.items():
        sums[:] = [torch.zeros(model.config.hidden_size) for _ in layers]
        hooks = [
            layer.mlp.register_forward_pre_hook(capture(i))
            for i, layer in enumerate(layers)
        ]
        with torch.no_grad():
            for row in data:
                model(input_ids=row[None])
        for hook in hooks:
            hook.remove()
        result[name] = torch.stack(sums) / data.shape[0]
    return result


def upcycle_to_flexolmo(
    public: PreTrainedModel, router_rows: torch.Tensor, num_experts_per_tok: int = 2
) -> PreTrainedModel:
    """Turn a dense OLMo-2 model into a FlexOlmo whose experts all copy its FFN.

    Args:
        public: ``Olmo2ForCausalLM``.
        router_rows: (num_layers, num_experts, hidden_size) initial router weights.
        num_experts_per_tok: top-k of the new model.

    Returns:
        A ``FlexOlmoForCausalLM`` whose output equals the public model's whenever the
        routed weights sum to one (2 experts, top-2, ``norm_topk_prob=False``).
    """
    import torch
    from transformers import FlexOlmoConfig, FlexOlmoForCausalLM

    source = public.config.to_dict()
    num_experts = router_rows.shape[1]
    keep = {
        k: v
        for k, v in source.items()
        if k
        not in (
            "architectures",
            "model_type",
            "transformers_version",
            "dtype",
            "torch_dtype",
        )
    }
    config = FlexOlmoConfig(
        **keep, num_experts=num_experts, num_experts_per_tok=num_experts_per_tok
    )
    config.norm_topk_prob = False
    moe = FlexOlmoForCausalLM(config)
    dense = public.state_dict()
    state = {}
    for key, value in moe.state_dict().items():
        if ".mlp.experts.gate_up_proj" in key:
            prefix = key.split(".mlp.")[0]
            gate = dense[f"{prefix}.mlp.gate_proj.weight"]
            up = dense[f"{prefix}.mlp.up_proj.weight"]
            state[key] = (
                torch.cat([gate, up], dim=0).expand(num_experts, -1, -1).clone()
            )
        elif ".mlp.experts.down_proj" in key:
            prefix = key.split(".mlp.")[0]
            down = dense[f"{prefix}.mlp.down_proj.weight"]
            state[key] = down.expand(num_experts, -1, -1).clone()
        elif ".mlp.gate.weight" in key:
            layer = int(key.split(".layers.")[1].split(".")[0])
            state[key] = router_rows[layer].clone().to(value.dtype)
        else:
            state[key] = dense[key].clone()
    moe.load_state_dict(state, strict=True)
    moe.generation_config = public.generation_config
    return moe


def _is_trainable(name: str) -> bool:
    return ".mlp.experts." in name or name.endswith(".mlp.gate.weight")


def train_domain_expert(
    moe: PreTrainedModel, sampler: WindowSampler, spec: TrainSpec, desc: str = "expert"
) -> dict[str, Any]:
    """Train expert 1 and router row 1 of a 2-expert FlexOlmo; everything else frozen.

    Gradients of the public expert (index 0) and router row 0 are zeroed by hooks, and
    AdamW runs with the given weight decay only on trainable tensors, so frozen slices
    get exactly zero updates when ``spec.weight_decay`` is 0. After training, every
    frozen tensor and slice is compared with its value before training.

    Args:
        moe: 2-expert ``FlexOlmoForCausalLM`` from ``upcycle_to_flexolmo``.
        sampler: windows of the domain's training tokens.
        spec: optimiser settings; ``weight_decay`` must be 0.
        desc: label for the progress bar.

    Returns:
        ``{"losses": [...], "frozen_identical": True, "frozen_tensors": n}``.

    Raises:
        RuntimeError: if any frozen weight changed.
    """
    import torch

    if spec.weight_decay != 0:
        raise ValueError(
            f"expert.weight_decay={spec.weight_decay}: decay would move the frozen "
            "public expert and router row 0, which share a tensor with trained slices; "
            "set it to 0"
        )
    frozen_before = {}
    trainable = []
    for name, param in moe.named_parameters():
        if _is_trainable(name):
            param.requires_grad_(True)
            trainable.append(param)
            frozen_before[name] = param.detach()[0].clone()
            param.register_hook(_zero_first_row)
        else:
            param.requires_grad_(False)
            frozen_before[name] = param.detach().clone()
    losses = train_causal_lm(moe, sampler, spec, trainable, desc)
    changed = []
    for name, param in moe.named_parameters():
        now = param.detach()[0] if _is_trainable(name) else param.detach()
        if not torch.equal(now, frozen_before[name]):
            changed.append(name)
        param.requires_grad_(True)
    if changed:
        raise RuntimeError(
            f"frozen weights changed during expert training: {changed[:5]}"
        )
    return {
        "losses": losses,
        "frozen_identical": True,
        "frozen_tensors": len(frozen_before),
    }


def _zero_first_row(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.clone()
    grad[0] = 0
    return grad


def frozen_weights_identical(public: PreTrainedModel, expert: PreTrainedModel) -> bool:
    """Check that a trained 2-expert FlexOlmo still carries the public model's weights.

    Compares attention, norms, embeddings and ``lm_head`` with the dense public model,
    and expert 0 with the public FFN, bit for bit.
    """
    import torch

    dense = public.state_dict()
    for key, value in expert.state_dict().items():
        if ".mlp.experts.gate_up_proj" in key:
            prefix = key.split(".mlp.")[0]
            ref = torch.cat(
                [
                    dense[f"{prefix}.mlp.gate_proj.weight"],
                    dense[f"{prefix}.mlp.up_proj.weight"],
                ]
            )
            if not torch.equal(value[0], ref):
                return False
        elif ".mlp.experts.down_proj" in key:
            prefix = key.split(".mlp.")[0]
            if not torch.equal(value[0], dense[f"{prefix}.mlp.down_proj.weight"]):
                return False
        elif ".mlp.gate.weight" in key:
            continue
        elif not torch.equal(value, dense[key]):
            return False
    return True


# ----------------------------------------------------------------------------- driver


@dataclass
class BuildResult:
    """Paths and held-out losses of a finished build."""

    root: Path
    public_dir: Path
    expert_dirs: dict[str, Path]
    merged_dir: Path
    summary: dict[str, Any]


def heldout_chunk_tensors(root: Path, config: BuildConfig) -> dict[str, torch.Tensor]:
    """Return the held-out evaluation sequences of every domain of a build."""
    from provex.moe.corpora import heldout_chunks

    tokens = load_token_data(root)
    return {
        name: heldout_chunks(t["heldout"], config.model.seq_len, config.eval_chunks)
        for name, t in tokens.items()
    }


def run_build(config: BuildConfig, output_dir: str | Path | None = None) -> BuildResult:
    """Run (or resume) every build stage and return where the checkpoints are.

    Args:
        config: the build definition.
        output_dir: overrides ``config.output_dir``.

    Returns:
        A ``BuildResult``; ``summary`` contains per-domain held-out losses of the public
        model and of each 2-expert model, and the merged model's.
    """
    import torch
    from transformers import AutoTokenizer, FlexOlmoForCausalLM, Olmo2ForCausalLM

    root = Path(output_dir or config.output_dir)
    progress = Progress(root)
    (root / "build.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    domains = _stage_corpora(config, root / "corpora")
    if not progress.done("corpora"):
        progress.finish(
            "corpora",
            docs={n: [len(d.train), len(d.heldout)] for n, d in domains.items()},
        )
    if not progress.done("tokenizer"):
        sizes = _stage_tokenizer(config, domains, root / "tokenizer")
        progress.finish("tokenizer", tokens=sizes)
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    tokens = load_token_data(root)
    heldout = heldout_chunk_tensors(root, config)

    public_dir = root / "public"
    if not progress.done("public"):
        start = time.time()
        model = Olmo2ForCausalLM(olmo2_config(config, tokenizer))
        sampler = WindowSampler(
            [t["train"] for t in tokens.values()], config.model.seq_len, config.seed
        )
        losses = train_causal_lm(model, sampler, config.public, desc="public")
        model.save_pretrained(public_dir)
        tokenizer.save_pretrained(public_dir)
        evals = {n: heldout_loss(model, c).loss for n, c in heldout.items()}
        progress.finish(
            "public",
            seconds=round(time.time() - start, 1),
            final_train_loss=sum(losses[-10:]) / len(losses[-10:]),
            heldout_loss=evals,
        )
    public = Olmo2ForCausalLM.from_pretrained(public_dir)

    embed_path = root / "router_init.pt"
    if not embed_path.exists():
        from provex.moe.corpora import heldout_chunks

        sample = {
            n: heldout_chunks(t["train"], config.model.seq_len, config.embedding_chunks)
            for n, t in tokens.items()
        }
        embeds = domain_embeddings(public, sample)
        embeds["public"] = torch.stack(list(embeds.values())).mean(0)
        for name, value in embeds.items():
            embeds[name] = (
                value / value.norm(dim=-1, keepdim=True) * config.router_init_norm
            )
        torch.save(embeds, embed_path)
    embeds = torch.load(embed_path)

    expert_dirs: dict[str, Path] = {}
    for index, name in enumerate(config.domain_names):
        stage = f"experts/{name}"
        expert_dirs[name] = root / stage
        if progress.done(stage):
            continue
        start = time.time()
        rows = torch.stack([embeds["public"], embeds[name]], dim=1)
        moe = upcycle_to_flexolmo(public, rows, num_experts_per_tok=2)
        sampler = WindowSampler(
            [tokens[name]["train"]], config.model.seq_len, config.seed + 1 + index
        )
        info = train_domain_expert(moe, sampler, config.expert, desc=f"expert {name}")
        if not frozen_weights_identical(public, moe):
            raise RuntimeError(
                f"expert {name}: shared weights differ from the public model"
            )
        moe.save_pretrained(expert_dirs[name])
        tokenizer.save_pretrained(expert_dirs[name])
        own = heldout_loss(moe, heldout[name]).loss
        progress.finish(
            stage,
            seconds=round(time.time() - start, 1),
            final_train_loss=sum(info["losses"][-10:]) / len(info["losses"][-10:]),
            frozen_identical=True,
            heldout_loss_own=own,
        )

    merged_dir = root / "merged"
    if not progress.done("merged"):
        from provex.moe.checkpoint import merge_checkpoints

        merge_checkpoints(
            [expert_dirs[n] for n in config.domain_names],
            merged_dir,
            names=config.domain_names,
            num_experts_per_tok=min(config.merged_top_k, len(config.domain_names) + 1),
            overwrite=True,
        )
        tokenizer.save_pretrained(merged_dir)
        merged = FlexOlmoForCausalLM.from_pretrained(merged_dir)
        progress.finish(
            "merged",
            experts=["public", *config.domain_names],
            heldout_loss={n: heldout_loss(merged, c).loss for n, c in heldout.items()},
        )

    if not progress.done("tasks"):
        from provex.moe.evaluation import write_continuation_tasks

        counts = write_continuation_tasks(
            domains,
            root / "tasks",
            config.task_items,
            config.task_choices,
            config.seed,
            olmes=config.olmes_tasks,
            olmes_limit=config.olmes_limit,
        )
        progress.finish("tasks", items=counts)

    summary = build_summary(root)
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    return BuildResult(root, public_dir, expert_dirs, merged_dir, summary)


def build_summary(root: Path) -> dict[str, Any]:
    """Collect the per-domain held-out losses of a build from its stage markers.

    Returns:
        ``{"public": {domain: loss}, "expert": {domain: loss}, "merged": {...}}``
        where ``expert[d]`` is the 2-expert model (public + expert d) on domain d.
    """

    def read(stage: str) -> dict[str, Any]:
        marker = root / stage / "DONE"
        return json.loads(marker.read_text()) if marker.exists() else {}

    public = read("public").get("heldout_loss", {})
    experts = {
        name: read(f"experts/{name}").get("heldout_loss_own")
        for name in public
        if read(f"experts/{name}")
    }
    return {
        "public": public,
        "expert": experts,
        "merged": read("merged").get("heldout_loss", {}),
    }
