"""The spatial-normalisation figure: cosine maps against a hand computation, and its report section."""

from __future__ import annotations

import numpy as np

from repabench.spnorm_viz import cosine_maps


def _hand(tokens: np.ndarray, alpha: float, anchor: int) -> tuple[np.ndarray, np.ndarray]:
    t = tokens.astype(np.float64)
    z = (t - alpha * t.mean(0)) / (t.std(0, ddof=1) + 1e-6)  # iREPA z-score over tokens, per channel

    def cos(x):
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        return unit @ unit[anchor]

    side = int(np.sqrt(t.shape[0]))
    return cos(t).reshape(side, side), cos(z).reshape(side, side)


def test_cosine_maps_match_the_hand_computation_and_remove_the_global_component():
    rng = np.random.default_rng(0)
    local = rng.normal(size=(16, 8))
    tokens = (local + 20.0 * rng.normal(size=8)).astype(np.float32)  # a strong component shared by all tokens
    raw, normalised = cosine_maps(tokens, alpha=0.6)
    want_raw, want_norm = _hand(tokens, 0.6, anchor=2 * 4 + 2)  # centre of 4x4
    np.testing.assert_allclose(raw, want_raw, atol=1e-5)
    np.testing.assert_allclose(normalised, want_norm, atol=1e-5)
    assert abs(raw[2, 2] - 1) < 1e-6 and abs(normalised[2, 2] - 1) < 1e-6
    full = cosine_maps(tokens, alpha=1.0)[1]  # alpha 1 removes the whole mean token
    others = np.delete(raw.ravel(), 10), np.delete(full.ravel(), 10)
    assert others[0].min() > 0.9 and others[1].mean() < 0.5  # flat raw map; structure after normalisation


def test_report_section_draws_one_row_per_encoder(tmp_path):
    from repabench.report.model import Inputs
    from repabench.report.results import spatialnorm_section
    from repabench.store import write_store

    rng = np.random.default_rng(1)
    features = {}
    for name in ("enc-a-x", "enc-b-x"):
        path = tmp_path / name / "heldout"
        write_store(path, {"tokens": rng.normal(size=(3, 16, 4)).astype(np.float16), "labels": np.arange(3)})
        features[name] = str(path)
    inputs = Inputs(params={"methods": {"irepa": {"projector": "conv", "spatial_norm": "zscore", "alpha": 0.8}}},
                    table=None, stats={}, curves=None, train_logs=[], benchmarks=None, weights=[],
                    eval_provenance=[], input_paths=[], features=features)
    section = spatialnorm_section(inputs, ["enc-b-x", "enc-a-x"])
    (figure,) = section.figures
    assert figure.name == "spatialnorm" and "alpha 0.8" in figure.caption
    assert len(figure.figure.axes) == 2 * 2 + 1  # two panels per encoder and the colour bar
    assert spatialnorm_section(Inputs(params={}, table=None, stats={}, curves=None, train_logs=[], benchmarks=None,
                                      weights=[], eval_provenance=[], input_paths=[]), ["enc-a-x"]) is None
