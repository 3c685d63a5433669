"""The encoder zoo: every vision encoder of the study behind one interface.

    known_encoders()                 every registered encoder string (plus the demo `_randinit` controls)
    weight_names(name)               weight files `name` needs in resources/weights ([] for random init/classical)
    build_encoder(name, weights_dir) an `Encoder`: forward(uint8 images [B,3,H,W], grid) -> fp32 tokens [B,grid^2,D]
    validate_encoder_name(name)      ValueError listing the known encoders

Encoder strings are `type-arch-config` (docs/upstream-facts.md §4.1). `<name>_randinit` is a random-init control
with the same architecture. `<name>_shuffled`, `<name>_global` and `<name>_local` are the spatial controls of
`repabench.encoders.variants` (after `_randinit` when both). Importing this package is cheap (no torch); models
are built on demand.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repabench.encoders.catalog import DEMO_RANDINIT, RANDINIT, REGISTRY, STUDY_ENCODERS, VARIANTS, EncoderEntry

if TYPE_CHECKING:
    from repabench.encoders.base import Encoder

__all__ = ["Encoder", "EncoderEntry", "REGISTRY", "STUDY_ENCODERS", "VARIANTS", "build_encoder", "encoder_spec",
           "encoder_variant", "extract_features_main", "known_encoders", "validate_encoder_name", "weight_names"]


def known_encoders() -> list[str]:
    return list(REGISTRY) + DEMO_RANDINIT


def encoder_variant(name: str) -> tuple[str, str | None]:
    """`<base>_<variant>` -> (base, "_<variant>"); (name, None) for a plain encoder."""
    for variant in VARIANTS:
        if name.endswith(variant):
            return name[: -len(variant)], variant
    return name, None


def _split(name: str) -> tuple[EncoderEntry, bool]:
    name = encoder_variant(name)[0]
    base, randinit = (name[: -len(RANDINIT)], True) if name.endswith(RANDINIT) else (name, False)
    spec = REGISTRY.get(base)
    if spec is None:
        close = difflib.get_close_matches(name, known_encoders(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown encoder {name!r}{hint}; known encoders: {', '.join(known_encoders())}; "
                         f"append {RANDINIT} to any of them with weights for a random-init control, or one of "
                         f"{', '.join(VARIANTS)} for a spatial control")
    if randinit and not spec.has_weights:
        raise ValueError(f"encoder {base!r} has no weights, so {name!r} is the same thing; use {base!r}")
    return spec, randinit


def validate_encoder_name(name: str) -> None:
    _split(name)


def encoder_spec(name: str) -> EncoderEntry:
    return _split(name)[0]


def weight_names(name: str) -> list[str]:
    spec, randinit = _split(name)
    return [] if randinit else list(spec.weights)


def build_encoder(name: str, weights_dir: str | Path | None = None, device: Any = "cpu", grid: int = 16) -> "Encoder":
    """Build `name` frozen in eval mode on `device`.

    weights_dir None (or a `_randinit` name) gives a random-init model of the real architecture, seeded so that
    the same name always gives the same weights. `grid` is the token grid the network is first set up for
    (ViTs resample their position embeddings once per grid; a forward at another grid rebuilds).
    device="meta" builds without memory (shape checks of the giant models).
    """
    import torch

    spec, randinit = _split(name)
    files = None
    if weights_dir is not None and not randinit and spec.has_weights:
        files = [Path(weights_dir) / w for w in spec.weights]
    device = torch.device(device)
    if device.type == "meta" and files:
        raise ValueError("device='meta' builds random-init encoders only; pass weights_dir=None")
    from repabench.encoders.base import seeded_init

    with seeded_init():
        if device.type == "meta":
            with torch.device("meta"):
                encoder = _construct(name, spec, None, grid)
        else:
            encoder = _construct(name, spec, files, grid)
    encoder.freeze()
    return encoder if device.type == "meta" else encoder.to(device)


def timm_spec_of(spec: EncoderEntry):
    """The `TimmArchitecture` (architecture, final norm, checkpoint handling) of a timm-family registry entry."""
    from repabench.encoders.timm_models import TimmArchitecture

    options = spec.options
    return TimmArchitecture(arch=options["arch"], patch=options["patch"], preprocessing=spec.preprocessing,
                    final_norm=options.get("final_norm", True),
                    model_kwargs=dict(options.get("model_kwargs", {})),
                    filter_kwargs=dict(options.get("filter_kwargs", {})),
                    strip_prefix=options.get("strip_prefix", ""),
                    key_renames=tuple(tuple(pair) for pair in options.get("key_renames", ())),
                    cls_mix_alpha=options.get("cls_mix_alpha"),
                    feature_normalizer=options.get("feature_normalizer", False))


def _construct(name: str, spec: EncoderEntry, files: list[Path] | None, grid: int) -> "Encoder":
    base, variant = encoder_variant(name)
    if variant is not None:
        from repabench.encoders.variants import VariantEncoder

        return VariantEncoder(name, _construct(base, spec, files, grid), variant)
    weight = files[0] if files else None
    options = spec.options
    if spec.family in ("timm", "sam2", "sam"):
        from repabench.encoders.timm_models import Sam2HieraEncoder, SamViTEncoder, TimmViTEncoder

        timm_spec = timm_spec_of(spec)
        if spec.family == "sam2":
            return Sam2HieraEncoder(name, spec.embed_dim, timm_spec, weight)
        if spec.family == "sam":
            return SamViTEncoder(name, spec.embed_dim, timm_spec, weight, grid=grid)
        return TimmViTEncoder(name, spec.embed_dim, timm_spec, weight, grid=grid)
    if spec.family == "sam2logit":
        from repabench.encoders.sam2logit import Sam2LogitEncoder, load_sam2

        network, processor = load_sam2(options["size"], weight)
        return Sam2LogitEncoder(name, options["points_side"], network, processor, pretrained=weight is not None)
    if spec.family == "webssl":
        from repabench.encoders.webssl import WebSSLEncoder

        return WebSSLEncoder(name, spec.embed_dim, options["size"], spec.preprocessing, weight)
    if spec.family == "effnet":
        from repabench.encoders.cnn import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(name, spec.embed_dim, spec.preprocessing, options["variant"], weight)
    if spec.family == "vgg":
        from repabench.encoders.cnn import VGG16Encoder

        return VGG16Encoder(name, spec.embed_dim, spec.preprocessing, weight)
    if spec.family == "inception":
        from repabench.encoders.cnn import InceptionEncoder

        return InceptionEncoder(name, spec.embed_dim, spec.preprocessing, weight)
    if spec.family == "hog":
        from repabench.encoders.classical import HOGEncoder

        return HOGEncoder(name, spec.embed_dim, spec.preprocessing)
    if spec.family == "hog_dense":
        from repabench.encoders.classical import HOGDenseEncoder

        return HOGDenseEncoder(name, spec.embed_dim, spec.preprocessing)
    if spec.family == "sift":
        from repabench.encoders.classical import SIFTEncoder

        return SIFTEncoder(name, spec.embed_dim, spec.preprocessing)
    if spec.family == "pixels":
        from repabench.encoders.classical import PixelEncoder

        return PixelEncoder(name, spec.embed_dim, spec.preprocessing)
    raise ValueError(f"encoder {name!r}: unknown family {spec.family!r}")


def extract_features_main(argv: list[str]) -> int:
    from repabench.encoders.extract import extract_features_main as main

    return main(argv)


def __getattr__(attr: str):
    if attr == "Encoder":
        from repabench.encoders.base import Encoder

        return Encoder
    raise AttributeError(f"module 'repabench.encoders' has no attribute {attr!r}")
