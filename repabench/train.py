"""Training SiT with REPA / iREPA on cached latents: the `train` stage (docs/upstream-facts.md §2).

One run = (model, encoder(s), method). A step: a fresh posterior sample x0 = (mean + std*eps - bias) * scale,
t ~ U(0,1), x_t = (1-t) x0 + t eps', loss = MSE(v_pred, eps' - x0) + coeff * mean_enc(-cos(proj(h), target)),
where the targets are the encoder's patch tokens of the same raw image (spatially normalised for iREPA).
AdamW, constant lr (after an optional linear warm-up), clip 1.0, EMA over every parameter, on `accelerate` (one process per GPU).

A JiT run (`JiT-*` model names, repabench.jit) trains on the image store instead (pixels in [-1, 1], no latents):
each image flipped with p = 0.5 (train.jit.hflip), then `jit_loss` (x-prediction, velocity MSE, train.jit) plus the
same alignment loss through the same projectors and encoder targets (computed on the flipped images). Its
checkpoints record `model.family: jit` and the objective, from which the sample stage rebuilds it.

A MeanFlow run (`MF-*` model names, repabench.meanflow) trains on the same latents as SiT with `meanflow_loss`
(average velocity u(z, r, t), JVP target; train.meanflow) plus the same alignment loss; fused attention is off
(no forward-mode AD). Its checkpoints record `model.family: meanflow` and the objective.

Resumable state lives in `<state-root>/<params-hash>/` (outside the declared outputs, which Snakemake deletes
when a job fails): `state.pt` (model, EMA, optimizer, grad scaler, RNG of every rank, data position, step, log
history), `params.json`, and `checkpoints/<step>.pt` (EMA generators, hard-linked or copied into the run's
output directory). The run resumes from `state.pt` by itself, refuses a state whose parameters differ, and stops
cleanly with exit code 75 before its time budget or on SIGTERM/SIGUSR1 so a resubmission continues it.

Multi-GPU: `accelerate launch --num_processes N -m repabench train ...`; several nodes:
`accelerate launch --num_machines M --machine_rank $SLURM_NODEID --main_process_ip $MASTER --main_process_port
29500 --num_processes $((N*M)) -m repabench train ...` (the global batch is split evenly over all processes).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from repabench.align import Method, alignment_loss, denoising_loss, interpolant, sample_time
from repabench.atomic import atomic_path, read_json, write_json
from repabench.end_to_end import EndToEndConfig
from repabench.sections import config_section
from repabench.stage import parse_stage, resolve_device, stage_parser
from repabench.provenance import params_hash, provenance
from repabench.sit import MODEL_CONFIGS, build_sit, generator_kwargs, generator_state_dict, model_slug
from repabench.store import StoreError
from repabench.targets import AlignmentTargets, build_target_encoder, training_precision
from repabench.sizes import JIT_CONFIGS, LATENT_FAMILIES, MEANFLOW_CONFIGS, model_config, model_family, model_name
from repabench.train_data import LatentStats, StepBatches, check_images, check_inputs, checksums, data_identity
from repabench.train_support import (TIME_BUDGET_ENV, StopSignal, ema_update, link_or_copy, peak_memory_mb, rng_state,
                                     set_rng_state, time_budget_seconds, warmup_lr)

log = logging.getLogger("repabench.train")

EXIT_RESUBMIT = 75  # EX_TEMPFAIL: stopped cleanly, state saved, rerun to continue
STATE_FORMAT = "repabench-train-state-v1"
STATE_FILE = "state.pt"
# train keys that do not change the trajectory of a run: excluded from the state hash so that a run can be
# extended (steps), checkpointed differently, or resumed on another machine with other throughput settings
_NON_TRAJECTORY_KEYS = ("steps", "checkpoint_steps", "state_every", "num_workers", "compile", "log_every")


@config_section("train.jit")
class JiTTrainConfig:
    """`train.jit`: the JiT objective (repabench.jit.JiTObjective) and its augmentation; JiT-* runs only."""

    p_mean: float
    p_std: float
    t_eps: float
    noise_scale: float
    label_drop_prob: float
    hflip: bool

    def objective(self) -> Any:
        from repabench.jit import JiTObjective

        return JiTObjective(**{k: v for k, v in dataclasses.asdict(self).items() if k != "hflip"})


@config_section("train.meanflow")
class MeanFlowTrainConfig:
    """`train.meanflow`: the MeanFlow objective (repabench.meanflow.MeanFlowObjective, key for key); MF-* runs only."""

    time_sampler: str
    p_mean: float
    p_std: float
    ratio_r_not_t: float
    adaptive_p: float
    adaptive_eps: float
    label_drop_prob: float
    omega: float
    kappa: float
    guidance_t_min: float
    guidance_t_max: float

    def objective(self) -> Any:
        from repabench.meanflow import MeanFlowObjective

        return MeanFlowObjective(**dataclasses.asdict(self))


# the `train` key holding each family's objective (a SiT's is the train section itself)
OBJECTIVE_KEYS = {"jit": "jit", "meanflow": "meanflow"}


@config_section("train", workflow_keys=("gpus", "time_budget_min"),
                nested={"jit": JiTTrainConfig, "meanflow": MeanFlowTrainConfig,
                         "end_to_end": EndToEndConfig})
class TrainConfig:

    """The `train` section (defaults: the schema's). GPU count and time budget are the workflow's: the rule
    requests the GPUs, and `parse_run` hands the budget to `TrainingRun`."""

    steps: int
    checkpoint_steps: tuple[int, ...]
    state_every: int
    global_batch: int
    lr: float
    adam_betas: tuple[float, float]
    weight_decay: float
    adam_eps: float
    grad_clip: float | None  # None: no clipping (upstream JiT)
    ema_decay: float
    mixed_precision: str
    tf32: bool
    compile: bool
    class_dropout: float
    cache_targets: bool
    num_workers: int
    log_every: int
    jit: JiTTrainConfig  # the JiT objective; not part of a SiT run's trajectory
    meanflow: MeanFlowTrainConfig  # the MeanFlow objective; likewise
    end_to_end: EndToEndConfig  # the VAE side of REPA-E runs; part of their trajectory only
    weighting: str = "uniform"  # absent in the schema = upstream's uniform training times
    path: str = "linear"  # absent in the schema = upstream's path_type linear (used); or cosine
    qk_norm: bool = False  # absent in the schema = off, as in every upstream config
    warmup_steps: int = 0  # linear lr warm-up from 0 over this many steps (upstream JiT: 5 epochs); 0 = constant lr

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"train.mixed_precision {self.mixed_precision!r} must be no, fp16 or bf16")
        if self.weighting not in ("uniform", "lognormal"):
            raise ValueError(f"train.weighting {self.weighting!r} must be uniform or lognormal")
        if self.path not in ("linear", "cosine"):
            raise ValueError(f"train.path {self.path!r} must be linear or cosine")
        late = [s for s in self.checkpoint_steps if s > self.steps]
        if late:
            raise ValueError(f"train.checkpoint_steps {late} exceed train.steps {self.steps}; lower them or raise steps")
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps {self.warmup_steps} must be >= 0 (0 = no warm-up)")
        if min(self.steps, self.state_every, self.global_batch, self.log_every) < 1:
            raise ValueError("train.steps, state_every, global_batch and log_every must be >= 1")

    def trajectory(self) -> dict[str, Any]:
        skipped = _NON_TRAJECTORY_KEYS + tuple(OBJECTIVE_KEYS.values()) + ("end_to_end",)
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in skipped}
        for key, default in (("weighting", "uniform"), ("qk_norm", False), ("path", "linear"),
                             ("warmup_steps", 0)):
            if out[key] == default:  # defaults leave the hashes of runs from before these options as they were
                del out[key]
        return out


# --------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class TrainingRun:
    images: Path
    latents: Path | None  # None for a pixel-space (JiT) run
    latent_stats: Path | None
    encoders: list[str]
    weights_dir: Path
    model: str
    method_name: str
    method: Method
    train: TrainConfig
    seed: int
    out_dir: Path
    state_root: Path
    state_dir: Path | None = None
    time_budget_min: float | None = None  # --time-budget-min
    config_time_budget_min: float | None = None  # train.time_budget_min
    job_runtime_min: float | None = None
    device: str = "auto"
    show_progress: bool = True
    data_identity: dict[str, Any] = field(default_factory=dict)
    autoencoder: Path | None = None  # REPA-E: the autoencoder the run starts from (tuned with the SiT)
    autoencoder_kind: str | None = None

    @property
    def family(self) -> str:
        return model_family(self.model)

    def inputs(self) -> list[Path]:
        return [p for p in (self.images, self.latents, self.latent_stats, self.autoencoder) if p is not None]

    def run_params(self) -> dict[str, Any]:
        """Everything that changes the trajectory of the run; its hash names the state directory."""
        method = {k: v for k, v in self.method.as_dict().items() if k != "label"}
        params = {"model": self.model, "encoders": list(self.encoders), "method": method,
                  "train": self.train.trajectory(), "seed": self.seed, "data": self.data_identity}
        key = OBJECTIVE_KEYS.get(self.family)
        if key:  # the objective of the run, as a dict (SiT runs' hashes stay as they were)
            params[key] = dataclasses.asdict(getattr(self.train, key))
        if self.method.end_to_end:  # REPA-E: the VAE side (other runs' hashes stay as they were)
            params["end_to_end"] = {**dataclasses.asdict(self.train.end_to_end), "vae": self.autoencoder_kind}
        return json.loads(json.dumps(params))  # as it reads back from params.json (tuples become lists)


class Trainer:
    def __init__(self, spec: TrainingRun):
        from accelerate import Accelerator

        self.spec = spec
        cfg = spec.train
        device = resolve_device(spec.device)
        precision = training_precision(cfg.mixed_precision, device)
        self.accelerator = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
        self.device = self.accelerator.device
        self.precision = precision
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        if cfg.global_batch % self.world:
            raise ValueError(f"train.global_batch {cfg.global_batch} is not divisible by {self.world} processes")
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32

        self.family = spec.family
        self.e2e = None  # REPA-E runs: repabench.end_to_end.EndToEnd
        if spec.method.end_to_end:
            image_store, channels = self._start_end_to_end(precision)
            count, labels = image_store.count, image_store["labels"]
        elif self.family == "jit":  # pixels in [-1, 1]: no latents, no latent statistics
            if cfg.jit.hflip and cfg.cache_targets:
                raise ValueError("train.jit.hflip flips every training image, so its encoder targets cannot be "
                                 "cached; set train.cache_targets: false or train.jit.hflip: false")
            image_store = check_images(spec.images)
            count, labels = image_store.count, image_store["labels"]
            channels, self.latent_size = 3, int(image_store["images"].shape[1])
            self.stats = None
            spec.data_identity = {"images": checksums(image_store)}
        else:
            image_store, latent_store = check_inputs(spec.images, spec.latents)
            moments = latent_store["moments"]
            if moments.ndim != 4 or moments.shape[1] % 2:
                raise ValueError(f"{spec.latents}: moments must be [N, 2C, h, w], got {moments.shape}")
            channels, self.latent_size = moments.shape[1] // 2, moments.shape[2]
            self.stats = LatentStats.load(spec.latent_stats, channels)
            count, labels = latent_store.count, latent_store["labels"]
            spec.data_identity = data_identity(image_store, latent_store, self.stats)
        self.num_classes = int(image_store.meta("num_classes") or int(np.max(labels)) + 1)
        if count < cfg.global_batch:
            raise ValueError(f"train.global_batch {cfg.global_batch} exceeds the {count} training images")
        self.run_params = spec.run_params()
        self.hash = params_hash(self.run_params)
        self.state_dir = spec.state_dir or (spec.state_root / self.hash)
        self._check_state_params()

        patch = model_config(spec.model)["patch_size"]
        self.grid = self.latent_size // patch
        torch.manual_seed(spec.seed + self.rank)  # as upstream: seed + process index
        np.random.seed((spec.seed + self.rank) % 2**32)
        aligned = spec.method.coeff > 0
        self.targets: AlignmentTargets | None = None
        z_dims: list[int] = []
        if aligned:
            encoders = [build_target_encoder(name, spec.weights_dir) for name in spec.encoders]
            self.targets = AlignmentTargets(encoders, self.grid, spec.method, self.device, self.accelerator.autocast)
            if cfg.cache_targets:
                self.targets.build_cache(image_store["images"], show=spec.show_progress and self.main)
                z_dims = [int(t.shape[-1]) for t in self.targets.cache]
            else:
                probe = torch.from_numpy(np.array(image_store["images"][:1])).permute(0, 3, 1, 2)
                z_dims = self.targets.z_dims(probe)
        projectors = spec.method.projector_specs(z_dims) if aligned else None
        if self.family == "jit":
            from repabench.jit import build_jit

            self.objective = cfg.jit.objective()
            self.net = build_jit(spec.model, self.latent_size, num_classes=self.num_classes, projectors=projectors,
                                 encoder_depth=spec.method.encoder_depth).to(self.device)
        elif self.family == "meanflow":
            from repabench.meanflow import build_meanflow_sit

            self.objective = cfg.meanflow.objective()
            self.net = build_meanflow_sit(spec.model, self.latent_size, in_channels=channels,
                                          num_classes=self.num_classes, projectors=projectors,
                                          encoder_depth=spec.method.encoder_depth, qk_norm=cfg.qk_norm).to(self.device)
        else:
            self.net = build_sit(spec.model, self.latent_size, in_channels=channels, num_classes=self.num_classes,
                                 projectors=projectors, encoder_depth=spec.method.encoder_depth,
                                 class_dropout_prob=cfg.class_dropout, qk_norm=cfg.qk_norm).to(self.device)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.optimizer = torch.optim.AdamW([p for p in self.net.parameters() if p.requires_grad], lr=cfg.lr,
                                           betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                           weight_decay=cfg.weight_decay, foreach=True)
        self.model, self.optimizer = self.accelerator.prepare(self.net, self.optimizer)
        if cfg.compile and self.device.type == "cuda":
            self.model = torch.compile(self.model)
        latents = spec.latents if self.family in LATENT_FAMILIES and self.e2e is None else None
        self.data = StepBatches(spec.images, latents, spec.seed,
                                cfg.global_batch, self.rank, self.world,
                                need_images=(aligned and not cfg.cache_targets) or self.e2e is not None)
        if self.stats is not None and self.e2e is None:
            self.bias = torch.tensor(self.stats.bias, device=self.device).view(1, -1, 1, 1)
            self.scale = torch.tensor(self.stats.scale, device=self.device).view(1, -1, 1, 1)
        self.step = 0
        self.history: dict[str, Any] = {"entries": [], "segments": []}
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)  # any NaN/inf loss since the start
        self.last_good_step: int | None = None  # the step of the last state saved or resumed

    def _start_end_to_end(self, precision: str) -> tuple[Any, int]:
        """REPA-E: images instead of latents, the trainable autoencoder, its latent BatchNorm from the stats."""
        from repabench.end_to_end import EndToEnd, trainable_autoencoder

        spec, cfg = self.spec, self.spec.train
        if self.family != "sit":
            raise ValueError(f"method {spec.method_name} is end_to_end (REPA-E), which tunes a VAE under a SiT; "
                             f"{spec.model} has no VAE")
        if self.world > 1:
            raise ValueError("end_to_end runs train on one process for now (the VAE's gradients are not "
                             "all-reduced); set train.gpus: 1")
        if precision == "fp16":
            raise ValueError("end_to_end runs update the VAE outside accelerate's fp16 GradScaler; set "
                             "train.mixed_precision: bf16 or no")
        if spec.latent_stats is None or spec.autoencoder_kind is None:
            raise ValueError("an end_to_end run needs --latent-stats (its BatchNorm's start) and --autoencoder-kind")
        image_store = check_images(spec.images)
        autoencoder = trainable_autoencoder(spec.autoencoder_kind, spec.autoencoder)
        channels = autoencoder.channels
        self.latent_size = int(image_store["images"].shape[1]) // 8
        self.stats = LatentStats.load(spec.latent_stats, channels)
        self.e2e = EndToEnd(autoencoder, self.stats.bias, self.stats.scale, cfg.end_to_end, cfg.adam_betas,
                            cfg.adam_eps, cfg.weight_decay).to(self.device)
        spec.data_identity = {"images": checksums(image_store), "latent_stats": self.stats.as_dict()}
        return image_store, channels

    # -- state ------------------------------------------------------------------------------------------------

    def _check_state_params(self) -> None:
        recorded = self.state_dir / "params.json"
        if recorded.exists():
            previous = read_json(recorded)
            if previous != self.run_params:
                changed = sorted(k for k in set(previous) | set(self.run_params)
                                 if previous.get(k) != self.run_params.get(k))
                raise SystemExit(f"{self.state_dir} holds a run with different parameters (differs in {changed}); "
                                 "refusing to resume into it. Use the default state directory (keyed by the "
                                 "parameter hash) or delete this one to start over.")

    def resume(self) -> bool:
        path = self.state_dir / STATE_FILE
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or corrupted zip / pickle: torch's message names neither file nor fix
            raise SystemExit(
                f"train: the training state {path} is unreadable ({type(exc).__name__}: {str(exc)[:200]}); it was "
                f"cut short (disk full, or a copy or kill mid-write). Delete it (`rm {path}`) and rerun: training "
                f"then restarts from step 0 (the checkpoints already in {self.state_dir / 'checkpoints'} are "
                "rewritten as it passes them)") from None
        if not isinstance(state, dict) or "step" not in state:
            raise SystemExit(f"train: {path} is not a training state; delete it (`rm {path}`) and rerun")
        if state.get("format") != STATE_FORMAT or state.get("params_hash") != self.hash:
            raise SystemExit(f"{path} was written for parameters {state.get('params_hash')}, this run is {self.hash}; "
                             "refusing to resume. Delete the state directory to start over.")
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.e2e is not None:
            self.e2e.load_training_state(state["end_to_end"])
        scaler = self.accelerator.scaler
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.history = state["history"]
        if state["world_size"] == self.world:
            set_rng_state(state["rng"][self.rank], self.device)
        else:
            log.warning("state saved with %d processes, resuming with %d: RNG streams are reseeded",
                        state["world_size"], self.world)
            torch.manual_seed(self.spec.seed + self.rank + 1_000_003 * self.step)
        self.last_good_step = self.step
        log.info("resumed %s at step %d", path, self.step)
        return True

    def guard_finite(self) -> None:
        """Stop before anything is saved from a model whose loss went NaN/inf (all processes stop together)."""
        flag = self.nonfinite.float()
        if self.world > 1:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if not flag.item():
            return
        spec = self.spec
        kept = (f"{self.state_dir / STATE_FILE} keeps step {self.last_good_step}" if self.last_good_step
                else "no state was saved before it")
        raise SystemExit(
            f"train: the loss became NaN/inf at or before step {self.step}; stopping without writing a state or "
            f"checkpoint of the diverged model ({kept}). Check the inputs ({spec.latents}, {spec.latent_stats}), "
            f"or lower train.lr / use train.mixed_precision: no, then rerun (it resumes from the last good state) "
            f"or delete {self.state_dir} to start over")

    def save_state(self) -> None:
        self.guard_finite()
        rng = [rng_state(self.device)]
        if self.world > 1:
            from accelerate.utils import gather_object

            rng = gather_object(rng)
        if self.main:
            scaler = self.accelerator.scaler
            state = {"format": STATE_FORMAT, "params_hash": self.hash, "step": self.step,
                     "model": self.net.state_dict(), "ema": self.ema.state_dict(),
                     "optimizer": self.optimizer.state_dict(),
                     "scaler": scaler.state_dict() if scaler is not None else None,
                     "rng": rng, "world_size": self.world, "data_position": self.data.position(self.step),
                     "history": self.history}
            if self.e2e is not None:
                state["end_to_end"] = self.e2e.training_state()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            if not (self.state_dir / "params.json").exists():
                write_json(self.state_dir / "params.json", self.run_params)
            with atomic_path(self.state_dir / STATE_FILE) as tmp:
                torch.save(state, tmp)
        self.last_good_step = self.step
        self.accelerator.wait_for_everyone()

    def checkpoint_path(self, step: int, root: Path | None = None) -> Path:
        return (root or self.state_dir) / "checkpoints" / f"{step:07d}.pt"

    def save_checkpoint(self) -> None:
        self.guard_finite()
        if not self.main:
            return
        spec = self.spec
        ckpt = {"ema": {k: v.detach().cpu().clone() for k, v in generator_state_dict(self.ema.state_dict()).items()},
                "model": self.model_record(),
                "step": self.step,
                "run": {"model": model_slug(spec.model), "encoder": ",".join(spec.encoders),
                        "method": spec.method_name},
                "method": spec.method.as_dict(),
                # the sampler's score follows the training path; absent = linear (checkpoints from before the option)
                **({"path": spec.train.path} if spec.train.path != "linear" else {}),
                **({"latent_stats": self.stats.as_dict()} if self.stats is not None and self.e2e is None else {}),
                # REPA-E: the tuned autoencoder and the EMA BatchNorm's (bias, scale), which sampling decodes with
                **(self.e2e.checkpoint_record() if self.e2e is not None else {}),
                # JiT: the objective's t_eps and noise_scale, which its sampler needs; MeanFlow: its provenance
                **({"objective": dataclasses.asdict(self.objective)} if self.family in OBJECTIVE_KEYS else {}),
                # no timestamp: identical runs write identical checkpoints (and record identical input hashes)
                "provenance": {k: v for k, v in self.provenance().items() if k != "created"}}
        with atomic_path(self.checkpoint_path(self.step)) as tmp:
            torch.save(ckpt, tmp)
        self.publish_checkpoints()

    def model_record(self) -> dict[str, Any]:
        """What load_generator rebuilds the generator from: SiT's as before, a JiT's with its family."""
        if self.family == "jit":
            return {"family": "jit", "name": self.spec.model,
                    "kwargs": {"input_size": self.latent_size, "num_classes": self.num_classes}}
        if self.family == "meanflow":  # build_meanflow_sit's arguments: its label dropout is the objective's
            kwargs = generator_kwargs(self.net, self.spec.train.class_dropout)
            del kwargs["class_dropout_prob"]
            return {"family": "meanflow", "name": self.spec.model, "kwargs": kwargs}
        return {"name": self.spec.model, "kwargs": generator_kwargs(self.net, self.spec.train.class_dropout)}

    def publish_checkpoints(self) -> None:
        """Expose every checkpoint of the state directory in the run's output directory."""
        if not self.main:
            return
        for step in self.spec.train.checkpoint_steps:
            src, dst = self.checkpoint_path(step), self.checkpoint_path(step, self.spec.out_dir)
            if src.exists() and not (dst.exists() and os.path.samefile(src, dst)):
                link_or_copy(src, dst)

    def provenance(self) -> dict[str, Any]:
        spec = self.spec
        return provenance("train", self.run_params, spec.inputs(), self.device,
                          params_hash_state=self.hash, seed=spec.seed, precision=self.precision,
                          precision_requested=spec.train.mixed_precision, targets_precision=self.precision,
                          grad_scaler=self.accelerator.scaler is not None,
                          tf32=bool(spec.train.tf32 and self.device.type == "cuda"),
                          world_size=self.world, compile=bool(spec.train.compile and self.device.type == "cuda"),
                          encoders=list(spec.encoders),
                          **({"end_to_end": self.e2e.cfg.record()} if self.e2e is not None else {}))

    # -- training ---------------------------------------------------------------------------------------------

    def train_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.family == "jit":
            return self.jit_step(batch)
        if self.e2e is not None:
            return self.end_to_end_step(batch)
        spec, cfg = self.spec, self.spec.train
        x0, labels = self._latent_batch(batch)
        if self.family == "meanflow":
            return self.meanflow_step(batch, x0, labels)
        t = sample_time(x0.shape[0], device=self.device, weighting=cfg.weighting, path=cfg.path)
        x_t, v_target = interpolant(x0, torch.randn_like(x0), t, cfg.path)
        targets = self.targets(batch) if self.targets is not None else None
        self.model.train()
        with self.accelerator.autocast():
            out = self.model(x_t, t, labels)
        velocity, zs = out if isinstance(out, tuple) else (out, None)
        loss_denoise = denoising_loss(velocity, v_target)
        loss_align = alignment_loss(zs, targets) if targets is not None else torch.zeros((), device=self.device)
        loss = loss_denoise + spec.method.coeff * loss_align
        return self._update(loss, loss_denoise, loss_align)

    def _latent_batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh posterior sample x0 = (mean + std * eps - bias) * scale of each latent, and the labels."""
        moments = batch["moments"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        mean, std = moments.chunk(2, dim=1)
        return (mean + std * torch.randn_like(mean) - self.bias) * self.scale, labels

    def meanflow_step(self, batch: Mapping[str, torch.Tensor], x0: torch.Tensor,
                      labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """MeanFlow (repabench.meanflow): the adaptively weighted average-velocity loss on the latents, plus the
        alignment loss on the projected tokens of the same forward."""
        from repabench.meanflow import meanflow_loss

        targets = self.targets(batch) if self.targets is not None else None
        self.model.train()
        with self.accelerator.autocast():
            loss, parts = meanflow_loss(self.model, x0, labels, self.objective, targets, self.spec.method.coeff)
        return self._update(loss, torch.tensor(parts["denoise"], device=self.device),
                            torch.tensor(parts.get("align", 0.0), device=self.device))

    def end_to_end_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """REPA-E (repabench.end_to_end): the VAE update, then the SiT's on the stop-gradient latents."""
        spec, cfg = self.spec, self.spec.train
        labels = batch["label"].to(self.device, non_blocking=True)
        targets = self.targets(batch) if self.targets is not None else None
        vae = self.e2e.vae_update(self.model, batch["image"].to(self.device, non_blocking=True), labels, targets,
                                  spec.method.vae_align_coeff, cfg.weighting, cfg.path, self.accelerator.autocast)
        x_t, v_target = interpolant(vae.x0, vae.noise, vae.t, cfg.path)
        self.model.train()
        with self.accelerator.autocast():
            velocity, zs = self.model(x_t, vae.t, labels)
        loss_denoise = denoising_loss(velocity, v_target)
        loss_align = alignment_loss(zs, targets) if targets is not None else torch.zeros((), device=self.device)
        metrics = self._update(loss_denoise + spec.method.coeff * loss_align, loss_denoise, loss_align)
        self.e2e.after_step(cfg.ema_decay)
        return {**metrics, **vae.metrics}

    def jit_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """JiT (docs/upstream-facts.md §10.2): x-prediction on pixels in [-1, 1], each image flipped with p = 0.5
        (train.jit.hflip) before both the generator and the encoder targets see it."""
        from repabench.jit import jit_loss

        cfg = self.spec.train
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        if cfg.jit.hflip:
            flip = torch.rand(images.shape[0], device=self.device) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        targets = self.targets({**batch, "image": images}) if self.targets is not None else None
        self.model.train()
        with self.accelerator.autocast():
            loss, parts = jit_loss(self.model, images.float() / 127.5 - 1.0, labels, self.objective, targets,
                                   self.spec.method.coeff)
        return self._update(loss, torch.tensor(parts["denoise"], device=self.device),
                            torch.tensor(parts.get("align", 0.0), device=self.device))

    def _update(self, loss: torch.Tensor, loss_denoise: torch.Tensor,
                loss_align: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backward, clip (train.grad_clip; null = measure the norm only), optimiser step, EMA."""
        cfg = self.spec.train
        self.accelerator.backward(loss)
        clip = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), clip)
        for group in self.optimizer.param_groups:
            group["lr"] = warmup_lr(cfg.lr, self.step, cfg.warmup_steps)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        ema_update(self.ema, self.net, cfg.ema_decay)
        return {"loss": loss.detach(), "denoise": loss_denoise.detach(), "align": loss_align.detach(),
                "grad_norm": torch.as_tensor(grad_norm, device=self.device).detach().float()}

    def _should_stop(self, stop: StopSignal, deadline: float | None, step_s: float, save_s: float) -> str | None:
        reason = stop.received
        if reason is None and deadline is not None and time.monotonic() + 2 * step_s + save_s >= deadline:
            reason = "time budget"
        if self.world > 1:
            flag = torch.tensor([1.0 if reason else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            if flag.item() and reason is None:
                reason = "stop requested by another process"
        return reason

    def run(self) -> int:
        from tqdm import tqdm

        spec, cfg = self.spec, self.spec.train
        started = time.monotonic()
        budget = time_budget_seconds(spec.time_budget_min, spec.config_time_budget_min, spec.job_runtime_min)
        deadline = started + budget if budget is not None else None
        self.resume()
        self._check_reachable_checkpoints()
        self.publish_checkpoints()
        segment = {"start_step": self.step, "processes": self.world, "device": str(self.device)}
        if self.step >= cfg.steps:
            self._finish(segment, started)
            return 0
        loader = torch.utils.data.DataLoader(
            self.data, batch_size=None, sampler=range(self.step, cfg.steps), num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if cfg.num_workers > 0 else None,
            generator=torch.Generator())  # its seed draw must not consume the global RNG (exact resume)
        progress = tqdm(total=cfg.steps, initial=self.step, desc=f"train {model_slug(spec.model)}",
                        disable=not (spec.show_progress and self.main), mininterval=1 if sys.stderr.isatty() else 30)
        window: dict[str, torch.Tensor] = {}
        window_steps, window_start = 0, time.monotonic()
        step_s, save_s = 0.0, 1.0
        status = 0
        with StopSignal() as stop:
            for batch in loader:
                tick = time.monotonic()
                metrics = self.train_step(batch)
                self.nonfinite |= ~torch.isfinite(metrics["loss"])
                for key, value in metrics.items():
                    window[key] = window.get(key, 0) + value
                window_steps += 1
                self.step += 1
                progress.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._log_window(window, window_steps, time.monotonic() - window_start, progress)
                    window, window_steps, window_start = {}, 0, time.monotonic()
                if self.step in cfg.checkpoint_steps:
                    self.save_checkpoint()
                step_s = 0.9 * step_s + 0.1 * (time.monotonic() - tick) if step_s else time.monotonic() - tick
                if self.step < cfg.steps and (self.step % cfg.state_every == 0 or self.step in cfg.checkpoint_steps):
                    save_s = self._timed_save()
                if self.step >= cfg.steps:
                    break
                reason = self._should_stop(stop, deadline, step_s, save_s)
                if reason:
                    if window_steps:
                        self._log_window(window, window_steps, time.monotonic() - window_start, progress)
                    segment.update(end_step=self.step, wall_s=round(time.monotonic() - started, 3), stopped=reason)
                    self.history["segments"].append(segment)
                    self._timed_save()
                    log.warning("stopping at step %d (%s); state saved in %s, rerun to continue (exit %d)",
                                self.step, reason, self.state_dir, EXIT_RESUBMIT)
                    status = EXIT_RESUBMIT
                    break
        progress.close()
        if status == 0:
            self._finish(segment, started)
        return status

    def _timed_save(self) -> float:
        tick = time.monotonic()
        self.save_state()
        return time.monotonic() - tick

    def _log_window(self, window: Mapping[str, torch.Tensor], steps: int, seconds: float, progress: Any) -> None:
        self.guard_finite()
        values = {k: float(v.item()) / steps for k, v in window.items()}
        if self.world > 1:
            packed = torch.tensor(list(values.values()), device=self.device)
            values = dict(zip(values, (self.accelerator.reduce(packed, "mean")).tolist()))
        entry = {"step": self.step, **{k: round(v, 6) for k, v in values.items()},
                 "images_per_s": round(steps * self.spec.train.global_batch / max(seconds, 1e-9), 2),
                 "peak_memory_mb": round(peak_memory_mb(self.device), 1)}
        self.history["entries"].append(entry)
        progress.set_postfix(loss=f"{entry['loss']:.4f}", align=f"{entry['align']:.3f}")
        log.info("step %d loss %.4f denoise %.4f align %.4f grad %.3f %.1f img/s", self.step, entry["loss"],
                 entry["denoise"], entry["align"], entry["grad_norm"], entry["images_per_s"])

    def _check_reachable_checkpoints(self) -> None:
        lost = [s for s in self.spec.train.checkpoint_steps
                if s <= self.step and not self.checkpoint_path(s).exists()]
        if lost:
            raise SystemExit(f"checkpoint steps {lost} lie before the resumed step {self.step} of {self.state_dir} "
                             "but were never written (checkpoint_steps changed?); delete that state directory to "
                             "retrain from scratch, or drop those steps")

    def _finish(self, segment: dict[str, Any], started: float) -> None:
        if "end_step" not in segment and segment["start_step"] < self.step:
            segment.update(end_step=self.step, wall_s=round(time.monotonic() - started, 3), stopped=None)
            self.history["segments"].append(segment)
            self.save_state()
        self.publish_checkpoints()
        missing = [s for s in self.spec.train.checkpoint_steps
                   if not self.checkpoint_path(s, self.spec.out_dir).exists()]
        if self.main and missing:
            raise RuntimeError(f"checkpoints {missing} are missing after training; see {self.state_dir}")
        if self.main:
            spec = self.spec
            write_json(spec.out_dir / "log.json", {
                "run": {"model": model_slug(spec.model), "encoder": ",".join(spec.encoders), "method": spec.method_name},
                "step": self.step, "params_hash": self.hash, "state_dir": str(self.state_dir),
                "checkpoints": [str(self.checkpoint_path(s, spec.out_dir)) for s in spec.train.checkpoint_steps],
                "entries": self.history["entries"], "segments": self.history["segments"],
                "train_wall_s": round(sum(s.get("wall_s", 0.0) for s in self.history["segments"]), 3),
                "provenance": self.provenance()})


# --------------------------------------------------------------------------------------------------------------
# stage


TRAIN_PARAMS = {"method": Method, "train": TrainConfig, "seed": int}


def parse_run(argv: list[str]) -> TrainingRun:
    parser = stage_parser("train", "Train SiT with REPA/iREPA alignment (resumable; exit 75 = stopped, rerun).",
                          device=True)
    parser.add_argument("--images", type=Path, required=True, help="image store (uint8 NHWC images, labels)")
    parser.add_argument("--latents", type=Path, default=None,
                        help="latent store (moments [N,8,h,w], labels); SiT runs only (JiT trains on the images)")
    parser.add_argument("--latent-stats", type=Path, default=None,
                        help="stats.json with bias/scale per channel; SiT runs only")
    parser.add_argument("--autoencoder", type=Path, default=None,
                        help="end_to_end (REPA-E) runs: the autoencoder to tune (PCA file or SD-VAE dir)")
    parser.add_argument("--autoencoder-kind", default=None, choices=["pca", "sd-vae-ft-mse"],
                        help="end_to_end (REPA-E) runs: vae.kind")
    parser.add_argument("--encoder", nargs="+", required=True,
                        help="target encoder name(s); several (space or comma separated) average their losses")
    parser.add_argument("--weights-dir", type=Path, default=Path("resources/weights"))
    parser.add_argument("--model", required=True,
                        help=f"one of {', '.join([*MODEL_CONFIGS, *JIT_CONFIGS, *MEANFLOW_CONFIGS])} (or a slug, sit-b-2, "
                             "jit-b-16, mf-b-2)")
    parser.add_argument("--method-name", required=True, help="name of the method entry (recorded)")
    parser.add_argument("--out-dir", type=Path, required=True, help="results/train/<model>/<encoder>/<method>")
    parser.add_argument("--state-root", type=Path, default=Path("results/state/train"),
                        help="resumable states live in <state-root>/<params-hash>/")
    parser.add_argument("--state-dir", type=Path, default=None, help="explicit state directory (overrides the hash)")
    parser.add_argument("--time-budget-min", type=float, default=None,
                        help=f"stop cleanly (exit {EXIT_RESUBMIT}) before this many minutes (also ${TIME_BUDGET_ENV})")
    parser.add_argument("--job-runtime-min", type=float, default=None,
                        help="the job's runtime limit (Snakemake resources.runtime); used inside SLURM jobs only")
    parser.add_argument("--no-progress", action="store_true")
    args, config, _, seed = parse_stage(parser, argv, TRAIN_PARAMS)
    model = model_argument(args.model, args.latents if not config.method.end_to_end else Path("-"),
                           args.latent_stats)
    encoders = [name for item in args.encoder for name in item.split(",") if name]
    return TrainingRun(images=args.images, latents=args.latents, latent_stats=args.latent_stats, encoders=encoders,
                   weights_dir=args.weights_dir, model=model, method_name=args.method_name, method=config.method,
                   train=config.train, seed=seed, out_dir=args.out_dir, state_root=args.state_root,
                   state_dir=args.state_dir, time_budget_min=args.time_budget_min,
                   config_time_budget_min=(config.raw.get("train") or {}).get("time_budget_min"),
                   job_runtime_min=args.job_runtime_min, device=args.device,
                   show_progress=not args.no_progress, autoencoder=args.autoencoder,
                   autoencoder_kind=args.autoencoder_kind)


def model_argument(model: str, latents: Path | None, latent_stats: Path | None) -> str:
    """The model name of --model (a name or a slug); a SiT needs its latents and their statistics."""
    try:
        model = model_name(model_slug(model))
    except ValueError as exc:
        raise SystemExit(f"--model: {exc}") from exc
    if model_family(model) in LATENT_FAMILIES and (latents is None or latent_stats is None):
        raise SystemExit(f"--latents and --latent-stats are required for {model} (it trains on latents)")
    return model


def run_training(spec: TrainingRun) -> int:
    """Train one run to `spec.train.steps` (or until its time budget): 0 done, EXIT_RESUBMIT stopped early."""
    try:
        trainer = Trainer(spec)
    except (ValueError, StoreError) as exc:
        raise SystemExit(f"train: {exc}") from exc
    return trainer.run()


def train_main(argv: list[str]) -> int:
    return run_training(parse_run(argv))
