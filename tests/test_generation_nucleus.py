"""The fast nucleus sampler draws from transformers' top-p distribution."""

import pytest
import torch
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from provex.prolog.nucleus import NucleusSampler, nucleus_mask


def reference_support(logits: torch.Tensor, temperature: float, top_p: float):
    scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
    scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.isfinite(scores)


def sampler_support(logits: torch.Tensor, temperature: float, top_p: float, k: int):
    """Tokens the sampler can draw: every token it draws over many seeds."""
    sampler = NucleusSampler(temperature, top_p, candidates=k)
    seen = torch.zeros_like(logits, dtype=torch.bool)
    torch.manual_seed(0)
    for _ in range(400):
        seen.scatter_(-1, sampler.draw(logits).unsqueeze(-1), True)
    return seen


@pytest.mark.parametrize("top_p", [0.3, 0.8, 0.95])
@pytest.mark.parametrize("k", [3, 64])
def test_support_matches_transformers(top_p, k):
    torch.manual_seed(1)
    # Peaked rows (nucleus of a few tokens) and flat rows (nucleus wider than k).
    logits = torch.cat([torch.randn(4, 40) * 4, torch.randn(4, 40) * 0.1])
    expected = reference_support(logits, 1.0, top_p)
    got = sampler_support(logits, 1.0, top_p, k)
    # Every drawn token is allowed, and every allowed token with a visible share
    # of the mass was drawn at least once in 400 tries.
    assert not (got & ~expected).any()
    probs = torch.softmax(logits, dim=-1)
    assert not (expected & ~got & (probs > 0.03)).any()


def test_nucleus_mask_rule():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert nucleus_mask(probs, 0.5).tolist() == [[True, False, False, False]]
    assert nucleus_mask(probs, 0.8).tolist() == [[True, True, False, False]]
    assert nucleus_mask(probs, 0.81).tolist() == [[True, True, True, False]]
    assert nucleus_mask(probs, 1.0).tolist() == [[True, True, True, True]]


@pytest.mark.parametrize("k", [2, 16])
def test_frequencies_follow_renormalised_nucleus(k):
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.06, 0.04]]))
    sampler = NucleusSampler(1.0, 0.85, candidates=k)
    torch.manual_seed(3)
    draws = sampler.draw(logits.expand(20000, -1))
    counts = torch.bincount(draws, minlength=5).float() / len(draws)
    expected = torch.tensor([0.4, 0.3, 0.2, 0.0, 0.0]) / 0.9
    assert torch.allclose(counts, expected, atol=0.015)


def test_temperature_sharpens():
    logits = torch.tensor([[1.0, 0.0]])
    torch.manual_seed(0)
    cold = NucleusSampler(0.2, 1.0).draw(logits.expand(5000, -1)).float().mean()
    hot = NucleusSampler(5.0, 1.0).draw(logits.expand(5000, -1)).float().mean()
    # Token 1 is the less likely one: rare when cold, near half when hot.
    assert cold < 0.02
    assert 0.35 < hot < 0.5


def test_processor_leaves_one_finite_entry():
    scores = torch.randn(3, 50)
    out = NucleusSampler(0.7, 0.9)(torch.zeros(3, 1, dtype=torch.long), scores)
    assert torch.isfinite(out).sum(dim=-1).tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    ("temperature", "top_p", "candidates"),
    [(0.0, 0.9, 8), (1.0, 0.0, 8), (1.0, 1.5, 8), (1.0, 0.9, 0)],
)
def test_rejects_invalid(temperature, top_p, candidates):
    with pytest.raises(ValueError):
        NucleusSampler(temperature, top_p, candidates=candidates)
