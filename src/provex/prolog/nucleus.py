"""Exact temperature and top-p sampling that avoids sorting the whole vocabulary.

``transformers`` applies top-p by sorting every row of logits at every step. With a
262k-token vocabulary (Gemma 3) and a batch of 20, that sort costs more than the
model's own decoding step on a CPU. :class:`NucleusSampler` draws from the same
distribution, softmax(logits / T) restricted to the smallest set of most likely
tokens whose mass reaches ``top_p``, from the ``k`` largest logits only. It falls
back to a full sort for the rare rows whose nucleus does not fit in those ``k``.

The sampler is a logits processor that returns a row with one finite entry (the drawn
token), so it runs under greedy decoding: ``generate(do_sample=False,
logits_processor=[NucleusSampler(...)])``. It draws from torch's global generator,
so ``torch.manual_seed`` makes runs repeat.
"""

from __future__ import annotations

import torch


def nucleus_mask(probs_desc: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mark the nucleus tokens of rows sorted by falling probability.

    A token is kept when the mass of the tokens ranked above it is below ``top_p``.
    This is the rule of ``TopPLogitsWarper`` in transformers 5, and it always keeps
    the most likely token.
    """
    above = probs_desc.cumsum(dim=-1) - probs_desc
    return above < top_p


class NucleusSampler:
    """Sample one token per row with temperature and top-p.

    Args:
        temperature: divisor of the logits before the softmax. Must be positive.
        top_p: nucleus mass in (0, 1]. A value of 1 samples from the whole
            distribution.
        candidates: number of largest logits to look at before falling back to a
            full sort.
    """

    def __init__(self, temperature: float, top_p: float, candidates: int = 512):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.temperature = temperature
        self.top_p = top_p
        self.candidates = candidates

    def draw(self, scores: torch.Tensor) -> torch.Tensor:
        """Return one sampled token id per row of ``scores`` (batch, vocab)."""
        logits = scores.float() / self.temperature
        if self.top_p >= 1:
            probs = torch.softmax(logits, dim=-1)
            return torch.multinomial(probs, 1).squeeze(-1)
        log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
        k = min(self.candidates, logits.shape[-1])
        top_logits, top_ids = torch.topk(logits, k, dim=-1)
        top_probs = torch.exp(top_logits - log_norm)
        tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
        fits = top_probs.sum(dim=-1) >= self.top_p
        if fits.any():
            rows = fits.nonzero().squeeze(-1)
            nucleus_probs = top_probs[rows] * nucleus_mask(top_probs[rows], self.top_p)
            pick = torch.multinomial(nucleus_probs, 1)
            tokens[rows] = top_ids[rows].gather(-1, pick).squeeze(-1)
        if not fits.all():
            rows = (~fits).nonzero().squeeze(-1)
            probs = torch.softmax(logits[rows], dim=-1)
            probs_desc, order = probs.sort(dim=-1, descending=True)
            nucleus_probs = probs_desc * nucleus_mask(probs_desc, self.top_p)
            pick = torch.multinomial(nucleus_probs, 1)
            tokens[rows] = order.gather(-1, pick).squeeze(-1)
        return tokens

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        tokens = self.draw(scores)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, tokens.unsqueeze(-1), 0.0)
        return out
