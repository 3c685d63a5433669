"""Stages reference_stats / evaluate / collect_metrics end to end on tiny image sets, offline."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from repabench.adm import images as I
from repabench.adm import metrics as M
from repabench.adm import stages as S
from repabench.adm.inception import load_inception, read_state
from repabench.atomic import write_json
from repabench.provenance import sha256_file
from repabench.store import write_store
from repabench.weights import WEIGHTS, sidecar
from test_adm_metrics import oracle_inception_score, oracle_precision_recall, oracle_softmax

FID_HELPER = "inception-2015-12-05-fid-helper.pt"


@pytest.fixture(scope="module")
def weights(fid_helper_weights) -> Path:
    return fid_helper_weights


@pytest.fixture(scope="module")
def weights_with_logits(weights, tmp_path_factory) -> Path:
    """torch-fidelity-layout weights: the real convs plus a random `fc` (the real one ships nowhere offline)."""
    state = read_state(weights)
    state["fc.weight"] = torch.randn(1008, 2048, generator=torch.Generator().manual_seed(0)) * 0.1
    state["fc.bias"] = torch.zeros(1008)
    path = tmp_path_factory.mktemp("weights_logits") / "inception-with-random-fc.pth"
    torch.save(state, path)
    write_json(sidecar(path), {"name": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size})
    return path


def _images(n, seed, size=32):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, size, size, 3))
    return np.clip(base + rng.integers(-60, 60, (n, size, size, 3)), 0, 255).astype(np.uint8)


def _write_samples(root: Path, images: np.ndarray, counts, run=None) -> Path:
    (root / "shards").mkdir(parents=True)
    entries, start = [], 0
    for k, count in enumerate(counts):
        file = f"shards/{k:05d}.npy"
        np.save(root / file, images[start:start + count])
        entries.append({"file": file, "start": start, "count": count, "sha256": sha256_file(root / file)})
        start += count
    write_json(root / "manifest.json", {"format": I.SAMPLES_FORMAT, "n_samples": start, "shards": entries,
                                        "run": run or {}})
    return root


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    ref_images, sample_images = _images(6, 0), _images(6, 1)
    write_store(root / "heldout", {"images": ref_images, "labels": np.zeros(6, np.int64)}, {"resolution": 32})
    run = {"model": "sit-t-2", "encoder": "enc", "method": "repa", "step": "0000200", "sampler": "sde50"}
    _write_samples(root / "samples", sample_images, [3, 2, 1], run)
    return {"root": root, "ref": ref_images, "samples": sample_images, "run": run}


@pytest.fixture(scope="module")
def features(weights, sets):
    """Sample features from the plain (NCHW, unbatched) network, independent of the stages' pipeline."""
    model = load_inception(weights)
    with torch.inference_mode():
        out = model(torch.from_numpy(sets["samples"]).permute(0, 3, 1, 2).contiguous())
    return {name: t.numpy() for name, t in out.items()}


def test_sample_shards_rebatch_across_shards(sets, tmp_path):
    source = I.open_images(sets["root"] / "samples")
    assert source.count == 6 and source.run["step"] == "0000200"
    for batch in (1, 2, 4, 5, 50):
        parts = list(source.batches(batch))
        assert [len(p) for p in parts[:-1]] == [batch] * (len(parts) - 1)
        np.testing.assert_array_equal(np.concatenate(parts), sets["samples"])


def test_bad_sample_sets_fail_early(sets, tmp_path):
    broken = _write_samples(tmp_path / "broken", sets["samples"], [4, 2])
    np.save(broken / "shards/00001.npy", sets["samples"][:1])  # truncated shard
    with pytest.raises(I.ImageSetError, match="holds 1 images"):
        I.open_images(broken)
    corrupt = _write_samples(tmp_path / "corrupt", sets["samples"], [6])
    np.save(corrupt / "shards/00000.npy", sets["samples"][::-1].copy())
    I.open_images(corrupt)  # shapes are fine
    with pytest.raises(I.ImageSetError, match="SHA-256"):
        I.open_images(corrupt, verify=True)
    with pytest.raises(I.ImageSetError, match="neither an .npz"):
        I.open_images(tmp_path)


def test_npz_streaming_equals_array(tmp_path, sets):
    path = tmp_path / "samples.npz"
    np.savez(path, sets["samples"], np.arange(10))
    source = I.open_images(path)
    np.testing.assert_array_equal(np.concatenate(list(source.batches(3))), sets["samples"])
    with zipfile.ZipFile(path) as archive:
        assert "arr_0.npy" in archive.namelist()


def test_reference_and_evaluate_match_oracle(weights, sets, features, tmp_path):
    root = sets["root"]
    params = json.dumps({"evaluate": {"batch_size": 3, "pr_fp16": False}})
    ref_path = tmp_path / "reference" / "heldout.npz"
    assert S.reference_stats_main(["--source", str(root / "heldout"), "--inception-weights", str(weights),
                                   "--out", str(ref_path), "--params", params, "--device", "cpu"]) == 0
    arrays, meta = S.read_reference(ref_path)
    assert arrays["pool"].shape == (6, 2048) and arrays["sigma_s"].shape == (2023, 2023)
    assert meta["inception"]["sha256"] == WEIGHTS[FID_HELPER].sha256
    assert meta["provenance"]["stage"] == "reference_stats"

    out = tmp_path / "eval" / "0000200" / "sde50.json"
    assert S.evaluate_main(["--samples", str(root / "samples"), "--reference", str(ref_path),
                            "--inception-weights", str(weights), "--out", str(out), "--params", params,
                            "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["run"] == sets["run"] and result["n_samples"] == 6 and result["n_reference"] == 6
    assert result["IS"] is None and "logits" in result["IS_note"]
    assert "provenance" in result and result["method"]["frechet"] == "eigh"  # auto: 6 samples < 2048 dims

    # the plumbing: the stage's numbers equal the (oracle-tested) statistics of independently extracted features
    pool, spatial = features["pool"], features["spatial"]
    for acts, mu, sigma, key in ((pool, "mu", "sigma", "FID"), (spatial, "mu_s", "sigma_s", "sFID")):
        want = M.frechet_distance(M.statistics(acts), M.Statistics(arrays[mu], arrays[sigma]), "eigh",
                                  sample_factor=M.centred_factor(acts))
        assert result[key] == pytest.approx(want, rel=1e-4)  # features agree to ~1e-6 (channels_last)
    assert (result["Precision"], result["Recall"]) == oracle_precision_recall(arrays["pool"], pool)

    # the same images as an ADM .npz give the same numbers (run block now from --run)
    npz = tmp_path / "samples.npz"
    np.savez(npz, sets["samples"])
    out_npz = tmp_path / "npz.json"
    S.evaluate_main(["--samples", str(npz), "--reference", str(ref_path), "--inception-weights", str(weights),
                     "--out", str(out_npz), "--params", params, "--device", "cpu", "--run", '{"step": 7}'])
    again = json.loads(out_npz.read_text())
    assert again["run"] == {"step": 7}
    assert again["FID"] == pytest.approx(result["FID"], rel=1e-9)


def test_adm_reference_npz_uses_its_statistics(weights, sets, tmp_path):
    rng = np.random.default_rng(3)
    given = {"mu": rng.random(2048), "sigma": np.eye(2048) * 0.01, "mu_s": rng.random(2023),
             "sigma_s": np.eye(2023) * 0.02}
    adm = tmp_path / "VIRTUAL_test.npz"
    np.savez(adm, arr_0=sets["ref"], **given)
    arrays, meta = S.reference_statistics(adm, weights, "cpu", 4)
    for key, value in given.items():
        np.testing.assert_array_equal(arrays[key], value)
    from_store, _ = S.reference_statistics(sets["root"] / "heldout", weights, "cpu", 4)
    np.testing.assert_array_equal(arrays["pool"], from_store["pool"])  # same images, same features
    assert meta["statistics"].startswith("precomputed")


def test_evaluate_with_logits_and_weight_mismatch(weights, weights_with_logits, sets, features, tmp_path):
    root = sets["root"]
    ref_path = tmp_path / "ref_logits.npz"
    S.write_reference(ref_path, *S.reference_statistics(root / "heldout", weights_with_logits, "cpu", 8))
    result = S.evaluate(root / "samples", ref_path, weights_with_logits,
                        S.EvaluateConfig(frechet="eigh"), "cpu")
    fc = torch.load(weights_with_logits, weights_only=True)["fc.weight"].numpy()
    logits = features["pool"] @ fc.T  # unbiased logits of the same convs
    assert result["IS"] == pytest.approx(oracle_inception_score(oracle_softmax(logits)), rel=1e-4)
    assert result["inception"]["has_logits"] and "IS_note" not in result
    with pytest.raises(SystemExit, match="rebuild the reference with the same weights"):
        S.evaluate(root / "samples", ref_path, weights, S.EvaluateConfig(), "cpu")


def test_collect_metrics_csv(tmp_path):
    paths = []
    for step, fid, isc in (("0000400", 10.5, None), ("0000200", 20.25, 3.5)):
        path = tmp_path / step / "sde50.json"
        write_json(path, {"FID": fid, "sFID": 1.0, "IS": isc, "Precision": 0.5, "Recall": 0.25, "run": {}})
        paths.append(str(path))
    out = tmp_path / "run.csv"
    assert S.collect_main(["--metrics", *paths, "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["Steps", "FID", "sFID", "IS", "Precision", "Recall"]
    assert rows[1] == ["200", "20.25", "1.0", "3.5", "0.5", "0.25"]
    assert rows[2] == ["400", "10.5", "1.0", "", "0.5", "0.25"]
    with pytest.raises(SystemExit, match="twice"):
        S.collect_csv([paths[0], paths[0]])
