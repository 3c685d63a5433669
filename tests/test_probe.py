"""Linear probe: reaches a scikit-learn logistic-regression reference; the stage pools and reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from repabench.probe import linear_probe_main, mean_pooled, train_linear_probe
from repabench.store import write_store

# The probe selects its best epoch and head on the validation set, like the reference's C grid below;
# both are optimistic in the same way, so the probe must come within this many points of it.
MARGIN_POINTS = 2.0


def _mixture(rng, n, dim, classes, sep, scale):
    centres = rng.normal(size=(classes, dim)) * sep
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(size=(n, dim))
    return (x * scale + 3.0).astype(np.float32), y  # an offset and a scale of the kind raw features have


def _sklearn_reference(x_train, y_train, x_val, y_val):
    scaler = StandardScaler().fit(x_train)
    best = 0.0
    for c in (0.001, 0.01, 0.1, 1.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x_train), y_train)
        best = max(best, 100 * clf.score(scaler.transform(x_val), y_val))
    return best


@pytest.mark.parametrize("scale", [0.01, 50.0])
def test_probe_reaches_logistic_regression(scale):
    rng = np.random.default_rng(0)
    dim, classes = 48, 6
    x, y = _mixture(rng, 1500, dim, classes, sep=0.35, scale=scale)
    x_train, y_train, x_val, y_val = x[:1100], y[:1100], x[1100:], y[1100:]
    reference = _sklearn_reference(x_train, y_train, x_val, y_val)
    assert 40 < reference < 95  # neither trivial nor hopeless, so the comparison means something
    result = train_linear_probe(x_train, y_train, x_val, y_val, epochs=60, batch_size=256, seed=0)
    assert result.best_val_acc >= reference - MARGIN_POINTS
    assert result.best_val_acc <= reference + 6.0
    assert result.best_lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    assert len(result.heads) == 7


def test_heads_are_independent():
    """A head's result does not depend on which other heads share the pass."""
    rng = np.random.default_rng(1)
    x, y = _mixture(rng, 400, 16, 4, sep=0.5, scale=1.0)
    alone = train_linear_probe(x[:300], y[:300], x[300:], y[300:], lrs=[1e-2], epochs=10, batch_size=64)
    bank = train_linear_probe(x[:300], y[:300], x[300:], y[300:], lrs=[1e-3, 1e-2, 1e-1], epochs=10, batch_size=64)
    assert bank.heads[1]["best_val_acc"] == pytest.approx(alone.heads[0]["best_val_acc"], abs=1e-4)
    assert bank.heads[1]["final_train_acc"] == pytest.approx(alone.heads[0]["final_train_acc"], abs=1e-4)


def test_uninformative_features_stay_near_chance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1000, 32)).astype(np.float32)
    y = rng.integers(0, 4, size=1000)
    result = train_linear_probe(x[:600], y[:600], x[600:], y[600:], epochs=20, batch_size=200)
    assert result.best_val_acc < 40  # chance is 25; selection over heads/epochs adds a little


def test_mean_pooled_matches_numpy():
    rng = np.random.default_rng(3)
    tokens = rng.normal(size=(37, 9, 5)).astype(np.float16)
    np.testing.assert_allclose(mean_pooled(tokens, chunk=8), tokens.astype(np.float32).mean(1), rtol=1e-6)


def test_stage_writes_result(tmp_path):
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(3, 8))
    for split, n in (("train", 240), ("heldout", 90)):
        y = rng.integers(0, 3, size=n)
        tokens = centres[y][:, None, :] + rng.normal(size=(n, 16, 8))  # class signal survives mean pooling
        write_store(tmp_path / split, {"tokens": tokens.astype(np.float16), "labels": y})
    out = tmp_path / "probe.json"
    params = {"probe": {"epochs": 20, "lrs": [0.001, 0.01], "weight_decays": [0.0, 0.01], "batch_size": 64}}
    assert linear_probe_main(["--train", str(tmp_path / "train"), "--val", str(tmp_path / "heldout"),
                              "--encoder", "toy", "--out", str(out), "--params", json.dumps(params),
                              "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["encoder"] == "toy" and result["n_train"] == 240 and result["n_val"] == 90
    assert result["best_val_acc"] > 90 and result["best_val_acc"] > result["chance"]
    assert result["best_lr"] in (0.001, 0.01) and len(result["heads"]) == 4
    assert result["provenance"]["stage"] == "linear_probe"


def test_stage_prefers_pooled_features(tmp_path):
    rng = np.random.default_rng(5)
    for split, n in (("train", 200), ("heldout", 80)):
        y = rng.integers(0, 2, size=n)
        pooled = np.stack([y * 3.0, rng.normal(size=n)], axis=1).astype(np.float32)  # separable on dim 0
        tokens = rng.normal(size=(n, 4, 2)).astype(np.float16)  # pure noise: would give ~chance
        write_store(tmp_path / split, {"tokens": tokens, "pooled": pooled, "labels": y})
    out = tmp_path / "probe.json"
    assert linear_probe_main(["--train", str(tmp_path / "train"), "--val", str(tmp_path / "heldout"),
                              "--encoder", "toy", "--out", str(out), "--device", "cpu",
                              "--params", json.dumps({"probe": {"epochs": 10, "batch_size": 64}})]) == 0
    assert json.loads(out.read_text())["best_val_acc"] == 100.0
