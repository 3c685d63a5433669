"""Importers of the authors' published files (repabench.upstream) and their fetching (repabench.published_files).

Every input is written here in the upstream layout by `.test/make_published_bundle.py`, whose docstring names the
source of each layout (End2End-Diffusion/iREPA commit 99ad4ac: ldm/train.py for checkpoints, ldm/models/sit.py for
the key names, metrics/spatial_metrics_comparison.py for features, masks and stats files, REPA's
preprocessing/dataset_tools.py for the per-image latents; docs/upstream-facts.md §2.7, §3.3-3.4, §7.1).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repabench.atomic import read_json
from repabench.sit import build_sit, load_generator
from repabench.store import Store
from repabench.upstream import (UpstreamError, convert_state_dict, import_checkpoint, import_features,
                                import_latent_stats, import_latents, import_probe, paper_numbers, read_masks,
                                upstream_kept)

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_published_bundle", REPO / ".test" / "make_published_bundle.py")
bundle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bundle)

STATS = {"mode": "published", "bias": [0.05] * 4, "scale": [0.9] * 4}
REPA = {"projector": "mlp", "spatial_norm": "none"}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return bundle.write_bundle(tmp_path_factory.mktemp("published"))


def _import(published, run, dst, **kw):
    """Import the bundle's checkpoint of run `run` (an encoder name); `kw` overrides what it is imported as."""
    args = dict(model="SiT-T/2", encoder=run, method_name="repa", latent_stats=STATS, method=REPA, step=4)
    args.update(kw)
    return import_checkpoint(published / bundle.checkpoint_path(run, 4), dst, **args)


# ---- checkpoints ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["dinov2-vit-b", bundle.COMPILED])
def test_checkpoint_imports_the_ema_weights_exactly(published, tmp_path, encoder):
    """Plain and compiled (`_orig_mod.` keys) upstream checkpoints give our generator with the same weights."""
    raw = torch.load(published / bundle.checkpoint_path(encoder, 4), weights_only=False)
    assert any(k.startswith("_orig_mod.") for k in raw["ema"]) == (encoder == bundle.COMPILED)
    meta = _import(published, encoder, tmp_path / "ckpt.pt")
    model, loaded = load_generator(tmp_path / "ckpt.pt")
    expected = bundle.random_sit_state(seed=bundle.ENCODERS.index(encoder) + 1)
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert loaded["run"] == {"model": "sit-t-2", "encoder": encoder, "method": "repa"} and loaded["step"] == 4
    assert loaded["upstream"]["args"]["enc_type"] == encoder and meta["upstream"]["sha256"]
    assert loaded["provenance"]["source"] == "published" and loaded["latent_stats"] == STATS


def test_key_conversion_strips_wrappers_and_drops_both_projector_layouts():
    state = {"module._orig_mod.x_embedder.proj.weight": 1, "_orig_mod.blocks.0.attn.qkv.bias": 2,
             "projectors.0.projection_layer.0.weight": 3, "_orig_mod.projectors.1.2.bias": 4, "pos_embed": 5}
    assert convert_state_dict(state) == {"x_embedder.weight": 1, "blocks.0.attn.qkv.bias": 2, "pos_embed": 5}
    with pytest.raises(UpstreamError, match="two upstream keys"):
        convert_state_dict({"_orig_mod.pos_embed": 1, "pos_embed": 2})


def test_checkpoint_errors_name_the_file_and_the_cause(published, tmp_path):
    src = published / bundle.checkpoint_path("dinov2-vit-b", 4)
    with pytest.raises(UpstreamError, match="missing"):
        import_checkpoint(tmp_path / "absent.pt", tmp_path / "o.pt", model="SiT-T/2", encoder="dinov2-vit-b",
                          method_name="repa", latent_stats=STATS)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(UpstreamError, match="truncated or corrupt") as err:
        import_checkpoint(truncated, tmp_path / "o.pt", model="SiT-T/2", encoder="dinov2-vit-b",
                          method_name="repa", latent_stats=STATS)
    assert str(truncated) in str(err.value)
    with pytest.raises(UpstreamError, match="trained with encoder 'dinov2-vit-b'.*imported for encoder 'pe-vit-g'"):
        _import(published, "dinov2-vit-b", tmp_path / "o.pt", encoder="pe-vit-g")
    with pytest.raises(UpstreamError, match="projector 'mlp'"):
        _import(published, "dinov2-vit-b", tmp_path / "o.pt", method={"projector": "conv", "spatial_norm": "zscore"})
    with pytest.raises(UpstreamError, match="holds step 4, expected 100000"):
        _import(published, "dinov2-vit-b", tmp_path / "o.pt", step=100000)
    with pytest.raises(UpstreamError, match="'SiT-T/2' checkpoint"):
        _import(published, "dinov2-vit-b", tmp_path / "o.pt", model="SiT-B/2")
    not_upstream = tmp_path / "ours.pt"
    torch.save({"ema": {}, "model": {}, "step": 1}, not_upstream)
    with pytest.raises(UpstreamError, match="needs 'ema' and 'args'"):
        import_checkpoint(not_upstream, tmp_path / "o.pt", model="SiT-T/2", encoder="x", method_name="repa",
                          latent_stats=STATS)
    assert not (tmp_path / "o.pt").exists()


def test_imported_checkpoint_samples_like_the_trainers_own(tmp_path, monkeypatch):
    """Our trainer's EMA weights, re-saved in the upstream layout (compiled keys, projectors, Namespace args)
    and imported, generate byte-identical images for the same seeds."""
    sys.path.insert(0, str(REPO / "tests"))
    import repabench.train as train
    from repabench.sample import sample_main
    from repabench.vae import PCAAutoencoder
    from test_train_support import CLASSES, METHOD_IREPA, make_data, stand_in_builder, train_argv

    monkeypatch.setattr(train, "build_target_encoder", stand_in_builder)
    threads = torch.get_num_threads()
    data = make_data(tmp_path / "data")
    assert train.train_main(train_argv(data, tmp_path / "run", tmp_path / "state", train={"steps": 4,
                                                                                          "checkpoint_steps": [4]})) == 0
    torch.set_num_threads(threads)
    ours = tmp_path / "run" / "checkpoints" / "0000004.pt"
    trained = torch.load(ours, weights_only=True)
    args = bundle.upstream_args("stand-in-enc", resolution=64, num_classes=CLASSES, encoder_depth=2,
                                projection_layer_type="conv", proj_kwargs_kernel_size=3, spnorm_method="zscore")
    upstream = tmp_path / "exps" / "run" / "checkpoints" / "0000004.pt"
    ema = bundle.to_upstream_keys(trained["ema"], z_dim=6, compiled=True)
    bundle.save_upstream_checkpoint(upstream, ema, args, 4)
    stats = read_json(data["stats"])
    imported = tmp_path / "imported.pt"
    import_checkpoint(upstream, imported, model="SiT-T/2", encoder="stand-in-enc", method_name="irepa",
                      latent_stats=stats, method=METHOD_IREPA, step=4)
    again = torch.load(imported, weights_only=True)
    assert sorted(again["ema"]) == sorted(trained["ema"])
    assert all(torch.equal(again["ema"][k], trained["ema"][k]) for k in trained["ema"])

    rng = np.random.default_rng(0)
    PCAAutoencoder.fit(rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), channels=4).save(tmp_path / "ae.pt",
                                                                                             meta={})
    params = json.dumps({"sampler": {"name": "sde4", "mode": "sde", "steps": 4},
                         "sample": {"n_samples": 6, "shard_size": 3, "batch_size": 3, "labels": "uniform",
                                    "precision": "fp32", "seed": 0}})
    digests = []
    for name, ckpt in (("ours", ours), ("imported", imported)):
        out = tmp_path / "samples" / name
        assert sample_main(["--checkpoint", str(ckpt), "--latent-stats", str(data["stats"]), "--autoencoder-kind",
                            "pca", "--autoencoder", str(tmp_path / "ae.pt"), "--out-dir", str(out), "--params",
                            params, "--device", "cpu", "--threads", "1"]) == 0
        torch.set_num_threads(threads)
        digests.append([(s["start"], s["sha256"], s["labels_sha256"]) for s in read_json(out / "manifest.json")["shards"]])
    assert digests[0] == digests[1] and len(digests[0]) == 2


# ---- latent statistics, latents --------------------------------------------------------------------------------


def test_latent_stats_keep_the_upstream_convention(published, tmp_path):
    stats = import_latent_stats(published / "pretrained_models/sdvae-ft-mse-f8d4-latents-stats.pt", tmp_path / "s.json")
    assert stats["bias"] == pytest.approx([0.05] * 4) and stats["scale"] == pytest.approx([0.9] * 4)
    bad = tmp_path / "bad.pt"
    torch.save({"scale": torch.ones(4)}, bad)
    with pytest.raises(UpstreamError, match="latents_scale and latents_bias"):
        import_latent_stats(bad, tmp_path / "s.json")


def test_latents_folder_becomes_a_latent_store(tmp_path):
    src = bundle.write_latent_folder(tmp_path / "vae-sd", n=5)
    store = Store(import_latents(src, tmp_path / "store"))
    files = sorted(src.rglob("img-mean-std-*.npy"))
    assert store["moments"].shape == (5, 8, 4, 4)
    for i, file in enumerate(files):
        np.testing.assert_array_equal(store["moments"][i], np.load(file))
    assert list(store["labels"]) == [0, 1, 2, 0, 1]
    files[-1].write_bytes(files[-1].read_bytes()[:40])
    with pytest.raises(UpstreamError, match="truncated"):
        import_latents(src, tmp_path / "store2")
    files[-1].unlink()
    with pytest.raises(UpstreamError, match="4 latent files but 5 labels"):
        import_latents(src, tmp_path / "store3")


# ---- features and masks --------------------------------------------------------------------------------------


def _upstream_filter_brute_force(mask_dir):
    """The upstream filter written out: resize each PNG to 256 (PIL default), a 16x16 block is foreground when any
    pixel > 0, keep images with >= 64 foreground and >= 64 background blocks."""
    kept = []
    for i, file in enumerate(sorted(Path(mask_dir).glob("*.png"))):
        pixels = np.asarray(Image.open(file).resize((256, 256))) > 0
        blocks = pixels.reshape(16, 16, 16, 16).any(axis=(1, 3))
        if blocks.sum() >= 64 and (~blocks).sum() >= 64:
            kept.append(i)
    return kept


def test_masks_are_read_and_filtered_as_upstream_does(published):
    mask_dir = published / "spatial-metrics-data/masks"
    masks, names = read_masks(mask_dir)
    assert names == sorted(p.name for p in mask_dir.glob("*.png")) and masks.shape == (bundle.N_MASKS, 256, 256)
    kept = list(upstream_kept(masks))
    assert kept == _upstream_filter_brute_force(mask_dir)
    assert 0 < len(kept) < bundle.N_MASKS  # the bundle has images on both sides of the filter


@pytest.mark.parametrize("encoder", ["dinov2-vit-b", bundle.FEATURES_FILTERED])
def test_features_and_masks_stay_paired(published, tmp_path, encoder):
    src = published / f"spatial-metrics-data/features/{encoder}.pt"
    mask_dir = published / "spatial-metrics-data/masks"
    meta = import_features(src, mask_dir, tmp_path / "feat", encoder=encoder)
    store = Store(tmp_path / "feat")
    tokens = torch.load(src, weights_only=True).numpy()
    np.testing.assert_array_equal(store["tokens"], tokens)  # every row, none truncated
    np.testing.assert_allclose(store["pooled"], tokens.astype(np.float32).mean(1), rtol=1e-6)
    masks, _ = read_masks(mask_dir)
    if encoder == bundle.FEATURES_FILTERED:  # rows are the kept images: their masks, in order
        np.testing.assert_array_equal(store["masks"], masks[upstream_kept(masks)])
        assert "pass upstream's filter" in meta["upstream"]["alignment"]
    else:  # one row per mask: all masks; the spatial stage filters rows and masks with the same indices
        np.testing.assert_array_equal(store["masks"], masks)
    assert store.meta("grid") == 16


def test_feature_errors(published, tmp_path):
    mask_dir = published / "spatial-metrics-data/masks"
    src = published / "spatial-metrics-data/features/dinov2-vit-b.pt"
    with pytest.raises(UpstreamError, match="missing"):
        import_features(tmp_path / "dinov2-vit-b.pt", mask_dir, tmp_path / "f", encoder="dinov2-vit-b")
    short = tmp_path / "dinov2-vit-b.pt"
    torch.save(torch.load(src, weights_only=True)[:5], short)
    with pytest.raises(UpstreamError, match="5 rows.*10 masks.*cannot be paired"):
        import_features(short, mask_dir, tmp_path / "f", encoder="dinov2-vit-b")
    short.write_bytes(src.read_bytes()[:1000])
    with pytest.raises(UpstreamError, match="truncated or corrupt"):
        import_features(short, mask_dir, tmp_path / "f", encoder="dinov2-vit-b")
    wrong = tmp_path / "pe-vit-g.pt"
    wrong.write_bytes(src.read_bytes())
    with pytest.raises(UpstreamError, match="768-dim tokens but pe-vit-g has 1536"):
        import_features(wrong, mask_dir, tmp_path / "f", encoder="pe-vit-g")
    with pytest.raises(UpstreamError, match="named for encoder"):
        import_features(src, mask_dir, tmp_path / "f", encoder="dinov3-vit-b16")
    assert not (tmp_path / "f").exists()


def test_spatial_stage_runs_on_imported_features(published, tmp_path):
    from repabench.spatial import spatial_metrics_main

    import_features(published / "spatial-metrics-data/features/dinov2-vit-b.pt",
                    published / "spatial-metrics-data/masks", tmp_path / "feat", encoder="dinov2-vit-b")
    assert spatial_metrics_main(["--features", str(tmp_path / "feat"), "--encoder", "dinov2-vit-b", "--out",
                                 str(tmp_path / "s.json"), "--device", "cpu", "--params", '{"spatial": {"bootstrap": 0}}']) == 0
    result = read_json(tmp_path / "s.json")
    kept = _upstream_filter_brute_force(published / "spatial-metrics-data/masks")
    assert result["n_total"] == bundle.N_MASKS and result["n_images"] == len(kept) and result["masked"]


# ---- the authors' numbers --------------------------------------------------------------------------------------


def test_probe_and_fid_files_give_the_authors_numbers(published, tmp_path):
    lp = published / "spatial-metrics-data/stats/lp/dinov3-vit-b16-none-mean/metrics.json"
    assert import_probe(lp, tmp_path / "p.json", "dinov3-vit-b16")["best_val_acc"] == 67.5
    numbers = paper_numbers({"dinov3-vit-b16": published / bundle.fid_file("dinov3-vit-b16")},
                            {"dinov3-vit-b16": lp}, step=4)
    assert numbers["encoders"]["dinov3-vit-b16"]["FID"] == pytest.approx(306.0)
    assert numbers["encoders"]["dinov3-vit-b16"]["LP"] == 67.5
    with pytest.raises(UpstreamError, match="0 rows with Steps == 7"):
        paper_numbers({"dinov3-vit-b16": published / bundle.fid_file("dinov3-vit-b16")}, {}, step=7)


# ---- fetching ------------------------------------------------------------------------------------------------


def test_fetch_records_the_checksum_once_and_refuses_a_changed_file(published, tmp_path):
    from repabench.published_files import fetch_published, verified_published

    path = bundle.checkpoint_path("dinov2-vit-b", 4)
    record = fetch_published(path, tmp_path / "root", mirror=published)
    local = tmp_path / "root" / path
    assert record["sha256"] == __import__("hashlib").sha256(local.read_bytes()).hexdigest()
    assert read_json(local.with_name(local.name + ".sha256.json"))["sha256"] == record["sha256"]
    assert verified_published(local) == local
    folder = fetch_published("spatial-metrics-data/masks", tmp_path / "root", mirror=published, folder=True)
    assert len(list((tmp_path / "root/spatial-metrics-data/masks").glob("*.png"))) == bundle.N_MASKS
    assert folder["bytes"] > 0
    local.unlink()
    local.write_bytes((published / path).read_bytes()[:-10])  # truncated
    with pytest.raises(UpstreamError, match="truncated or replaced"):
        verified_published(local)
    with pytest.raises(UpstreamError, match="missing"):
        verified_published(tmp_path / "root" / "nothing.pt")
    changed = tmp_path / "mirror2"
    (changed / path).parent.mkdir(parents=True)
    (changed / path).write_bytes(b"another file")
    with pytest.raises(UpstreamError, match="recorded at the first fetch"):
        fetch_published(path, tmp_path / "root", mirror=changed)
    with pytest.raises(UpstreamError, match="pins"):
        fetch_published(path, tmp_path / "root2", mirror=published, sha256="0" * 64)


def test_offline_fetch_names_the_file_and_the_hf_command(tmp_path, monkeypatch):
    import huggingface_hub

    from repabench.published_files import fetch_published

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("connection refused")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    path = "exps_irepa_400k/x/checkpoints/0100000.pt"
    with pytest.raises(UpstreamError) as err:
        fetch_published(path, tmp_path, revision="abc123")
    message = str(err.value)
    assert path in message and f"hf download REPA-E/iREPA-collections {path} --revision abc123 --local-dir" in message


def test_checkpoint_trained_with_qk_norm_imports_with_its_q_k_norms(tmp_path):
    """--qk-norm checkpoints carry blocks.*.attn.{q,k}_norm.{weight,bias} (timm Attention); they load strictly."""
    torch.manual_seed(0)
    net = build_sit(bundle.MODEL, input_size=bundle.RESOLUTION // 8, num_classes=bundle.NUM_CLASSES, qk_norm=True)
    state = {k: v + 0.05 * torch.randn(v.shape) if k != "pos_embed" else v for k, v in net.state_dict().items()}
    src = tmp_path / "exps" / "run" / "checkpoints" / "0000004.pt"
    bundle.save_upstream_checkpoint(src, bundle.to_upstream_keys(state, z_dim=8),
                                    bundle.upstream_args("dinov2-vit-b", qk_norm=True), steps=4)
    import_checkpoint(src, tmp_path / "ckpt.pt", model="SiT-T/2", encoder="dinov2-vit-b", method_name="repa",
                      latent_stats=STATS, method=REPA, step=4)
    model, meta = load_generator(tmp_path / "ckpt.pt")
    assert meta["model"]["kwargs"]["qk_norm"] is True
    loaded = model.state_dict()
    assert torch.equal(loaded["blocks.1.attn.k_norm.bias"], state["blocks.1.attn.k_norm.bias"])
    assert sorted(loaded) == sorted(state)
