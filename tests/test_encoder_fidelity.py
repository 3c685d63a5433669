"""Each encoder family computes what upstream's loader computes: activation, LayerNorm eps, final norm, prefix tokens.

Tiny random-init copies of every family's architecture (depth 2, width 32) are run through the registry's wrapper
and compared with a hand-written forward pass whose family-specific operations come from the table below, written
from docs/upstream-facts.md §4.2 and the upstream model definitions (OpenAI CLIP: QuickGELU, LN eps 1e-5, ln_pre, no
ln_post; HF SigLIP: gelu_pytorch_tanh; ...), not from the registry.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import repabench.encoders as enc
from repabench.encoders.timm_models import TimmViTEncoder

ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu_tanh": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
}

# encoder: (MLP activation, LayerNorm eps, LN before the blocks, final norm on the returned tokens, prefix tokens)
PLAIN_VIT_FAMILIES = {
    "dino-vit-s": ("gelu", 1e-6, False, True, 1),            # hub DINO: get_intermediate_layers applies the norm
    "dinov2-vit-s": ("gelu", 1e-6, False, True, 1),          # x_norm_patchtokens
    "dinov2reg-vit-s": ("gelu", 1e-6, False, True, 5),       # CLS + 4 registers excluded
    "clip-vit-L": ("quick_gelu", 1e-5, True, False, 1),      # OpenAI CLIP: ln_pre, QuickGELU, no ln_post
    "mocov3-vit-s": ("gelu", 1e-6, False, True, 1),          # timm forward_features (final norm), CLS dropped
    "mae-vit-l": ("gelu", 1e-6, False, False, 1),            # last block WITHOUT the final norm
    "jepa-vit-h": ("gelu", 1e-6, False, True, 0),            # final norm, no CLS exists
    "siglip-vit-b": ("gelu_tanh", 1e-6, False, True, 0),     # HF last_hidden_state: post-LN, gelu_pytorch_tanh
    "siglip2-vit-b": ("gelu_tanh", 1e-6, False, True, 0),
    "siglip-vit-so400m": ("gelu_tanh", 1e-6, False, True, 0),
    "cradio-vit-b": ("gelu", 1e-6, False, False, 8),         # RADIO drops the final norm; 1 CLS + 7 registers
}
TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def _tiny_encoder(name: str, grid: int = 2) -> TimmViTEncoder:
    spec = enc.encoder_spec(name)
    timm_spec = enc.timm_spec_of(spec)
    timm_spec = dataclasses.replace(timm_spec, model_kwargs={**timm_spec.model_kwargs, **TINY})
    encoder = TimmViTEncoder(name, TINY["embed_dim"], timm_spec, None, grid=grid)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # every parameter random (LayerNorm affine and layer scale included), so each op matters
        for pname, p in encoder.network.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            p.copy_(1 + 0.2 * noise if "norm" in pname and pname.endswith("weight") else 0.3 * noise)
    return encoder


def _ln(x, module, eps):
    return F.layer_norm(x, x.shape[-1:], module.weight, module.bias, eps)


def _attention(x, attn):
    b, n, d = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.qkv.weight, attn.qkv.bias).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
    return F.linear((weights @ v).transpose(1, 2).reshape(b, n, d), attn.proj.weight, attn.proj.bias)


def _gamma(layer_scale):
    return getattr(layer_scale, "gamma", 1.0)


def reference_vit_tokens(net, x, act, eps, ln_pre, final_norm, prefix):
    """Pre-norm ViT by hand from the embedded sequence on: x + ls1 * attn(LN(x)), x + ls2 * fc2(act(fc1(LN(x))))."""
    h = net._pos_embed(net.patch_embed(x))  # patches + CLS/registers + positions: not a family difference
    if ln_pre:
        h = _ln(h, net.norm_pre, eps)
    for blk in net.blocks:
        h = h + _gamma(blk.ls1) * _attention(_ln(h, blk.norm1, eps), blk.attn)
        hidden = ACTIVATIONS[act](F.linear(_ln(h, blk.norm2, eps), blk.mlp.fc1.weight, blk.mlp.fc1.bias))
        h = h + _gamma(blk.ls2) * F.linear(hidden, blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    if final_norm:
        h = _ln(h, net.norm, eps)
    return h[:, prefix:]


@pytest.mark.parametrize("name", sorted(PLAIN_VIT_FAMILIES))
def test_vit_family_matches_the_hand_written_upstream_forward(name):
    act, eps, ln_pre, final_norm, prefix = PLAIN_VIT_FAMILIES[name]
    encoder = _tiny_encoder(name)
    x = torch.randn(2, 3, 2 * encoder.spec.patch, 2 * encoder.spec.patch, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = encoder.tokens(x, 2)
        expected = reference_vit_tokens(encoder.network, x, act, eps, ln_pre, final_norm, prefix)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        # the check has power: each wrong choice of the differing operation gives other tokens
        for other in set(ACTIVATIONS) - {act}:
            wrong = reference_vit_tokens(encoder.network, x, other, eps, ln_pre, final_norm, prefix)
            assert (wrong - got).abs().max() > 1e-4, (name, other)
        if not isinstance(encoder.network.norm, torch.nn.Identity):  # RADIO's definition has no final norm at all
            wrong_norm = reference_vit_tokens(encoder.network, x, act, eps, ln_pre, not final_norm, prefix)
            assert (wrong_norm - got).abs().max() > 1e-3


def test_clip_mlp_activation_is_quickgelu():
    encoder = _tiny_encoder("clip-vit-L")
    z = torch.linspace(-4, 4, 101)
    act = encoder.network.blocks[0].mlp.act
    torch.testing.assert_close(act(z), z * torch.sigmoid(1.702 * z), atol=1e-6, rtol=0)
    assert (act(z) - F.gelu(z)).abs().max() > 0.01  # what timm's plain CLIP definition computes


# RoPE families (timm Eva): eps, activation and final norm checked op by op on the tiny model.
# encoder: (activation, LayerNorm eps, final norm on the returned tokens, prefix tokens)
ROPE_FAMILIES = {
    "dinov3-vit-b16": ("gelu", 1e-5, True, 5),   # DINOv3 "layernormbf16" = eps 1e-5; x_norm_patchtokens
    "pe-vit-t": ("gelu", 1e-5, False, 1),        # PE forward_features(norm=False): before ln_post
    "pe-vit-g": ("gelu", 1e-5, False, 0),        # PE-Core-G has no CLS
    "pe-vit-tnorm": ("gelu", 1e-5, True, 1),     # upstream's `norm` variant: ln_post applied
    "pe-vit-gnorm": ("gelu", 1e-5, True, 0),
    "spatialpe-vit-b": ("gelu", 1e-5, False, 1),
}


@pytest.mark.parametrize("name", sorted(ROPE_FAMILIES))
def test_rope_family_eps_activation_and_final_norm(name):
    act, eps, final_norm, prefix = ROPE_FAMILIES[name]
    encoder = _tiny_encoder(name)
    net = encoder.network
    norms = [m for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == eps for m in norms), {m.eps for m in norms}
    z = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(net.blocks[0].mlp.act(z), ACTIVATIONS[act](z), atol=1e-6, rtol=0)

    captured = {}
    handle = net.blocks[-1].register_forward_hook(lambda module, inputs, output: captured.update(h=output))
    x = torch.randn(2, 3, 2 * encoder.spec.patch, 2 * encoder.spec.patch, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = encoder.tokens(x, 2)
    handle.remove()
    h = captured["h"]
    expected = (_ln(h, net.norm, eps) if final_norm else h)[:, prefix:]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# --- loaders: synthetic checkpoints in the upstream layouts ------------------------------------------------------


def _save_with_record(state: dict, path, torch_pickle: bool = False) -> None:
    from safetensors.torch import save_file

    from repabench.atomic import write_json
    from repabench.provenance import sha256_file
    from repabench.weights import sidecar

    if torch_pickle:
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    write_json(sidecar(path), {"name": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size})


def _tiny_with_weights(name: str, path, **overrides) -> TimmViTEncoder:
    timm_spec = enc.timm_spec_of(enc.encoder_spec(name))
    timm_spec = dataclasses.replace(timm_spec, model_kwargs={**timm_spec.model_kwargs, **TINY, **overrides})
    return TimmViTEncoder(name, TINY["embed_dim"], timm_spec, path, grid=2)


# RCG's ViT-L checkpoint names these four tensors so; upstream renames them to the right-hand names
RCG_MISNAMED = {"blocks.13.norm1": "blocks.13.norm13", "blocks.13.mlp.fc1": "blocks.13.mlp.fc13",
                "blocks.14.norm2": "blocks.14.norm14", "blocks.14.mlp.fc2": "blocks.14.mlp.fc14"}


def _rcg_layout(native: dict) -> dict:
    state = {}
    for key, value in native.items():
        for right, wrong in RCG_MISNAMED.items():
            key = key.replace(right + ".", wrong + ".")
        state[f"module.base_encoder.{key}"] = value
    state["module.base_encoder.head.weight"] = torch.zeros(10, TINY["embed_dim"])
    state["module.base_encoder.fc.weight"] = torch.zeros(10, TINY["embed_dim"])  # dropped upstream as well
    state["module.momentum_encoder.cls_token"] = native["cls_token"]
    return {"state_dict": state, "epoch": 800}


def test_mocov3_vit_l_loads_the_rcg_checkpoint_with_its_misnamed_keys(tmp_path):
    import timm

    from repabench.weights import WeightError

    native = timm.create_model("vit_large_patch16_224", num_classes=0, global_pool="", img_size=32,
                               **{**TINY, "depth": 15}).state_dict()
    path = tmp_path / "mocov3-vit-l.pth.tar"
    upstream = _rcg_layout(native)
    assert "module.base_encoder.blocks.13.norm13.weight" in upstream["state_dict"]
    _save_with_record(upstream, path, torch_pickle=True)
    encoder = _tiny_with_weights("mocov3-vit-l", path, depth=15)
    assert encoder.pretrained
    loaded = encoder.network.state_dict()
    for right in RCG_MISNAMED:
        for suffix in ("weight", "bias"):
            torch.testing.assert_close(loaded[f"{right}.{suffix}"], native[f"{right}.{suffix}"], rtol=0, atol=0)
    for key in ("blocks.13.norm2.weight", "blocks.14.norm1.bias", "blocks.14.mlp.fc1.weight", "norm.weight"):
        torch.testing.assert_close(loaded[key], native[key], rtol=0, atol=0)

    # without the renames the same file does not fit (what the loader did before)
    spec = dataclasses.replace(encoder.spec, key_renames=())
    with pytest.raises(WeightError, match="blocks.13.norm1"):
        TimmViTEncoder("mocov3-vit-l", TINY["embed_dim"], spec, path, grid=2)


def _radio_hf_layout(net, grid: int = 8) -> dict:
    """C-RADIOv3 as its Hugging Face checkpoint stores it: `radio_model.model.*` with a patch generator."""
    d = TINY["embed_dim"]
    state = {"radio_model.model.patch_generator.embedder.weight": net.patch_embed.proj.weight.reshape(d, -1),
             "radio_model.model.patch_generator.pos_embed": torch.randn(1, grid * grid, d),
             "radio_model.model.patch_generator.cls_token.token": torch.randn(8, d),
             "radio_model.input_conditioner.norm_mean": torch.zeros(3, 1, 1),
             "radio_model.input_conditioner.norm_std": torch.ones(3, 1, 1)}
    for key, value in net.state_dict().items():
        if key.startswith("blocks."):
            state[f"radio_model.model.{key}"] = value
    return state


@pytest.mark.parametrize("prefix", ["_feature_normalizer.", "radio_model.feature_normalizer.", None])
def test_cradio_applies_the_feature_normalizer_when_the_checkpoint_carries_one(tmp_path, prefix):
    plain = _tiny_encoder("cradio-vit-b")  # random weights; its blocks become the checkpoint
    state = _radio_hf_layout(plain.network)
    generator = torch.Generator().manual_seed(3)
    mean = torch.randn(TINY["embed_dim"], generator=generator)
    tx = torch.randn(TINY["embed_dim"], TINY["embed_dim"], generator=generator) / math.sqrt(TINY["embed_dim"])
    if prefix is not None:
        state[f"{prefix}mean"], state[f"{prefix}tx"] = mean, tx
    path = tmp_path / "cradio-vit-b.safetensors"
    _save_with_record(state, path)
    encoder = _tiny_with_weights("cradio-vit-b", path)
    assert encoder.describe()["feature_normalizer"] is (prefix is not None)

    x = torch.randn(2, 3, 32, 32, generator=generator)
    with torch.no_grad():
        got = encoder.tokens(x, 2)
        (raw,) = encoder.network.forward_intermediates(x, indices=1, norm=False, output_fmt="NLC",
                                                       intermediates_only=True)
    assert raw.shape == got.shape == (2, 4, TINY["embed_dim"])
    # RADIO's FeatureNormalizer by hand: y = (f - mean) tx^T, per token
    expected = torch.stack([torch.stack([tx @ (token - mean) for token in image]) for image in raw])
    torch.testing.assert_close(got, expected if prefix is not None else raw, atol=1e-5, rtol=1e-5)
    if prefix is not None:
        assert (got - raw).abs().max() > 0.1


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows of 1-D bilinear resampling with align_corners=False: source x = (i + 0.5) n_in / n_out - 0.5, clamped."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
        lo = int(np.floor(x))
        hi = min(lo + 1, n_in - 1)
        m[i, lo] += 1 - (x - lo)
        m[i, hi] += x - lo
    return m


def test_upstream_hog_is_dense_2px_cells_on_grey_resized_bilinearly():
    from skimage.feature import hog

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 32, 32)).astype(np.uint8)
    tokens = enc.build_encoder("hog-upstream-g16_d128")(torch.from_numpy(images), grid=2).numpy()
    assert tokens.shape == (2, 4, 128)
    for image, got in zip(images.astype(np.float64), tokens):
        grey = 0.2125 * image[0] + 0.7154 * image[1] + 0.0721 * image[2]
        blocks = hog(grey, orientations=8, pixels_per_cell=(2, 2), cells_per_block=(4, 4), block_norm="L2-Hys",
                     feature_vector=False)  # [13, 13, 4, 4, 8]: one block per cell position
        dense = blocks.reshape(13, 13, 128)
        dense = dense / np.linalg.norm(dense, axis=-1, keepdims=True)
        m = _bilinear_matrix(13, 2)
        expected = np.einsum("ri,ijd,cj->rcd", m, dense, m).reshape(4, 128)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_sam_tokens_are_the_neck_map_resized_bilinearly():
    """SAM v1: neck output (256 channels, 1/16 of the input side: 64x64 at 1024 px) resized to the token grid."""
    from repabench.encoders.timm_models import SamViTEncoder

    timm_spec = enc.timm_spec_of(enc.encoder_spec("sam-vit-b"))
    tiny = dataclasses.replace(timm_spec, model_kwargs={**TINY, "global_attn_indexes": (1,), "window_size": 4})
    encoder = SamViTEncoder("sam-vit-b", 256, tiny, None, grid=2)  # 128 px input -> 8x8 neck map -> 2x2 tokens
    images = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = encoder(images, grid=2)[0].double().numpy()
        neck = encoder.network.forward_features(encoder.preprocess(images, 2))[0].double().numpy()
    assert neck.shape == (256, 8, 8) and tokens.shape == (4, 256)
    m = _bilinear_matrix(8, 2)
    expected = np.einsum("ri,dij,cj->rcd", m, neck, m).reshape(4, 256)
    np.testing.assert_allclose(tokens, expected, atol=1e-4)


def test_vgg16_tokens_are_pool4_of_the_torchvision_features(tmp_path):
    """features[0:24]: 10 conv3x3+ReLU, 4 max-pools, 512 channels at stride 16; loads a torchvision-layout file."""
    torch.manual_seed(0)
    reference = torch.nn.Module()
    channels = [3, 64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, previous = [], 3
    for width in channels[1:]:  # torchvision's VGG16 ("D") feature stack written out
        if width == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(previous, width, 3, padding=1), torch.nn.ReLU(inplace=True)]
            previous = width
    reference.features = torch.nn.Sequential(*layers)
    state = {f"features.{k}": v for k, v in reference.features.state_dict().items()}
    state["classifier.6.weight"] = torch.full((10, 4), float("nan"))  # IMAGENET1K_FEATURES: NaN classifier
    path = tmp_path / "vgg16_features-amdegroot-88682ab5.pth"
    _save_with_record(state, path, torch_pickle=True)
    encoder = enc.build_encoder("vgg-cnn-16", tmp_path)
    assert encoder.pretrained
    convs = [m for m in encoder.features if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in encoder.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 10 and len(pools) == 4 and isinstance(encoder.features[-1], torch.nn.MaxPool2d)
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = encoder.preprocess(images, 2)
    with torch.no_grad():
        tokens = encoder(images, grid=2)
        h = x
        for layer in list(reference.features)[:24]:
            h = layer(h)
    assert h.shape == (1, 512, 2, 2)
    torch.testing.assert_close(tokens, h.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)
