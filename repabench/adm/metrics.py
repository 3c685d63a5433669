"""ADM's evaluator statistics (guided-diffusion `evaluations/evaluator.py`), restated in numpy/torch.

* statistics: `mu = mean(acts, 0)` in the activations' dtype, `sigma = np.cov(acts, rowvar=False)` (float64, N-1);
* Frechet distance with `scipy.linalg.sqrtm`, ADM's retry with 1e-6 on the diagonals when the root is
  not finite, and its check that the diagonal's imaginary part stays below 1e-3;
* Inception Score from unbiased logits, softmax in float32, consecutive splits of 5000 (ragged last);
* precision/recall of Kynkaanniemi et al. with k = 3: squared distances (fp16 with an fp32 fallback per
  10000x10000 block, as TF computes them in ADM), radius = 4th smallest distance including self, `<=`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

IS_SPLIT_SIZE = 5000
PR_BLOCK = 10000
PR_NEIGHBOURHOOD = 3
FRECHET_EPS = 1e-6


@dataclass
class Statistics:
    mu: np.ndarray
    sigma: np.ndarray


def statistics(acts: np.ndarray) -> Statistics:
    acts = np.asarray(acts)
    if acts.ndim != 2 or len(acts) < 2:
        raise ValueError(f"statistics need at least 2 activation rows, got shape {acts.shape}")
    return Statistics(np.mean(acts, axis=0), np.cov(acts, rowvar=False))


def _trace_sqrt_eigh(sigma1: np.ndarray, sigma2: np.ndarray, factor1: np.ndarray | None) -> float:
    """tr sqrt(sigma1 sigma2) = sum sqrt(eig(F sigma2 F^T)) for any F with sigma1 = F^T F.

    F is the centred activations / sqrt(N-1) when given (cheap when N < dim), else from eigh(sigma1).
    """
    if factor1 is None:
        evals, evecs = np.linalg.eigh(sigma1)
        factor1 = np.sqrt(np.clip(evals, 0, None))[:, None] * evecs.T
    inner = factor1 @ sigma2 @ factor1.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    import scipy.linalg  # here, not at the top: the GPU check runs where only torch's stack is installed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return scipy.linalg.sqrtm(matrix)


def frechet_distance(sample: Statistics, ref: Statistics, method: str = "sqrtm",
                     sample_factor: np.ndarray | None = None) -> float:
    """ADM's `FIDStatistics.frechet_distance` (sample first, reference second).

    method="sqrtm" is ADM's computation; method="eigh" computes the same trace through a symmetric
    eigendecomposition (agrees to ~1e-9 relative where sqrtm is well defined, and is ~10x faster on CPU;
    with `sample_factor` = centred sample activations / sqrt(N-1) it is ~100x faster when N << dim).
    """
    mu1, mu2 = np.atleast_1d(sample.mu), np.atleast_1d(ref.mu)
    sigma1, sigma2 = np.atleast_2d(sample.sigma), np.atleast_2d(ref.sigma)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: sample {mu1.shape}/{sigma1.shape}, "
                         f"reference {mu2.shape}/{sigma2.shape} (reference built with another feature layer?)")
    diff = mu1 - mu2
    if method == "eigh":
        tr_covmean = _trace_sqrt_eigh(sigma1, sigma2, sample_factor)
    elif method == "sqrtm":
        covmean = _sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            log.warning("Frechet distance: singular product; adding %g to the diagonal of both covariances "
                        "(as ADM does)", FRECHET_EPS)
            offset = np.eye(sigma1.shape[0]) * FRECHET_EPS
            covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise ValueError(f"Frechet distance: imaginary component {np.max(np.abs(covmean.imag))} in "
                                 "sqrtm(sigma1 sigma2); the covariances are not valid (too few samples?)")
            covmean = covmean.real
        tr_covmean = float(np.trace(covmean))
    else:
        raise ValueError(f"unknown Frechet method {method!r}; use 'sqrtm' (ADM) or 'eigh'")
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def centred_factor(acts: np.ndarray) -> np.ndarray:
    """F with F^T F = np.cov(acts, rowvar=False)."""
    acts = np.asarray(acts, dtype=np.float64)
    return (acts - acts.mean(axis=0)) / np.sqrt(len(acts) - 1)


def bootstrap_indices(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """[n_boot, n] draws with replacement of the sample rows, from one seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_fids(acts: np.ndarray, ref: Statistics, indices: np.ndarray) -> np.ndarray:
    """FID of each resample acts[indices[b]] against fixed reference statistics (the FID's sampling noise).

    N <= dim (every CPU-sized sample set): through the N x N Gram matrices of the centred activations, so a
    resample costs an N x N eigendecomposition instead of a dim x dim one; otherwise each resample's statistics
    and Frechet distance (eigh route) directly.
    """
    acts = np.asarray(acts, dtype=np.float64)
    n, dim = acts.shape
    fids = np.empty(len(indices))
    if n > dim:
        for b, idx in enumerate(indices):
            fids[b] = frechet_distance(statistics(acts[idx]), ref, "eigh")
        return fids
    mean = acts.mean(axis=0)
    centred = acts - mean
    gram = centred @ centred.T
    kernel = centred @ np.asarray(ref.sigma, dtype=np.float64) @ centred.T
    offset = mean - np.asarray(ref.mu, dtype=np.float64)
    shift = centred @ offset
    const = float(offset @ offset + np.trace(ref.sigma))
    centring = np.eye(n) - 1.0 / n
    for b, idx in enumerate(indices):
        weights = np.bincount(idx, minlength=n) / n
        mean_term = 2 * weights @ shift + weights @ gram @ weights
        g = centring @ gram[np.ix_(idx, idx)] @ centring
        k = centring @ kernel[np.ix_(idx, idx)] @ centring
        tr_sigma1 = np.trace(g) / (n - 1)
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((k + k.T) / (2 * (n - 1))), 0, None)).sum()
        fids[b] = const + mean_term + tr_sigma1 - 2 * tr_covmean
    return fids


def softmax_probs(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """Row-wise float32 softmax of unbiased logits (TF's `softmax/logits` without the bias)."""
    logits = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    return torch.softmax(logits, dim=1).numpy()


def inception_score(probs: np.ndarray, split_size: int = IS_SPLIT_SIZE) -> float:
    """ADM's IS: consecutive splits (the last one ragged), exp(mean KL) per split, mean over splits."""
    scores = []
    for start in range(0, len(probs), split_size):
        part = probs[start:start + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


# ----------------------------------------------------------------------------------------------
# Precision / recall


def squared_distances(u: torch.Tensor, v: torch.Tensor, fp16: bool) -> torch.Tensor:
    """max(|u|^2 - 2 u.v + |v|^2, 0) as TF's `_batch_pairwise_distances`; in fp16 with an fp32
    fallback when any fp16 value is not finite. Returned as float32."""
    if fp16:
        u16, v16 = u.half(), v.half()
        nu = (u16 * u16).sum(1, keepdim=True)
        nv = (v16 * v16).sum(1, keepdim=True).T
        d16 = torch.clamp_min(nu - 2 * (u16 @ v16.T) + nv, 0)
        if bool(torch.isfinite(d16).all()):
            return d16.float()
    u, v = u.float(), v.float()
    nu = (u * u).sum(1, keepdim=True)
    nv = (v * v).sum(1, keepdim=True).T
    return torch.clamp_min(nu - 2 * (u @ v.T) + nv, 0)


def manifold_radii(feats: torch.Tensor, fp16: bool, k: int = PR_NEIGHBOURHOOD, block: int = PR_BLOCK) -> torch.Tensor:
    """Squared distance to the k-th nearest neighbour (self counts as the 0th), per row."""
    n = len(feats)
    if n <= k:
        raise ValueError(f"precision/recall need more than {k} images per set, got {n}")
    radii = torch.empty(n, dtype=torch.float32, device=feats.device)
    for r0 in range(0, n, block):
        rows = feats[r0:r0 + block]
        smallest = None  # the k+1 smallest distances seen so far, per row
        for c0 in range(0, n, block):
            d = squared_distances(rows, feats[c0:c0 + block], fp16)
            cand = d if smallest is None else torch.cat([smallest, d], 1)
            smallest = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
        radii[r0:r0 + block] = smallest[:, k]
    return radii


def precision_recall(ref: np.ndarray | torch.Tensor, sample: np.ndarray | torch.Tensor, *, fp16: bool = True,
                     device: str | torch.device = "cpu", block: int = PR_BLOCK) -> tuple[float, float]:
    """ADM's `compute_prec_recall(ref, sample)`: (precision, recall).

    precision = fraction of samples within some reference ball; recall = fraction of reference images
    within some sample ball; a ball is the k=3 radius, and membership uses `<=`.
    """
    ref_t = torch.as_tensor(np.asarray(ref, dtype=np.float32)).to(device)
    sample_t = torch.as_tensor(np.asarray(sample, dtype=np.float32)).to(device)
    if ref_t.shape[1] != sample_t.shape[1]:
        raise ValueError(f"reference features have dim {ref_t.shape[1]}, samples {sample_t.shape[1]}")
    ref_radii = manifold_radii(ref_t, fp16, block=block)
    sample_radii = manifold_radii(sample_t, fp16, block=block)
    ref_in = torch.zeros(len(ref_t), dtype=torch.bool, device=ref_t.device)
    sample_in = torch.zeros(len(sample_t), dtype=torch.bool, device=sample_t.device)
    for r0 in range(0, len(ref_t), block):
        for s0 in range(0, len(sample_t), block):
            d = squared_distances(ref_t[r0:r0 + block], sample_t[s0:s0 + block], fp16)
            ref_in[r0:r0 + block] |= (d <= sample_radii[None, s0:s0 + block]).any(1)
            sample_in[s0:s0 + block] |= (d <= ref_radii[r0:r0 + block, None]).any(0)
    return int(sample_in.sum()) / len(sample_in), int(ref_in.sum()) / len(ref_in)
