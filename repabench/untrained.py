"""The untrained baseline: the generator as every run starts it (a step-0 checkpoint in the trainer's format),
so that a report can show what training bought: the `untrained` stage."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repabench.atomic import atomic_path
from repabench.provenance import provenance
from repabench.sit import MODEL_CONFIGS, build_sit, generator_kwargs, generator_state_dict, model_slug
from repabench.stage import parse_stage, stage_parser
from repabench.sizes import JIT_CONFIGS, MEANFLOW_CONFIGS, model_family
from repabench.train import TrainConfig, model_argument
from repabench.train_data import LatentStats, check_images, check_inputs, checksums, data_identity

log = logging.getLogger("repabench.untrained")

UNTRAINED_ENCODER, UNTRAINED_METHOD = "untrained", "none"


def untrained_checkpoint(images: Path, latents: Path | None, latent_stats: Path | None, model: str, seed: int,
                         class_dropout: float) -> dict[str, Any]:
    """A step-0 checkpoint in the trainer's format: the generator initialised from `seed` (the EMA of a run at
    step 0)."""
    if model_family(model) == "jit":
        return _untrained_jit(images, model, seed)
    image_store, latent_store = check_inputs(images, latents)
    moments = latent_store["moments"]
    channels, latent_size = moments.shape[1] // 2, moments.shape[2]
    stats = LatentStats.load(latent_stats, channels)
    num_classes = int(image_store.meta("num_classes") or int(np.max(latent_store["labels"])) + 1)
    torch.manual_seed(seed)
    if model_family(model) == "meanflow":  # as the trainer records it: the label dropout is the objective's
        from repabench.meanflow import MeanFlowObjective, build_meanflow_sit

        net = build_meanflow_sit(model, latent_size, in_channels=channels, num_classes=num_classes)
        kwargs = {k: v for k, v in generator_kwargs(net, class_dropout).items() if k != "class_dropout_prob"}
        record = {"model": {"family": "meanflow", "name": model, "kwargs": kwargs},
                  "objective": dataclasses.asdict(MeanFlowObjective())}
    else:
        net = build_sit(model, latent_size, in_channels=channels, num_classes=num_classes,
                        class_dropout_prob=class_dropout)
        record = {"model": {"name": model, "kwargs": generator_kwargs(net, class_dropout)}}
    params = {"model": model, "seed": seed, "data": data_identity(image_store, latent_store, stats)}
    return {"ema": {k: v.detach().clone() for k, v in generator_state_dict(net.state_dict()).items()},
            **record,
            "step": 0,
            "run": {"model": model_slug(model), "encoder": UNTRAINED_ENCODER, "method": UNTRAINED_METHOD},
            "method": None,
            "latent_stats": stats.as_dict(),
            "provenance": provenance("untrained", params, [images, latents, latent_stats], torch.device("cpu"),
                                     seed=seed)}


def _untrained_jit(images: Path, model: str, seed: int) -> dict[str, Any]:
    from repabench.jit import JiTObjective, build_jit

    image_store = check_images(images)
    num_classes = int(image_store.meta("num_classes") or int(np.max(image_store["labels"])) + 1)
    size = int(image_store["images"].shape[1])
    torch.manual_seed(seed)
    net = build_jit(model, size, num_classes=num_classes)
    params = {"model": model, "seed": seed, "data": {"images": checksums(image_store)}}
    return {"ema": {k: v.detach().clone() for k, v in generator_state_dict(net.state_dict()).items()},
            "model": {"family": "jit", "name": model, "kwargs": {"input_size": size, "num_classes": num_classes}},
            "step": 0,
            "run": {"model": model_slug(model), "encoder": UNTRAINED_ENCODER, "method": UNTRAINED_METHOD},
            "method": None,
            "objective": dataclasses.asdict(JiTObjective()),
            "provenance": provenance("untrained", params, [images], torch.device("cpu"), seed=seed)}


def untrained_main(argv: list[str]) -> int:
    parser = stage_parser("untrained", "The step-0 generator (no training): the baseline every run must beat.")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--latents", type=Path, default=None, help="SiT and MeanFlow only")
    parser.add_argument("--latent-stats", type=Path, default=None, help="SiT and MeanFlow only")
    parser.add_argument("--model", required=True, help=f"one of {', '.join([*MODEL_CONFIGS, *JIT_CONFIGS, *MEANFLOW_CONFIGS])}")
    parser.add_argument("--out", type=Path, required=True, help=".../checkpoints/0000000.pt")
    args, config, _, seed = parse_stage(parser, argv, {"train": TrainConfig, "seed": int})
    model = model_argument(args.model, args.latents, args.latent_stats)
    try:
        ckpt = untrained_checkpoint(args.images, args.latents, args.latent_stats, model, seed,
                                    config.train.class_dropout)
    except ValueError as exc:
        raise SystemExit(f"untrained: {exc}") from exc
    with atomic_path(args.out) as tmp:
        torch.save(ckpt, tmp)
    log.info("wrote %s (%s at initialisation, seed %s)", args.out, model, seed)
    return 0
