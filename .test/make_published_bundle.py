"""Write a tiny synthetic "published" bundle in the exact file layout of HF `REPA-E/iREPA-collections`.

    python .test/make_published_bundle.py .test/published

Nothing here is the authors' data: weights, features and numbers are random, seeded, and small. The layouts are
upstream's (docs/upstream-facts.md; End2End-Diffusion/iREPA commit 99ad4ac):

* `exps_irepa_400k/<exp>/checkpoints/<step:07d>.pt`: `torch.save` of `{"model", "ema", "opt", "args", "steps"}`
  with `args` an `argparse.Namespace` (ldm/train.py, the checkpoint dict at `checkpointing_steps`); SiT keys as
  ldm/models/sit.py names them (timm PatchEmbed `x_embedder.proj.*`, projectors under
  `projectors.<i>.projection_layer.*`). One run is saved with `_orig_mod.` keys, as a compiled model's state
  dict is.
* `pretrained_models/sdvae-ft-mse-f8d4-latents-stats.pt`: `{"latents_scale", "latents_bias"}`, shape [1, 4, 1, 1]
  (ldm/train.py reads them with `.view(1, -1, 1, 1)`).
* `spatial-metrics-data/features/<encoder>.pt` a tensor [N, 256, D]; `spatial-metrics-data/masks/*.png`;
  `spatial-metrics-data/stats/fid/<eval>.csv` (Steps, FID, ...) and `stats/lp/<encoder>-none-mean/metrics.json`
  (`best_val_acc`) (metrics/spatial_metrics_comparison.py).
* `data/vae-sd/NNNNN/img-mean-std-NNNNNNNN.npy` + `dataset.json` (REPA preprocessing/dataset_tools.py encode).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENCODERS = ("dinov2-vit-b", "dinov3-vit-b16", "spatialpe-vit-b")
MODEL = "SiT-T/2"
RESOLUTION = 128
NUM_CLASSES = 10
STEPS = (4,)
N_MASKS = 10
FEATURES_FILTERED = "spatialpe-vit-b"  # this encoder's features cover only the masks that pass the filter
COMPILED = "dinov3-vit-b16"  # this run's checkpoint carries `_orig_mod.` keys


def exp_name(encoder: str, method: str = "repa") -> str:
    return f"sit-t-2-{encoder}-{method}"


def checkpoint_path(encoder: str, step: int, method: str = "repa") -> str:
    return f"exps_irepa_400k/{exp_name(encoder, method)}/checkpoints/{step:07d}.pt"


def fid_file(encoder: str) -> str:
    return f"spatial-metrics-data/stats/fid/sit-t-2-sdvae-enc8-{encoder}_cfg1.0-seed0-modesde-steps250.csv"


def upstream_args(encoder: str, **overrides) -> argparse.Namespace:
    """The argparse Namespace of ldm/train.py (the options that matter here, with upstream's names)."""
    values = dict(model=MODEL, enc_type=encoder, resolution=RESOLUTION, num_classes=NUM_CLASSES, cfg_prob=0.1,
                  encoder_depth=1, projection_layer_type="mlp", proj_kwargs_kernel_size=1, spnorm_method="none",
                  proj_coeff="0.5", qk_norm=False, fused_attn=True, exp_name=exp_name(encoder), output_dir="exps",
                  path_type="linear", prediction="v", repa_loss=True, seed=0, batch_size=256)
    values.update(overrides)
    return argparse.Namespace(**values)


def to_upstream_keys(state: dict, z_dim: int, projector_dim: int = 64, compiled: bool = False, seed: int = 0) -> dict:
    """Our SiT state dict -> the key names of iREPA's SiT, plus its MLP projector (which generation ignores)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if key.startswith("x_embedder."):
            key = "x_embedder.proj." + key[len("x_embedder."):]
        out[key] = value
    hidden = state["x_embedder.weight"].shape[0]
    for i, (fan_in, fan_out) in enumerate(((hidden, projector_dim), (projector_dim, projector_dim),
                                           (projector_dim, z_dim))):
        out[f"projectors.0.projection_layer.{2 * i}.weight"] = torch.randn(fan_out, fan_in, generator=gen) * 0.02
        out[f"projectors.0.projection_layer.{2 * i}.bias"] = torch.zeros(fan_out)
    if compiled:
        out = {"_orig_mod." + k: v for k, v in out.items()}
    return out


def save_upstream_checkpoint(path: Path, ema: dict, args: argparse.Namespace, steps: int) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    model = {k.replace("_orig_mod.", ""): v.clone() for k, v in ema.items()}
    torch.save({"model": model, "ema": ema, "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "args": args,
                "steps": steps}, path)


def random_sit_state(seed: int) -> dict:
    """A SiT-T/2 whose weights are all perturbed (adaLN-zero would otherwise predict zero velocity)."""
    import torch

    from repabench.sit import build_sit

    torch.manual_seed(seed)
    net = build_sit(MODEL, input_size=RESOLUTION // 8, in_channels=4, num_classes=NUM_CLASSES, class_dropout_prob=0.1)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        if key == "pos_embed":
            state[key] = value.clone()
        else:
            state[key] = value + torch.randn(value.shape, generator=gen) * (0.05 + 0.05 * (seed % 3))
    return state


def mask_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Rectangles of varying size: some pass upstream's >= 64 fg and >= 64 bg patch filter, the small ones fail."""
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(n):
        mask = np.zeros((96, 96), dtype=np.uint8)  # not 256: upstream resizes every mask to 256x256
        side = 12 if i % 4 == 3 else int(rng.integers(40, 70))
        y, x = rng.integers(0, 96 - side, size=2)
        mask[y:y + side, x:x + side] = 255
        masks.append(mask)
    return masks


def smooth_features(n: int, dim: int, smoothness: float, seed: int) -> np.ndarray:
    """Tokens [n, 256, dim] on a 16x16 grid: a spatially smooth field plus noise (more smoothness, more structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    freqs = rng.normal(size=(dim, 2)) / (1.0 + 4.0 * smoothness)
    phase = rng.uniform(0, 2 * np.pi, size=(n, dim))
    field = np.cos(xx.reshape(1, -1, 1) * freqs[:, 0] + yy.reshape(1, -1, 1) * freqs[:, 1] + phase[:, None, :])
    return (smoothness * field + rng.normal(size=(n, 256, dim))).astype(np.float16)


def write_bundle(root: str | Path, encoders=ENCODERS) -> Path:
    import torch
    from PIL import Image

    from repabench.encoders import encoder_spec
    from repabench.upstream import upstream_kept

    root = Path(root)
    for index, encoder in enumerate(encoders):
        state = random_sit_state(seed=index + 1)
        z_dim = encoder_spec(encoder).embed_dim
        for step in STEPS:
            ema = to_upstream_keys(state, z_dim, compiled=encoder == COMPILED, seed=index)
            save_upstream_checkpoint(root / checkpoint_path(encoder, step), ema, upstream_args(encoder), step)
    stats = root / "pretrained_models/sdvae-ft-mse-f8d4-latents-stats.pt"
    stats.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"latents_scale": torch.full((1, 4, 1, 1), 0.9), "latents_bias": torch.full((1, 4, 1, 1), 0.05)}, stats)

    masks_dir = root / "spatial-metrics-data/masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    masks = mask_images(N_MASKS)
    for i, mask in enumerate(masks):
        Image.fromarray(mask, mode="L").save(masks_dir / f"ILSVRC2012_val_{i + 1:08d}.png")
    resized = np.stack([np.asarray(Image.fromarray(m).resize((256, 256))) for m in masks])
    n_kept = upstream_kept(resized).size
    for index, encoder in enumerate(encoders):
        dim = encoder_spec(encoder).embed_dim
        n = n_kept if encoder == FEATURES_FILTERED else N_MASKS
        feats = root / f"spatial-metrics-data/features/{encoder}.pt"
        feats.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torch.from_numpy(smooth_features(n, dim, smoothness=0.5 + index, seed=index)), feats)
        fid = root / fid_file(encoder)
        fid.parent.mkdir(parents=True, exist_ok=True)
        rows = ["Steps,FID,sFID,IS,Precision,Recall"]
        rows += [f"{s},{300.0 + 10 * index - s:.2f},{40.0 + index:.2f},{1.5 + 0.1 * index:.2f},0.01,0.02"
                 for s in (2, *STEPS)]
        fid.write_text("\n".join(rows) + "\n")
        lp = root / f"spatial-metrics-data/stats/lp/{encoder}-none-mean/metrics.json"
        lp.parent.mkdir(parents=True, exist_ok=True)
        lp.write_text(json.dumps({"best_val_acc": 60.0 + 7.5 * index, "best_epoch": 10}))
    return root


def write_latent_folder(root: str | Path, n: int = 6, channels: int = 4, size: int = 4, seed: int = 0) -> Path:
    """REPA's per-image latent layout: vae-sd/NNNNN/img-mean-std-NNNNNNNN.npy plus dataset.json labels."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    labels = []
    for i in range(n):
        file = root / f"{i // 1000:05d}" / f"img-mean-std-{i:08d}.npy"
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, rng.normal(size=(2 * channels, size, size)).astype(np.float32))
        labels.append([f"{i // 1000:05d}/img{i:08d}.png", int(i % 3)])
    (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".test/published")
    print(write_bundle(target))
