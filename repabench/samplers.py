"""The samplers of the flow: SDE (Euler-Maruyama) and ODE (Euler or Heun) from t = 1 (noise) to t = 0 (data),
with CFG and its guidance interval, and the named sampler settings of the config (docs/upstream-facts.md §5.1).

The model predicts the velocity d x_t / d t of x_t = alpha_t x0 + sigma_t eps (linear: (1 - t) x0 + t eps);
the state is float64, the network evaluated in float32 (optionally under bf16 autocast)."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Mapping

import torch

from repabench.sections import config_section

Velocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""velocity(x float32 [B,C,H,W], t float32 [B], y int64 [B]) -> velocity [B,C,H,W]."""

SDE_T_END = 0.04  # the SDE grid stops here; one deterministic step then goes to t = 0
PRECISIONS = ("fp32", "bf16")


@config_section("samplers.*", workflow_keys=("name",))
class SamplerSettings:
    """One named entry of `samplers` (the rule adds the entry's `name`, which the manifest records)."""

    mode: str
    steps: int
    heun: bool
    cfg_scale: float
    guidance_low: float
    guidance_high: float
    path: str = "linear"  # the generator's training path (from its checkpoint), not a sampler option

    def __post_init__(self) -> None:
        if self.mode not in ("sde", "ode", "jit", "meanflow"):
            raise ValueError(f"sampler mode {self.mode!r} is not one of sde, ode, jit, meanflow")
        fewest = 1 if self.mode == "meanflow" else 2
        if int(self.steps) != self.steps or self.steps < fewest:
            raise ValueError(f"sampler steps must be an integer >= {fewest} for mode {self.mode}, got {self.steps}")
        if self.heun and self.mode in ("sde", "meanflow"):
            raise ValueError("heun applies to mode=ode or jit only; drop 'heun' or use mode: ode")
        if self.cfg_scale < 1.0:
            raise ValueError(f"cfg_scale must be >= 1 (1 = no guidance), got {self.cfg_scale}")
        if not 0.0 <= self.guidance_low <= self.guidance_high <= 1.0:
            raise ValueError(f"need 0 <= guidance_low <= guidance_high <= 1, got "
                             f"[{self.guidance_low}, {self.guidance_high}]")

    def time_grid(self) -> torch.Tensor:
        """The float64 time points, from 1 down to 0 (steps + 1 of them)."""
        if self.mode == "ode":
            return torch.linspace(1.0, 0.0, self.steps + 1, dtype=torch.float64)
        grid = torch.linspace(1.0, SDE_T_END, self.steps, dtype=torch.float64)
        return torch.cat([grid, torch.zeros(1, dtype=torch.float64)])

    def guided(self, t: float) -> bool:
        return self.cfg_scale > 1.0 and self.guidance_low <= t <= self.guidance_high

    def jit(self, objective: Mapping[str, Any]) -> Any:
        """JiT's sampler of a `mode: jit` entry; `objective` (the checkpoint's) gives t_eps and noise_scale.
        The guidance interval passes through unchanged: JiT's is open at both ends, 0 = no lower bound."""
        from repabench.jit import JiTSampler

        if self.mode != "jit":
            raise ValueError(f"a JiT checkpoint samples with a `mode: jit` sampler, not {self.mode!r}")
        return JiTSampler(steps=int(self.steps), method="heun" if self.heun else "euler", cfg=self.cfg_scale,
                          interval_min=self.guidance_low, interval_max=self.guidance_high,
                          t_eps=float(objective.get("t_eps", 0.05)),
                          noise_scale=float(objective.get("noise_scale", 1.0)))


    def network_evaluations(self) -> int:
        """Model calls per image (a guided call counts once although its batch is doubled)."""
        if self.mode in ("ode", "jit") and self.heun:
            return 2 * self.steps - 1
        return self.steps


# the sampler modes each generator family samples with
FAMILY_MODES = {"sit": ("sde", "ode"), "jit": ("jit",), "meanflow": ("meanflow",)}
_FAMILY_NAMES = {"sit": "SiT", "jit": "JiT", "meanflow": "MeanFlow"}


def family_mode_mismatch(family: str, mode: str) -> str | None:
    """Why a checkpoint of `family` cannot sample with a `mode` sampler (None: it can)."""
    if mode in FAMILY_MODES[family]:
        return None
    owner = next(f for f, modes in FAMILY_MODES.items() if mode in modes)
    return (f"a {_FAMILY_NAMES[family]} checkpoint; `mode: {mode}` samplers are for {_FAMILY_NAMES[owner]} runs "
            f"(use mode: {' or '.join(FAMILY_MODES[family])})")


class _Evaluator:
    """Calls the model at one time point: precision, CFG doubling and guidance of the drift."""

    def __init__(self, velocity: Velocity, settings: SamplerSettings, null_class: int, precision: str):
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
        self.velocity = velocity
        self.settings = settings
        self.null_class = null_class
        self.precision = precision

    def __call__(self, x: torch.Tensor, t: float, y: torch.Tensor,
                 drift: Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor],
                 guidance_t: float | None = None) -> torch.Tensor:
        """`guidance_t` (default `t`) is the time that decides whether this call is guided."""
        guided = self.settings.guided(t if guidance_t is None else guidance_t)
        if guided:
            x = torch.cat([x, x])
            y = torch.cat([y, torch.full_like(y, self.null_class)])
        time_input = torch.full((x.shape[0],), t, dtype=torch.float64, device=x.device)
        autocast = (torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)
                    if self.precision == "bf16" else contextlib.nullcontext())
        with autocast:
            v = self.velocity(x.to(torch.float32), time_input.to(torch.float32), y)
        if isinstance(v, (tuple, list)):  # an upstream-style (velocity, zs, ...) return
            v = v[0]
        d = drift(x, t, v.to(torch.float64))
        if guided:
            cond, uncond = d.chunk(2)
            d = uncond + self.settings.cfg_scale * (cond - uncond)
        return d


def _velocity_drift(x: torch.Tensor, t: float, v: torch.Tensor) -> torch.Tensor:
    return v


def _sde_drift(x: torch.Tensor, t: float, v: torch.Tensor) -> torch.Tensor:
    """Drift of the reverse SDE with diffusion w(t) = 2t: v - w/2 * score, score = (-(1-t) v - x) / t."""
    score = (-(1.0 - t) * v - x) / t
    return v - 0.5 * (2.0 * t) * score


def _cosine_sde_drift(x: torch.Tensor, t: float, v: torch.Tensor) -> torch.Tensor:
    """The same drift on the cosine path: score = (r v - x) / (sigma^2 - r d_sigma sigma), r = alpha / d_alpha."""
    from repabench.align import path_coefficients

    alpha, sigma, d_alpha, d_sigma = (float(c) for c in path_coefficients(torch.tensor(t, dtype=torch.float64),
                                                                            "cosine"))
    ratio = alpha / d_alpha
    score = (ratio * v - x) / (sigma**2 - ratio * d_sigma * sigma)
    return v - 0.5 * (2.0 * t) * score


def euler_maruyama(velocity: Velocity, x1: torch.Tensor, y: torch.Tensor, settings: SamplerSettings,
                   noise: Callable[[int], torch.Tensor], null_class: int, precision: str = "fp32") -> torch.Tensor:
    """Euler-Maruyama from t = 1 to 0.04, then one deterministic step to 0; `noise(k)` is N(0, I) of step k."""
    evaluate = _Evaluator(velocity, settings, null_class, precision)
    drift = {"linear": _sde_drift, "cosine": _cosine_sde_drift}[settings.path]
    grid = settings.time_grid().tolist()
    x = x1.to(torch.float64)
    for k in range(settings.steps - 1):
        t_cur, t_next = grid[k], grid[k + 1]
        dt = t_next - t_cur
        d = evaluate(x, t_cur, y, drift)
        eps = noise(k).to(device=x.device, dtype=torch.float64)
        x = x + d * dt + math.sqrt(2.0 * t_cur) * math.sqrt(abs(dt)) * eps
    t_cur, t_next = grid[-2], grid[-1]
    return x + evaluate(x, t_cur, y, drift) * (t_next - t_cur)


def euler_ode(velocity: Velocity, x1: torch.Tensor, y: torch.Tensor, settings: SamplerSettings,
              null_class: int, precision: str = "fp32") -> torch.Tensor:
    """Euler (or Heun, except on the last step) on the probability-flow ODE dx = v dt.

    As upstream, the Heun corrector at t_next is guided or not as the predictor at t_cur is (the interval
    test uses t_cur for both evaluations of a step)."""
    evaluate = _Evaluator(velocity, settings, null_class, precision)
    grid = settings.time_grid().tolist()
    x = x1.to(torch.float64)
    for k in range(settings.steps):
        t_cur, t_next = grid[k], grid[k + 1]
        d = evaluate(x, t_cur, y, _velocity_drift)
        x_next = x + (t_next - t_cur) * d
        if settings.heun and k < settings.steps - 1:
            d_next = evaluate(x_next, t_next, y, _velocity_drift, guidance_t=t_cur)
            x_next = x + (t_next - t_cur) * (0.5 * d + 0.5 * d_next)
        x = x_next
    return x


def run_sampler(velocity: Velocity, x1: torch.Tensor, y: torch.Tensor, settings: SamplerSettings,
                noise: Callable[[int], torch.Tensor] | None, null_class: int,
                precision: str = "fp32") -> torch.Tensor:
    """Integrate from the noise `x1` to a float64 latent at t = 0."""
    if settings.mode == "jit":
        raise ValueError("mode: jit samples JiT checkpoints (repabench.jit.jit_sample), not SiT velocities")
    if settings.mode == "meanflow":
        raise ValueError("mode: meanflow samples MeanFlow checkpoints (repabench.meanflow.meanflow_sample), "
                         "not SiT velocities")
    if settings.mode == "sde":
        if noise is None:
            raise ValueError("the SDE sampler needs a noise source")
        return euler_maruyama(velocity, x1, y, settings, noise, null_class, precision)
    return euler_ode(velocity, x1, y, settings, null_class, precision)
