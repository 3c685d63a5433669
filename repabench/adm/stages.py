"""Stages `reference_stats`, `evaluate` and `collect_metrics`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from repabench.atomic import atomic_path, read_json, write_json, write_text
from repabench.columns import CURVE_COLUMNS
from repabench.integrity import read_result
from repabench.sections import config_section
from repabench.stage import parse_stage, stage_parser
from repabench.provenance import params_hash, provenance, sha256_file

log = logging.getLogger(__name__)

REFERENCE_FORMAT = "repabench-adm-reference-v1"
NO_LOGITS = ("these Inception weights have no logits layer (fid-helper ships none); use the torch-fidelity "
             "weights (evaluate.inception: torch-fidelity) for IS")


@config_section("evaluate")
class EvaluateConfig:
    """The `evaluate` section. `reference` and `inception` choose the rule's input files; the stage gets paths."""

    reference: str
    inception: str
    batch_size: int
    pr_fp16: bool
    frechet: str
    fid_bootstrap: int
    bootstrap_seed: int

    def __post_init__(self) -> None:
        if self.frechet not in {"auto", "sqrtm", "eigh"}:
            raise ValueError(f"evaluate.frechet must be auto, sqrtm or eigh, not {self.frechet!r}")
        if int(self.batch_size) < 1:
            raise ValueError("evaluate.batch_size must be >= 1")
        if int(self.fid_bootstrap) < 0:
            raise ValueError("evaluate.fid_bootstrap must be >= 0 (0 = no noise floor)")


EVALUATE_PARAMS = {"evaluate": EvaluateConfig}

def weights_identity(path: str | Path) -> dict[str, Any]:
    from repabench.weights import sidecar, verified_path

    path = verified_path(path)
    record = sidecar(path)
    digest = read_json(record)["sha256"] if record.exists() else sha256_file(path)
    return {"name": path.name, "path": str(path), "sha256": digest}


def _model(weights: str, device):
    """channels_last everywhere; BN folded on CPU (+10% there). Both move features by float rounding only."""
    from repabench.adm.inception import load_inception

    return load_inception(weights, device, channels_last=True, fuse=torch.device(device).type == "cpu")


# ----------------------------------------------------------------------------------------------
# Reference statistics


def write_reference(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # an open handle keeps np.savez from appending ".npz"
            np.savez(handle, **arrays, meta=np.array(json.dumps(meta, default=str)))


def read_reference(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"reference statistics {path} do not exist; run `snakemake {path}` "
                         "(stage reference_stats) first")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("mu", "sigma", "mu_s", "sigma_s", "pool", "meta") if k not in data.files]
        if missing:
            raise SystemExit(f"{path} lacks {missing}; it is not a reference_stats output. Rebuild it with the "
                             "reference_stats stage")
        arrays = {k: data[k] for k in ("mu", "sigma", "mu_s", "sigma_s", "pool")}
        meta = json.loads(str(data["meta"]))
    if meta.get("format") != REFERENCE_FORMAT:
        raise SystemExit(f"{path}: format {meta.get('format')!r}, expected {REFERENCE_FORMAT}; rebuild it")
    return arrays, meta


def reference_statistics(source_path: str | Path, weights: str | Path, device, batch_size: int,
                         params: Mapping[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from repabench.adm.features import extract
    from repabench.adm.images import NpzImages, open_images
    from repabench.adm.metrics import statistics

    source = open_images(source_path, verify=True)
    if source.count < 4:
        raise SystemExit(f"{source_path} holds {source.count} images; reference statistics need at least 4")
    inception = weights_identity(weights)
    given: dict[str, np.ndarray] = {}
    if isinstance(source, NpzImages):
        with np.load(source.path) as data:
            if "mu" in data.files:  # ADM reference batch: precomputed whole-dataset statistics
                given = {k: data[k] for k in ("mu", "sigma", "mu_s", "sigma_s")}
    model = _model(weights, device)
    feats = extract(model, source, batch_size, device, desc="reference", want_spatial=not given, want_logits=False)
    if given:
        arrays = {**given, "pool": feats.pool}
        origin = "precomputed statistics of the source npz (mu, sigma, mu_s, sigma_s); pool features of its arr_0"
    else:
        pool, spatial = statistics(feats.pool), statistics(feats.spatial)
        arrays = {"mu": pool.mu, "sigma": pool.sigma, "mu_s": spatial.mu, "sigma_s": spatial.sigma, "pool": feats.pool}
        origin = "computed from the source images"
    source_id = source.identity()
    source_hash = source_id.get("content_sha256") or source_id["sha256"]  # stores by content, an npz by its bytes
    meta = {
        "format": REFERENCE_FORMAT,
        "key": params_hash({"inception_sha256": inception["sha256"], "source_sha256": source_hash}, 32),
        "inception": inception,
        "source": source_id,
        "n_images": source.count,
        "statistics": origin,
        "images_per_second": round(feats.images_per_second, 2),
        # no timestamp: identical runs write identical reference files (and record identical input hashes)
        "provenance": {k: v for k, v in provenance("reference_stats", dict(params or {}), [source_path, weights],
                                                   device, inception_sha256=inception["sha256"],
                                                   source_sha256=source_hash).items() if k != "created"},
    }
    return arrays, meta


def reference_stats_main(argv: list[str]) -> int:
    parser = stage_parser("reference_stats", "ADM reference statistics (mu, sigma, mu_s, sigma_s, pool features) "
                          "of an image store or an ADM .npz (e.g. VIRTUAL_imagenet256_labeled.npz).", device=True,
                          required={"--source": "image store directory (results/data/heldout) or ADM .npz",
                                    "--inception-weights": "resources/weights/<inception weights>",
                                    "--out": "results/reference/<name>.npz"})
    args, config, device, _ = parse_stage(parser, argv, EVALUATE_PARAMS)
    arrays, meta = reference_statistics(args.source, args.inception_weights, device, config.evaluate.batch_size,
                                        config.raw)
    write_reference(args.out, arrays, meta)
    log.info("wrote %s (%d images, key %s)", args.out, meta["n_images"], meta["key"])
    return 0


# ----------------------------------------------------------------------------------------------
# Evaluation


def fid_noise(acts: np.ndarray, ref, fid: float, n_boot: int, seed: int) -> dict[str, Any] | None:
    """The FID's noise floor from resampling the generated samples: bootstrap SD, a normal 95% interval around
    the estimate, and the bootstrap percentiles (resampling with replacement biases FID upward, so the
    percentile interval sits above the estimate; the SD is what comparisons use)."""
    from repabench.adm.metrics import bootstrap_fids, bootstrap_indices
    from repabench.verdict import Z95

    if n_boot < 2:
        return None
    fids = bootstrap_fids(acts, ref, bootstrap_indices(len(acts), n_boot, seed))
    sd = float(np.std(fids, ddof=1))
    return {"sd": sd, "interval": [fid - Z95 * sd, fid + Z95 * sd],
            "percentile_interval": [float(np.percentile(fids, 2.5)), float(np.percentile(fids, 97.5))],
            "n_boot": n_boot, "seed": seed, "level": 0.95,
            "method": "bootstrap over generated samples, reference statistics fixed"}


def compute_metrics(feats, reference: Mapping[str, np.ndarray], config: EvaluateConfig, device) -> dict[str, Any]:
    from repabench.adm.metrics import (Statistics, centred_factor, frechet_distance, inception_score,
                                       precision_recall, softmax_probs, statistics)

    def frechet(acts: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> tuple[float, str]:
        method = config.frechet
        if method == "auto":  # ADM's sqrtm where the sample covariance has full rank, else the exact eigh route
            method = "sqrtm" if len(acts) > acts.shape[1] else "eigh"
        factor = centred_factor(acts) if method == "eigh" and len(acts) <= acts.shape[1] else None
        return frechet_distance(statistics(acts), Statistics(mu, sigma), method, sample_factor=factor), method

    timings: dict[str, float] = {}
    began = time.perf_counter()
    fid, fid_method = frechet(feats.pool, reference["mu"], reference["sigma"])
    sfid, _ = frechet(feats.spatial, reference["mu_s"], reference["sigma_s"])
    timings["frechet_s"] = time.perf_counter() - began
    result: dict[str, Any] = {"FID": fid, "sFID": sfid}
    began = time.perf_counter()
    result["FID_noise"] = fid_noise(feats.pool, Statistics(reference["mu"], reference["sigma"]), fid,
                                    config.fid_bootstrap, config.bootstrap_seed)
    timings["fid_bootstrap_s"] = time.perf_counter() - began
    if feats.logits is not None:
        result["IS"] = inception_score(softmax_probs(feats.logits))
    else:
        result["IS"], result["IS_note"] = None, NO_LOGITS
    began = time.perf_counter()
    result["Precision"], result["Recall"] = precision_recall(reference["pool"], feats.pool,
                                                              fp16=config.pr_fp16, device=device)
    timings["precision_recall_s"] = time.perf_counter() - began
    result["method"] = {"frechet": fid_method, "pr_distances": "fp16" if config.pr_fp16 else "fp32",
                        "is_split_size": 5000, "pr_k": 3}
    result["timing"] = {k: round(v, 3) for k, v in timings.items()}
    return result


def evaluate_main(argv: list[str]) -> int:
    parser = stage_parser("evaluate", "ADM-exact FID, sFID, IS, precision and recall of a sample set.", device=True,
                          required={"--samples": "sample directory (manifest.json + shards/) or ADM .npz",
                                    "--reference": "results/reference/<name>.npz from reference_stats",
                                    "--inception-weights": None, "--out": "metrics JSON"})
    parser.add_argument("--run", default=None, help="JSON merged into the run block (default: the sample manifest's; "
                        "an ADM .npz has none)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="check every shard's SHA-256 before reading (default; --no-verify skips it)")
    args, config, device, _ = parse_stage(parser, argv, EVALUATE_PARAMS)
    result = evaluate(args.samples, args.reference, args.inception_weights, config.evaluate, device,
                      params=config.raw, run=json.loads(args.run) if args.run else None, verify=args.verify)
    write_json(args.out, result)
    log.info("%s: FID %.4f sFID %.4f IS %s P %.4f R %.4f", args.out, result["FID"], result["sFID"], result["IS"],
             result["Precision"], result["Recall"])
    return 0


def evaluate(samples: str | Path, reference_path: str | Path, weights: str | Path, config: EvaluateConfig,
             device, params: Mapping[str, Any] | None = None, run: Mapping[str, Any] | None = None,
             verify: bool = True) -> dict[str, Any]:
    from repabench.adm.features import extract
    from repabench.adm.images import open_images

    reference, ref_meta = read_reference(reference_path)
    inception = weights_identity(weights)
    if ref_meta["inception"]["sha256"] != inception["sha256"]:
        raise SystemExit(f"{reference_path} was built with Inception weights {ref_meta['inception']['name']} "
                         f"({ref_meta['inception']['sha256'][:12]}), not {inception['name']} "
                         f"({inception['sha256'][:12]}); rebuild the reference with the same weights")
    source = open_images(samples, verify=verify)
    if source.count < 4:
        raise SystemExit(f"{samples} holds {source.count} images; precision/recall need at least 4")
    model = _model(weights, device)
    feats = extract(model, source, config.batch_size, device, desc="samples")
    result = compute_metrics(feats, reference, config, device)
    result["timing"]["features_s"] = round(feats.seconds, 3)
    result["timing"]["images_per_second"] = round(feats.images_per_second, 2)
    return {
        **{k: result[k] for k in ("FID", "sFID", "IS", "Precision", "Recall", "FID_noise")},
        **({"IS_note": result["IS_note"]} if "IS_note" in result else {}),
        "n_samples": source.count,
        "n_reference": int(ref_meta["n_images"]),
        "run": {**source.run, **dict(run or {})},
        "reference": {"path": str(reference_path), "key": ref_meta["key"], "statistics": ref_meta["statistics"]},
        "inception": {**inception, "has_logits": feats.logits is not None},
        "method": result["method"],
        "timing": result["timing"],
        "provenance": provenance("evaluate", dict(params or {}), [samples, reference_path, weights], device,
                                 inception_sha256=inception["sha256"], reference_key=ref_meta["key"],
                                 samples=source.identity()),
    }


# ----------------------------------------------------------------------------------------------
# Per-run CSV


def _step_of(path: Path, metrics: Mapping[str, Any]) -> int:
    step = (metrics.get("run") or {}).get("step")
    if step is None:  # results/eval/{model}/{encoder}/{method}/{step}/{sampler}.json
        match = re.fullmatch(r"\d+", path.parent.name)
        if not match:
            raise SystemExit(f"{path}: no run.step and the parent folder is not a step number")
        step = path.parent.name
    return int(step)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value))


def collect_csv(paths: list[str | Path]) -> str:
    rows = {}
    for path in map(Path, paths):
        metrics = read_result(path)
        step = _step_of(path, metrics)
        if step in rows:
            raise SystemExit(f"step {step} appears twice ({rows[step][0]} and {path}); pass one JSON per step")
        rows[step] = (path, metrics)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CURVE_COLUMNS)
    for step in sorted(rows):
        metrics = rows[step][1]
        writer.writerow([step, *(_cell(metrics.get(k)) for k in CURVE_COLUMNS[1:])])
    return buffer.getvalue()


def collect_main(argv: list[str]) -> int:
    parser = stage_parser("collect_metrics", "Per-run CSV with columns Steps,FID,sFID,IS,Precision,Recall.")
    parser.add_argument("--metrics", nargs="+", required=True, help="per-step metric JSONs of one run")
    parser.add_argument("--out", required=True, help="results/eval/{model}/{encoder}/{method}/{sampler}.csv")
    args, _, _, _ = parse_stage(parser, argv)
    write_text(args.out, collect_csv(args.metrics))
    log.info("wrote %s (%d steps)", args.out, len(args.metrics))
    return 0
