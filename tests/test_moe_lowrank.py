"""Truncated SVD of expert deltas: factors, errors, methods, cache and rank parsing."""

from __future__ import annotations

import math

import pytest
import torch

from provex.moe.lowrank import (
    DecompositionCache,
    check_rank,
    choose_method,
    decompose,
    energy_rank,
    parse_ranks,
)


def _spectrum_matrix(
    rows: int, cols: int, decay: float = 0.8, seed: int = 0
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    u, _ = torch.linalg.qr(
        torch.randn(rows, k, generator=generator, dtype=torch.float64)
    )
    v, _ = torch.linalg.qr(
        torch.randn(cols, k, generator=generator, dtype=torch.float64)
    )
    s = torch.tensor([decay**i for i in range(k)], dtype=torch.float64)
    return ((u * s) @ v.T).float()


def test_factors_full_rank_exact():
    delta = _spectrum_matrix(48, 32)
    B, A = decompose(delta, None, "exact").factors(32)
    assert torch.allclose(B @ A, delta, atol=1e-5)


def test_factors_shapes():
    B, A = decompose(_spectrum_matrix(48, 32), 5, "exact").factors(5)
    assert B.shape == (48, 5)
    assert A.shape == (5, 32)


def test_factors_symmetric_split():
    d = decompose(_spectrum_matrix(48, 32), None, "exact")
    B, A = d.factors(3)
    # B = U sqrt(S) and A = sqrt(S) Vh, so column norms of B equal row norms of A.
    assert torch.allclose(B.norm(dim=0), A.norm(dim=1), atol=1e-5)
    assert torch.allclose(B.norm(dim=0) ** 2, d.S[:3], atol=1e-5)


def test_error_matches_eckart_young():
    delta = _spectrum_matrix(48, 32)
    d = decompose(delta, None, "exact")
    B, A = d.factors(4)
    measured = float((delta - B @ A).norm() / delta.norm())
    # Singular values 0.8**i: the relative error at rank r is 0.8**r for a long tail.
    expected = math.sqrt(
        sum(0.64**i for i in range(4, 32)) / sum(0.64**i for i in range(32))
    )
    assert measured == pytest.approx(expected, rel=1e-4)
    assert d.relative_error(4) == pytest.approx(measured, rel=1e-4)


def test_error_falls_with_rank():
    d = decompose(_spectrum_matrix(48, 32), None, "exact")
    errors = [d.relative_error(r) for r in range(1, 33)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False))
    assert errors[-1] == pytest.approx(0.0, abs=1e-3)


def test_retained_energy_full_is_one():
    d = decompose(_spectrum_matrix(48, 32), None, "exact")
    assert d.retained_energy(32) == pytest.approx(1.0, abs=1e-6)
    assert d.retained_energy(1) == pytest.approx(1 - 0.64, rel=1e-3)


def test_randomized_close_to_exact():
    delta = _spectrum_matrix(400, 300, decay=0.97)
    exact = decompose(delta, None, "exact").relative_error(16)
    randomized = decompose(delta, 16, "randomized")
    assert randomized.method == "randomized"
    assert randomized.relative_error(16) <= exact * 1.01


def test_randomized_error_is_true_residual():
    delta = _spectrum_matrix(200, 150, decay=0.95)
    d = decompose(delta, 8, "randomized")
    B, A = d.factors(8)
    measured = float((delta - B @ A).norm() / delta.norm())
    assert d.relative_error(8) == pytest.approx(measured, rel=1e-3)


def test_choose_method_by_rank():
    assert choose_method(16, 11008, 4096) == "randomized"
    assert choose_method(2048, 11008, 4096) == "exact"
    assert choose_method(4, 48, 32) == "exact"


def test_rank_too_large_message():
    with pytest.raises(ValueError, match=r"maximum is min\(rows, cols\) = 32"):
        check_rank(33, 48, 32)


def test_rank_zero_rejected():
    with pytest.raises(ValueError, match="1..32"):
        decompose(torch.zeros(48, 32), 0)


def test_cache_hits_after_first(tmp_path):
    cache = DecompositionCache(tmp_path)
    delta = _spectrum_matrix(48, 32)
    for rank in (1, 2, 4, 8, 16, 32):
        cache.get(delta, rank, "exact")
    assert cache.misses == 1
    assert cache.hits == 5


def test_cache_on_disk_reused(tmp_path):
    delta = _spectrum_matrix(48, 32)
    first = DecompositionCache(tmp_path).get(delta, 4, "exact")
    second_cache = DecompositionCache(tmp_path)
    second = second_cache.get(delta, 4, "exact")
    assert second_cache.misses == 0
    assert torch.equal(first.U, second.U)


def test_cache_corrupt_entry_is_miss(tmp_path):
    delta = _spectrum_matrix(48, 32)
    DecompositionCache(tmp_path).get(delta, 4, "exact")
    (entry,) = tmp_path.glob("*.safetensors")
    entry.write_bytes(b"not a safetensors file")
    cache = DecompositionCache(tmp_path)
    result = cache.get(delta, 4, "exact")
    assert cache.misses == 1
    assert result.rank == 32


def test_cache_exact_request_skips_randomized(tmp_path):
    delta = _spectrum_matrix(300, 200, decay=0.99)
    DecompositionCache(tmp_path).get(delta, 8, "randomized")
    cache = DecompositionCache(tmp_path)
    result = cache.get(delta, 8, "exact")
    assert cache.misses == 1
    assert result.method == "exact"


def test_cache_compute_rank_serves_sweep():
    cache = DecompositionCache(compute_rank=32)
    delta = _spectrum_matrix(300, 200, decay=0.99)
    for rank in (1, 2, 4, 8, 16, 32):
        cache.get(delta, rank, "randomized")
    assert cache.misses == 1
    assert cache.hits == 5


def test_cache_key_depends_on_content():
    a = torch.zeros(4, 4)
    b = a.clone()
    b[0, 0] = 1.0
    assert DecompositionCache.key(a) != DecompositionCache.key(b)


def test_parse_ranks_named():
    assert parse_ranks("math=64,code=full", ["public", "math", "code"]) == {
        1: 64,
        2: None,
    }


def test_parse_ranks_single_int():
    assert parse_ranks("8", ["public", "math", "code"]) == {1: 8, 2: 8}


def test_parse_ranks_unlisted_dense():
    assert parse_ranks("code=4", ["public", "math", "code"]) == {1: None, 2: 4}


def test_parse_ranks_unknown_name():
    with pytest.raises(ValueError, match="unknown expert 'poetry'"):
        parse_ranks("poetry=4", ["public", "math"])


def test_parse_ranks_public_rejected():
    with pytest.raises(ValueError, match="public expert"):
        parse_ranks("public=4", ["public", "math"])


def test_parse_ranks_bad_value():
    with pytest.raises(ValueError, match="invalid rank 'x'"):
        parse_ranks("math=x", ["public", "math"])


def test_energy_rank_hand_computed():
    # energies 9, 4, 1 of 14: 9/14 = 0.64, 13/14 = 0.93.
    values = torch.tensor([3.0, 2.0, 1.0])
    assert energy_rank(values, 0.6) == 1
    assert energy_rank(values, 0.9) == 2
    assert energy_rank(values, 0.95) == 3


def test_memory_cache_keeps_all_entries():
    cache = DecompositionCache()
    deltas = [_spectrum_matrix(48, 32, seed=s) for s in range(12)]
    for rank in (1, 2):
        for delta in deltas:
            cache.get(delta, rank, "exact")
    assert cache.misses == 12
    assert cache.hits == 12
