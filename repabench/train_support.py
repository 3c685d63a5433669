"""What keeps a long run safe: the EMA update, clean stops on signals and time budgets, RNG state for exact
resume, memory accounting and checkpoint publishing by hard link."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from repabench.atomic import atomic_path

TIME_BUDGET_ENV = "REPABENCH_TIME_BUDGET_MIN"
SLURM_MARGIN_S = 120.0


def warmup_lr(lr: float, completed_steps: int, warmup_steps: int) -> float:
    """The lr of the update after `completed_steps`: linear from 0 over `warmup_steps` (upstream JiT's per-iteration
    warm-up, whose first update has lr 0), then constant; warmup_steps 0 = constant from the start."""
    return lr if completed_steps >= warmup_steps else lr * completed_steps / warmup_steps


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, over every parameter (fp32 EMA)."""
    ema_params = list(ema.parameters())
    params = [p.detach().to(e.dtype) for p, e in zip(model.parameters(), ema_params)]
    torch._foreach_mul_(ema_params, decay)
    torch._foreach_add_(ema_params, params, alpha=1.0 - decay)


class StopSignal:
    """Set by SIGTERM / SIGUSR1 (SLURM's pre-timeout signal); checked between steps."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def time_budget_seconds(cli_minutes: float | None, config_minutes: float | None,
                        job_runtime_min: float | None = None) -> float | None:
    """The tightest of --time-budget-min, $REPABENCH_TIME_BUDGET_MIN, train.time_budget_min and, inside a SLURM
    job only (nothing enforces a runtime locally), the job's runtime or end time minus a margin for the save."""
    budgets = []
    for minutes in (cli_minutes, os.environ.get(TIME_BUDGET_ENV), config_minutes):
        if minutes not in (None, ""):
            budgets.append(float(minutes) * 60.0)
    if os.environ.get("SLURM_JOB_ID"):
        if job_runtime_min:
            seconds = float(job_runtime_min) * 60.0
            budgets.append(seconds - min(SLURM_MARGIN_S * 5, 0.1 * seconds))
        end = os.environ.get("SLURM_JOB_END_TIME")
        if end and end.isdigit():
            budgets.append(float(end) - time.time() - SLURM_MARGIN_S)
    return min(budgets) if budgets else None


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rng_state(device: torch.device) -> dict[str, Any]:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def link_or_copy(src: Path, dst: Path) -> None:
    """Put `src` at `dst` atomically: a hard link where the file system allows it, else a copy."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
