"""`python -m repabench <stage> ...`: every workflow stage as a command with explicit paths.

Each stage lives in the module of its concept as a function `fn(argv) -> int`; this table maps
stage names to them and imports a module only when its stage runs (so `--help` stays fast).
"""

from __future__ import annotations

import importlib
import sys

STAGES: dict[str, tuple[str, str]] = {
    "fetch_weights": ("repabench.weights:fetch_main", "resolve a weight file into resources/ and verify its SHA-256"),
    "prepare_images": ("repabench.data:prepare_images_main", "build the uint8 image store (demo set or ImageNet folder)"),
    "fit_autoencoder": ("repabench.vae:fit_autoencoder_main", "fit the offline PCA autoencoder on the demo images"),
    "cache_latents": ("repabench.vae:cache_latents_main", "encode images to VAE posterior moments [8,h,w]"),
    "latent_stats": ("repabench.vae:latent_stats_main", "per-channel latent bias/scale (or the constant 0.18215)"),
    "extract_features": ("repabench.encoders.extract:extract_features_main", "encoder patch tokens over an image store"),
    "train": ("repabench.train:train_main", "train SiT with REPA/iREPA (resumable, accelerate)"),
    "untrained": ("repabench.untrained:untrained_main", "the step-0 generator: the untrained baseline of the report"),
    "sample": ("repabench.sample:sample_main", "generate images in resumable, world-size independent shards"),
    "export_npz": ("repabench.sample:export_npz_main", "export sample shards to ADM's .npz layout (arr_0)"),
    "reference_stats": ("repabench.adm.stages:reference_stats_main", "ADM reference statistics of an image store or ADM npz"),
    "evaluate": ("repabench.adm.stages:evaluate_main", "ADM-exact FID, sFID, IS, precision, recall of a sample set"),
    "collect_metrics": ("repabench.adm.stages:collect_main", "per-run CSV (Steps, FID, sFID, IS, Precision, Recall)"),
    "spatial_metrics": ("repabench.spatial:spatial_metrics_main", "LDS, CDS, SRSS, RMSC of encoder features"),
    "linear_probe": ("repabench.probe:linear_probe_main", "linear-probe accuracy of mean-pooled patch tokens"),
    "correlate": ("repabench.stats:correlate_main", "Pearson/Spearman of LP and spatial metrics against FID"),
    "report": ("repabench.report.stage:report_main", "render the HTML and PDF report"),
    "fetch_published": ("repabench.published_files:fetch_published_main",
                        "resolve a file of the authors' REPA-E/iREPA-collections into resources/published/"),
    "import_checkpoint": ("repabench.upstream:import_checkpoint_main", "upstream checkpoint (ema, args) -> ours"),
    "import_run_log": ("repabench.upstream:import_run_log_main", "log.json of a run of imported checkpoints"),
    "import_latent_stats": ("repabench.upstream:import_latent_stats_main", "upstream latents-stats.pt -> stats.json"),
    "import_latents": ("repabench.upstream:import_latents_main", "upstream per-image latents -> our latent store"),
    "import_features": ("repabench.upstream:import_features_main", "upstream features + masks -> our feature store"),
    "import_probe": ("repabench.upstream:import_probe_main", "the authors' linear-probe result -> our probe JSON"),
    "paper_numbers": ("repabench.upstream:paper_numbers_main", "the authors' per-encoder FID/LP from their stats"),
}


def _usage() -> str:
    width = max(map(len, STAGES))
    lines = ["usage: python -m repabench <stage> [options]   (each stage has --help)", "", "stages:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"unknown stage {stage!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = STAGES[stage][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    from repabench.adm.images import ImageSetError
    from repabench.integrity import IntegrityError
    from repabench.store import StoreError

    try:
        return int(func(rest) or 0)
    except (StoreError, IntegrityError, ImageSetError) as exc:  # broken inputs: the message names file and fix
        print(f"{stage}: {exc}", file=sys.stderr)
        return 1
