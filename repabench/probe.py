"""Linear probe of global information: `<encoder>-none-mean` (docs/upstream-facts.md §8; the protocol is ours).

Features are the encoder's final patch tokens, mean-pooled over the grid with no spatial
normalisation. One linear layer is trained with cross-entropy; the reported number is the best
validation top-1 accuracy (percent) over epochs and over a bank of heads, one head per
(learning rate, weight decay), all trained in the same pass over the same batches, as DINOv2's
linear evaluation does, so that no encoder is judged by an under-tuned probe.

Our choices where upstream is silent: features are standardised with the training mean/std (an
affine map the linear layer could absorb, so the probe stays linear, but it makes one learning-rate
grid fit every encoder's feature scale); AdamW with a cosine schedule; no augmentation.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from repabench.sections import config_section
from repabench.stage import parse_stage, stage_parser

log = logging.getLogger("repabench.probe")

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
# Below this many multiply-adds per step, CPU thread-pool synchronisation costs more than it saves
# (10x slower with 2 threads on a busy 2-core machine), so small probes run single-threaded.
SMALL_STEP_WORK = 1 << 24


@contextlib.contextmanager
def _torch_threads(count: int | None):
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def mean_pooled(tokens: np.ndarray | torch.Tensor, chunk: int = 1024, progress: bool = False) -> np.ndarray:
    """Tokens [N, T, D] (memory-mapped is fine) -> [N, D] float32 means over T, read chunk by chunk."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [N, T, D], got shape {tuple(tokens.shape)}")
    n, _, d = tokens.shape
    out = np.empty((n, d), dtype=np.float32)
    starts = range(0, n, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="mean-pool tokens", unit="chunk")
    for start in starts:
        block = np.asarray(tokens[start:start + chunk], dtype=np.float32)
        out[start:start + chunk] = block.mean(axis=1)
    return out


@dataclass
class ProbeResult:
    best_val_acc: float
    best_lr: float
    best_weight_decay: float
    best_epoch: int
    heads: list[dict[str, Any]] = field(default_factory=list)


@config_section("probe")
class ProbeConfig:
    """The `probe` section: the head bank's learning rates and weight decays, epochs, batch size, standardising."""

    epochs: int
    lrs: tuple[float, ...]
    weight_decays: tuple[float, ...]
    batch_size: int
    standardize: bool

    def __post_init__(self) -> None:
        if not self.lrs or not self.weight_decays:
            raise ValueError("probe.lrs and probe.weight_decays must each list at least one value")


def train_linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    lrs: Sequence[float] | None = None,
    weight_decays: Sequence[float] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    num_classes: int | None = None,
    standardize: bool | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> ProbeResult:
    """Train one linear head per (lr, weight decay) on the same batches; keep each head's best val accuracy.

    A setting left None is the `probe` section's default."""
    defaults = ProbeConfig()
    lrs = defaults.lrs if lrs is None else lrs
    weight_decays = defaults.weight_decays if weight_decays is None else weight_decays
    epochs = defaults.epochs if epochs is None else epochs
    batch_size = defaults.batch_size if batch_size is None else batch_size
    standardize = defaults.standardize if standardize is None else standardize
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError("features and labels differ in length")
    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError("the probe needs at least one training and one validation example")
    device = torch.device(device)
    num_classes = int(num_classes or max(int(np.max(y_train)), int(np.max(y_val))) + 1)
    xt = torch.as_tensor(np.asarray(x_train, dtype=np.float32), device=device)
    xv = torch.as_tensor(np.asarray(x_val, dtype=np.float32), device=device)
    yt = torch.as_tensor(np.array(y_train, dtype=np.int64), device=device)
    yv = torch.as_tensor(np.array(y_val, dtype=np.int64), device=device)
    if standardize:
        mean, std = xt.mean(0), xt.std(0).clamp_min(1e-6)
        xt, xv = (xt - mean) / std, (xv - mean) / std

    grid = [(float(lr), float(wd)) for lr in lrs for wd in weight_decays]
    n_heads, dim = len(grid), xt.shape[1]
    small = device.type == "cpu" and min(batch_size, len(xt)) * dim * num_classes * n_heads < SMALL_STEP_WORK
    with _torch_threads(1 if small else None):
        return _train_heads(xt, yt, xv, yv, grid, num_classes, epochs, batch_size, seed, progress)


def _train_heads(xt, yt, xv, yv, grid, num_classes, epochs, batch_size, seed, progress) -> ProbeResult:
    device = xt.device
    n_heads, dim = len(grid), xt.shape[1]
    head_lr = torch.tensor([g[0] for g in grid], device=device).view(-1, 1, 1)
    head_wd = torch.tensor([g[1] for g in grid], device=device).view(-1, 1, 1)
    weight = torch.zeros(n_heads, dim, num_classes, device=device, requires_grad=True)
    bias = torch.zeros(n_heads, 1, num_classes, device=device, requires_grad=True)
    moments = {p: (torch.zeros_like(p), torch.zeros_like(p)) for p in (weight, bias)}

    generator = torch.Generator(device="cpu").manual_seed(seed)
    n = xt.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    best = torch.full((n_heads,), -1.0, device=device)
    best_epoch = torch.zeros(n_heads, dtype=torch.long, device=device)
    step = 0
    epoch_iter = range(1, epochs + 1)
    if progress:
        from tqdm import tqdm

        epoch_iter = tqdm(epoch_iter, desc="linear probe", unit="epoch")
    for epoch in epoch_iter:
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            logits = torch.matmul(xt[idx], weight) + bias  # [H, B, C]
            loss = F.cross_entropy(logits.reshape(-1, num_classes), yt[idx].repeat(n_heads), reduction="sum")
            loss = loss / idx.numel()  # per head: mean over the batch; heads are independent
            grads = torch.autograd.grad(loss, (weight, bias))
            step += 1
            scale = 0.5 * (1 + math.cos(math.pi * (step - 1) / total))
            _adamw_step((weight, bias), grads, moments, head_lr * scale, head_wd, step)
        with torch.no_grad():
            acc = (torch.matmul(xv, weight) + bias).argmax(-1).eq(yv).float().mean(-1) * 100
            improved = acc > best
            best = torch.where(improved, acc, best)
            best_epoch = torch.where(improved, torch.full_like(best_epoch, epoch), best_epoch)

    with torch.no_grad():
        train_acc = (torch.matmul(xt, weight) + bias).argmax(-1).eq(yt).float().mean(-1) * 100
    heads = [
        {"lr": lr, "weight_decay": wd, "best_val_acc": float(best[h]), "best_epoch": int(best_epoch[h]),
         "final_train_acc": float(train_acc[h])}
        for h, (lr, wd) in enumerate(grid)
    ]
    top = max(range(n_heads), key=lambda h: (heads[h]["best_val_acc"], -h))
    return ProbeResult(heads[top]["best_val_acc"], grid[top][0], grid[top][1], heads[top]["best_epoch"], heads)


def _adamw_step(params, grads, moments, lr, wd, step):
    beta1, beta2 = ADAM_BETAS
    with torch.no_grad():
        for p, g in zip(params, grads):
            m, v = moments[p]
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            m_hat = m / (1 - beta1**step)
            v_hat = v / (1 - beta2**step)
            p.mul_(1 - lr * wd)
            p.sub_(lr * m_hat / (v_hat.sqrt() + ADAM_EPS))


def linear_probe_main(argv: list[str]) -> int:
    parser = stage_parser("linear_probe", "linear-probe accuracy of mean-pooled final patch tokens", device=True,
                          required={"--train": "feature store of the training split",
                                    "--val": "feature store of the validation split",
                                    "--encoder": None, "--out": "result JSON"})
    args, config, device, seed = parse_stage(parser, argv, {"probe": ProbeConfig, "seed": int})
    linear_probe(args.train, args.val, args.encoder, args.out, config.probe, seed, device, config.raw)
    return 0


def linear_probe(train: str | Path, val: str | Path, encoder: str, out: str | Path, probe: ProbeConfig, seed: int,
                 device: torch.device, recorded_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Probe an encoder's feature stores (train and val split) and write the result JSON; returns it."""
    from repabench.atomic import write_json
    from repabench.provenance import provenance
    from repabench.store import Store

    splits = {}
    for name, path in (("train", train), ("val", val)):
        store = Store(path, verify=True)
        labels = np.asarray(store["labels"])
        # A `pooled` array [N, D] (token means, written by extract_features for ImageNet-sized splits) spares
        # reading all the tokens; otherwise the tokens are mean-pooled here.
        if "pooled" in store:
            features = np.asarray(store["pooled"], dtype=np.float32)
        else:
            features = mean_pooled(store["tokens"], progress=True)
        if features.shape[0] != labels.shape[0]:
            raise SystemExit(f"{path}: {features.shape[0]} feature rows but {labels.shape[0]} labels; "
                             "rerun extract_features")
        splits[name] = (features, labels)
    (x_train, y_train), (x_val, y_val) = splits["train"], splits["val"]
    if x_train.shape[1] != x_val.shape[1]:
        raise SystemExit(f"train features have {x_train.shape[1]} dims, val features {x_val.shape[1]}: different encoders?")
    num_classes = int(max(y_train.max(), y_val.max())) + 1
    log.info("probe %s: %d train / %d val, %d dims, %d classes, %d heads on %s", encoder, len(y_train), len(y_val),
             x_train.shape[1], num_classes, len(probe.lrs) * len(probe.weight_decays), device)
    result = train_linear_probe(
        x_train, y_train, x_val, y_val, lrs=probe.lrs, weight_decays=probe.weight_decays, epochs=probe.epochs,
        batch_size=probe.batch_size, num_classes=num_classes, standardize=probe.standardize,
        seed=seed, device=device, progress=True,
    )
    chance = 100.0 * np.bincount(y_val, minlength=num_classes).max() / len(y_val)
    result_json = {
        "encoder": encoder,
        "best_val_acc": result.best_val_acc,
        "best_lr": result.best_lr,
        "best_weight_decay": result.best_weight_decay,
        "best_epoch": result.best_epoch,
        "chance": float(chance),
        "n_train": int(len(y_train)),
        "n_val": int(len(y_val)),
        "num_classes": num_classes,
        "feature_dim": int(x_train.shape[1]),
        "heads": result.heads,
        "provenance": provenance("linear_probe", recorded_params or {"probe": asdict(probe), "seed": seed},
                                 [train, val], device, seed=seed,
                                 protocol="mean-pooled final patch tokens, no spatial norm, standardised, "
                                          "linear head bank, AdamW + cosine, best val top-1"),
    }
    write_json(out, result_json)
    log.info("wrote %s: best val acc %.2f%% (lr %g, chance %.1f%%)", out, result.best_val_acc, result.best_lr, chance)
    return result_json
