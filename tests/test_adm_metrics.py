"""ADM statistics against an independent numpy oracle of guided-diffusion's evaluator formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from repabench.adm import metrics as M


# ----------------------------------------------------------------------------------------------
# Oracle: a plain numpy re-statement of ADM's evaluations/evaluator.py


def oracle_statistics(acts):
    return np.mean(acts, axis=0), np.cov(acts, rowvar=False)


def oracle_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6, sqrtm=scipy.linalg.sqrtm):
    diff = mu1 - mu2
    covmean = sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("Imaginary component")
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def oracle_softmax(logits):
    logits = logits.astype(np.float32)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def oracle_inception_score(preds, split_size=5000):
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return float(np.mean(scores))


def oracle_distances(u, v):
    nu = np.sum(np.square(u), 1).reshape(-1, 1)
    nv = np.sum(np.square(v), 1).reshape(1, -1)
    return np.maximum(nu - 2 * u @ v.T + nv, 0.0).astype(np.float32)


def oracle_radii(feats, k=3):
    d = oracle_distances(feats, feats)
    return np.partition(d, list(range(k + 1)), axis=1)[:, k]


def oracle_precision_recall(ref, sample):
    r_ref, r_sample = oracle_radii(ref), oracle_radii(sample)
    d = oracle_distances(ref, sample)
    ref_in = np.any(d <= r_sample[None, :], axis=1)
    sample_in = np.any(d <= r_ref[:, None], axis=0)
    return float(np.mean(sample_in)), float(np.mean(ref_in))


# ----------------------------------------------------------------------------------------------


def _acts(rng, n, d, shift=0.0, scale=1.0):
    base = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    return (np.abs(base * scale + shift)).astype(np.float32)  # nonnegative, like pool3 features


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    acts = _acts(rng, 300, 32)
    stats = M.statistics(acts)
    mu, sigma = oracle_statistics(acts)
    assert stats.mu.dtype == np.float32 and sigma.dtype == np.float64
    np.testing.assert_array_equal(stats.mu, mu)
    np.testing.assert_array_equal(stats.sigma, sigma)


@pytest.mark.parametrize("n_sample", [500, 40])  # full-rank and rank-deficient sample covariance
def test_frechet_matches_oracle(n_sample):
    rng = np.random.default_rng(1)
    a, b = _acts(rng, n_sample, 64), _acts(rng, 800, 64, shift=0.3, scale=1.2)
    s, r = M.statistics(a), M.statistics(b)
    want = oracle_frechet(s.mu, s.sigma, r.mu, r.sigma)
    got = M.frechet_distance(s, r)
    assert got == pytest.approx(want, rel=1e-6)
    assert M.frechet_distance(s, r, method="eigh") == pytest.approx(want, rel=1e-6)
    assert M.frechet_distance(s, r, method="eigh", sample_factor=M.centred_factor(a)) == pytest.approx(want, rel=1e-6)


def test_frechet_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(2)
    va, vb = rng.uniform(0.1, 3, 50), rng.uniform(0.1, 3, 50)
    ma, mb = rng.standard_normal(50), rng.standard_normal(50)
    want = np.sum((ma - mb) ** 2) + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2)
    for method in ("sqrtm", "eigh"):
        got = M.frechet_distance(M.Statistics(ma, np.diag(va)), M.Statistics(mb, np.diag(vb)), method=method)
        assert got == pytest.approx(want, rel=1e-9)
    same = M.Statistics(ma, np.diag(va))
    assert abs(M.frechet_distance(same, same)) < 1e-9


def test_frechet_nonfinite_root_retries_with_offset(monkeypatch):
    """ADM's fallback: a non-finite sqrtm is recomputed with 1e-6 added to both diagonals."""
    rng = np.random.default_rng(3)
    a, b = _acts(rng, 10, 32), _acts(rng, 12, 32)  # both covariances singular (rank 9 / 11 in 32 dims)
    s, r = M.statistics(a), M.statistics(b)
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky_sqrtm(matrix):
        calls.append(matrix)
        if len(calls) == 1:
            return np.full_like(matrix, np.nan)
        return real_sqrtm(matrix)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
    got = M.frechet_distance(s, r)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s.sigma + 1e-6 * np.eye(32)) @ (r.sigma + 1e-6 * np.eye(32)))
    oracle_calls = []

    def flaky_oracle(matrix):
        oracle_calls.append(1)
        return np.full_like(matrix, np.nan) if len(oracle_calls) == 1 else real_sqrtm(matrix)

    assert np.isfinite(got)
    assert got == pytest.approx(oracle_frechet(s.mu, s.sigma, r.mu, r.sigma, sqrtm=flaky_oracle), rel=1e-6)


def test_frechet_near_singular_is_finite_and_matches_oracle():
    rng = np.random.default_rng(4)
    low_rank = rng.standard_normal((200, 3)) @ rng.standard_normal((3, 48))  # rank-3 features in 48 dims
    a = (low_rank + 1e-7 * rng.standard_normal((200, 48))).astype(np.float32)
    b = _acts(rng, 300, 48)
    s, r = M.statistics(a), M.statistics(b)
    got = M.frechet_distance(s, r)
    assert np.isfinite(got)
    assert got == pytest.approx(oracle_frechet(s.mu, s.sigma, r.mu, r.sigma), rel=1e-6)


def test_frechet_rejects_large_imaginary_part(monkeypatch):
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: m + 1j * np.eye(len(m)))
    stats = M.Statistics(np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="imaginary"):
        M.frechet_distance(stats, stats)


def test_frechet_dimension_mismatch_is_clear():
    with pytest.raises(ValueError, match="different dimensions"):
        M.frechet_distance(M.Statistics(np.zeros(3), np.eye(3)), M.Statistics(np.zeros(4), np.eye(4)))


@pytest.mark.parametrize("n", [12000, 3000])  # 12000: a ragged last split of 2000
def test_inception_score_matches_oracle(n):
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((n, 40)) * 3).astype(np.float32)
    probs = M.softmax_probs(logits)
    want = oracle_inception_score(oracle_softmax(logits))
    assert M.inception_score(probs) == pytest.approx(want, rel=1e-6)
    if n > 5000:  # the split structure matters: one split gives another value
        assert abs(M.inception_score(probs, split_size=n) - want) > 1e-4 * want


def test_inception_score_bounds():
    uniform = np.full((100, 10), 0.1, dtype=np.float32)
    assert M.inception_score(uniform) == pytest.approx(1.0)
    one_hot = np.full((100, 10), 1e-12, dtype=np.float64)
    one_hot[np.arange(100), np.arange(100) % 10] = 1.0
    assert M.inception_score(one_hot) == pytest.approx(10.0, rel=1e-6)


@pytest.mark.parametrize("block", [10000, 97])
def test_precision_recall_fp32_equals_oracle(block):
    rng = np.random.default_rng(6)
    ref = _acts(rng, 400, 64)
    sample = _acts(rng, 700, 64, shift=0.2, scale=1.3)
    want = oracle_precision_recall(ref, sample)
    got = M.precision_recall(ref, sample, fp16=False, block=block)
    assert got == want
    assert 0 < got[0] < 1 and 0 < got[1] < 1  # not a degenerate case


def test_precision_recall_boundary_is_inclusive():
    ref = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)  # radius of x=0 is 3^2 = 9
    sample = np.array([[-3.0], [-3.5], [10.0], [11.0], [12.0], [13.0]], dtype=np.float32)
    precision, recall = M.precision_recall(ref, sample, fp16=False)
    assert precision == oracle_precision_recall(ref, sample)[0] == 1 / 6  # -3 is exactly on the ball of 0
    assert recall == oracle_precision_recall(ref, sample)[1]


def test_precision_recall_fp16_close_and_falls_back_on_overflow():
    rng = np.random.default_rng(7)
    ref, sample = _acts(rng, 300, 64), _acts(rng, 300, 64, shift=0.2)
    p16 = M.precision_recall(ref, sample, fp16=True)
    p32 = M.precision_recall(ref, sample, fp16=False)
    assert abs(p16[0] - p32[0]) < 0.05 and abs(p16[1] - p32[1]) < 0.05
    big_ref, big_sample = ref * 300, sample * 300  # squared norms overflow fp16 (max 65504)
    assert M.precision_recall(big_ref, big_sample, fp16=True) == M.precision_recall(big_ref, big_sample, fp16=False)


def test_fp16_distances_round_like_half_precision():
    u = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    v = np.array([[1.0002, 2.0, 3.0]], dtype=np.float32)
    d16 = M.squared_distances(torch.tensor(u), torch.tensor(v), fp16=True)
    d32 = M.squared_distances(torch.tensor(u), torch.tensor(v), fp16=False)
    # in fp16 1.0002 rounds to 1.0, so the distance vanishes; fp32 keeps a tiny positive value
    assert float(d16) == 0.0 and 0 <= float(d32) < 1e-3
    assert d16.dtype == d32.dtype == torch.float32
