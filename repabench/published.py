"""Published numbers of the iREPA study (arXiv 2512.10794, project page), as data.

Every value carries its source as named in `docs/upstream-facts.md` (§9 and its table of sources): `FIG` is the
paper's correlation figure, `PAGE` the project page (its "Trend" paragraphs and Table 3). The report puts these
beside our numbers where the encoder strings coincide; the paper's setting is SiT-XL/2 + REPA, 100K steps, 50K
SDE-250 samples, no CFG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

SETTING = {
    "model": "SiT-XL/2",
    "method": "REPA",
    "step": 100_000,
    "sampler": "SDE, 250 steps, no CFG, 50K samples",
    "reference": "ADM ImageNet 256 reference batch",
    "n_encoders": 27,
}

# Pearson r of each predictor against FID over the 27 encoders (§9.1; FIG and PAGE).
CORRELATION_R: Mapping[str, float] = {
    "LP": -0.260,
    "LDS": -0.852,
    "CDS": -0.847,
    "SRSS": -0.885,
    "RMSC": -0.888,
}

# Across SiT-B/2, SiT-L/2 and SiT-XL/2 the page gives only bounds (§9.1, PAGE figure caption).
ACROSS_SIZES_ABS_R = {"LP": ("<", 0.306), "spatial": (">", 0.826)}

# Value ranges of the correlation figure, read by eye (§9.1, FIG): used to say where our points fall.
FIGURE_RANGES: Mapping[str, tuple[float, float]] = {
    "FID": (19.0, 42.0),
    "LP": (52.0, 85.0),
    "LDS": (0.04, 0.44),
    "CDS": (0.005, 0.057),
    "SRSS": (0.05, 0.53),
    "RMSC": (0.27, 0.89),
}


@dataclass(frozen=True)
class EncoderResult:
    """One encoder's published REPA numbers (SiT-XL/2, 100K steps); None where the source gives none."""

    encoder: str  # our registry string
    paper_name: str
    lp: float | None = None  # linear-probe top-1, percent
    fid: float | None = None
    inception_score: float | None = None
    sfid: float | None = None
    source: str = ""
    note: str = ""


ENCODERS: Mapping[str, EncoderResult] = {r.encoder: r for r in (
    EncoderResult("pe-vit-g", "PE-Core-G (1.88B)", lp=82.8, fid=32.35, inception_score=42.7, sfid=6.70,
                  source="PAGE Trend 1; Table 3", note="Trend 1 rounds the FID to 32.3"),
    EncoderResult("spatialpe-vit-b", "PE-Spatial-B (80M)", lp=53.1, fid=21.0, source="PAGE Trend 1"),
    EncoderResult("webssl-vit-dino1b_full2b_224", "WebSSL-1B", lp=76.0, fid=26.10, inception_score=53.0, sfid=6.90,
                  source="PAGE; Table 3"),
    EncoderResult("sam2-vit-s", "SAM2-S (46M)", lp=24.1, source="PAGE Trend 2",
                  note="FID not given: better than encoders with ~60 points higher LP accuracy"),
    EncoderResult("dinov2-vit-b", "DINOv2-B", fid=19.06, inception_score=70.3, sfid=5.83, source="PAGE Table 3"),
    EncoderResult("dinov3-vit-b16", "DINOv3-B", fid=21.47, inception_score=63.4, sfid=6.19, source="PAGE Table 3"),
)}


@dataclass(frozen=True)
class AblationRow:
    """A row of Table 3: which iREPA components are on, and FID / IS / sFID per encoder."""

    label: str
    projector: str  # "mlp" or "conv"
    spatial_norm: str  # "none" or "zscore"
    results: Mapping[str, tuple[float, float, float]]  # encoder -> (FID, IS, sFID)


ABLATION_ENCODERS = ("dinov2-vit-b", "dinov3-vit-b16", "webssl-vit-dino1b_full2b_224", "pe-vit-g")

# Table 3 of the project page (§9.3): SiT-XL/2, 100K steps, FID / IS / sFID.
ABLATION: tuple[AblationRow, ...] = (
    AblationRow("Baseline REPA", "mlp", "none", {
        "dinov2-vit-b": (19.06, 70.3, 5.83), "dinov3-vit-b16": (21.47, 63.4, 6.19),
        "webssl-vit-dino1b_full2b_224": (26.10, 53.0, 6.90), "pe-vit-g": (32.35, 42.7, 6.70)}),
    AblationRow("iREPA without spatial norm (conv only)", "conv", "none", {
        "dinov2-vit-b": (18.52, 73.3, 6.11), "dinov3-vit-b16": (17.76, 74.7, 5.81),
        "webssl-vit-dino1b_full2b_224": (21.17, 64.6, 6.27), "pe-vit-g": (24.97, 57.4, 6.21)}),
    AblationRow("iREPA without conv projector (spatial norm only)", "mlp", "zscore", {
        "dinov2-vit-b": (17.66, 72.8, 6.03), "dinov3-vit-b16": (18.28, 70.8, 6.18),
        "webssl-vit-dino1b_full2b_224": (18.44, 71.0, 6.22), "pe-vit-g": (21.72, 61.5, 6.26)}),
    AblationRow("iREPA (full)", "conv", "zscore", {
        "dinov2-vit-b": (16.96, 77.9, 6.26), "dinov3-vit-b16": (16.26, 78.8, 6.14),
        "webssl-vit-dino1b_full2b_224": (16.66, 77.5, 6.18), "pe-vit-g": (18.19, 75.0, 6.03)}),
)


def ablation_row(projector: str, spatial_norm: str) -> AblationRow | None:
    """The Table 3 row whose components match a method definition (projector kind, spatial norm)."""
    for row in ABLATION:
        if row.projector == projector and row.spatial_norm == spatial_norm:
            return row
    return None


def published_encoder(encoder: str) -> EncoderResult | None:
    return ENCODERS.get(encoder)


N_ENCODERS_LABEL = f"{SETTING['n_encoders']} encoders"
MODEL_STEPS_LABEL = f"{SETTING['model']}, {SETTING['step'] // 1000}K steps"  # SiT-XL/2, 100K steps
SETTING_LABEL = f"{SETTING['model']}, {SETTING['method']}, {SETTING['step'] // 1000}K steps"


# Table 2b of the project page (§9.4): MeanFlow with REPA / iREPA on SiT-B/2 (our MF-B/2), 100K steps, IS / FID per
# (NFE, CFG scale); the CFG is applied at sampling time in our samplers (open question Q3 of docs/recipes.md).
MEANFLOW_SETTING_LABEL = "MeanFlow, SiT-B/2, 100K steps (PAGE Table 2b)"
MEANFLOW_COLUMNS = ((4, 1.0), (1, 1.0), (4, 2.0), (1, 2.0))  # (NFE, CFG scale), the table's column order
MEANFLOW: Mapping[tuple[str, str, str], tuple[tuple[float, float], ...]] = {
    # (encoder, projector, spatial_norm) -> (IS, FID) per MEANFLOW_COLUMNS
    ("webssl-vit-dino1b_full2b_224", "mlp", "none"): ((27.2, 51.4), (24.1, 58.7), (87.9, 16.6), (69.1, 23.7)),
    ("webssl-vit-dino1b_full2b_224", "conv", "zscore"): ((31.5, 45.7), (27.3, 55.7), (100.7, 13.9), (78.7, 20.7)),
    ("dinov3-vit-b16", "mlp", "none"): ((28.4, 49.6), (25.5, 57.0), (93.3, 15.6), (72.4, 22.6)),
    ("dinov3-vit-b16", "conv", "zscore"): ((33.6, 44.5), (29.7, 53.8), (124.5, 11.1), (98.9, 17.3)),
}


def meanflow_result(encoder: str, projector: str, spatial_norm: str, nfe: int,
                    cfg_scale: float) -> tuple[float, float] | None:
    """(IS, FID) of Table 2b for a MeanFlow run (REPA: mlp / none, iREPA: conv / zscore) and sampler, or None."""
    cells = MEANFLOW.get((encoder, projector, spatial_norm))
    column = (int(nfe), float(cfg_scale))
    if cells is None or column not in MEANFLOW_COLUMNS:
        return None
    return cells[MEANFLOW_COLUMNS.index(column)]
# Table 2a of the project page (§9.4): REPA-E vs iREPA-E, SiT-XL/2, 100K steps; (IS, FID, sFID, Precision, Recall).
REPAE_COLUMNS = ("IS", "FID", "sFID", "Precision", "Recall")
REPAE_TABLE: Mapping[str, Mapping[str, tuple[float, float, float, float, float]]] = {
    "REPA-E": {"webssl-vit-dino1b_full2b_224": (52.8, 26.5, 5.20, 0.620, 0.585),
               "pe-vit-g": (50.9, 25.9, 5.68, 0.612, 0.576),
               "dinov3-vit-b16": (82.2, 14.4, 4.68, 0.694, 0.596)},
    "iREPA-E": {"webssl-vit-dino1b_full2b_224": (87.0, 13.2, 5.28, 0.699, 0.598),
                "pe-vit-g": (80.0, 16.4, 5.40, 0.667, 0.616),
                "dinov3-vit-b16": (93.6, 11.7, 4.57, 0.703, 0.613)},
}


def repae_column(method: Mapping[str, object]) -> str | None:
    """The Table 2a column of an end-to-end method entry: iREPA-E with iREPA's conv projector and spatial
    z-score, REPA-E with neither; None for any other entry."""
    if not method.get("end_to_end"):
        return None
    components = (method.get("projector", "mlp"), method.get("spatial_norm", "none"))
    return {("mlp", "none"): "REPA-E", ("conv", "zscore"): "iREPA-E"}.get(components)
