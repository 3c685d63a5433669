import numpy as np
import pytest

from repabench.atomic import atomic_path, write_json
from repabench.store import Store, StoreError, StoreWriter, write_store


def test_round_trip_and_manifest(tmp_path):
    arrays = {"x": np.arange(24, dtype=np.float32).reshape(4, 2, 3), "labels": np.arange(4)}
    write_store(tmp_path / "s", arrays, {"note": "hi"})
    store = Store(tmp_path / "s", verify=True)
    assert store.count == 4 and store.meta("note") == "hi"
    np.testing.assert_array_equal(store["x"], arrays["x"])
    assert store.manifest["arrays"]["x"]["shape"] == [4, 2, 3]


def test_failed_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with StoreWriter(tmp_path / "s", {"x": ((3,), np.float32)}) as writer:
            writer["x"][:] = 1
            raise RuntimeError("killed mid-way")
    assert not (tmp_path / "s").exists()
    assert not list(tmp_path.iterdir())


def test_truncated_array_is_caught_on_open(tmp_path):
    write_store(tmp_path / "s", {"x": np.ones((100, 10), np.float32)})
    file = tmp_path / "s" / "x.npy"
    file.write_bytes(file.read_bytes()[:-40])
    with pytest.raises(StoreError, match="truncated"):
        Store(tmp_path / "s")


def test_corrupt_array_is_caught_by_verify(tmp_path):
    write_store(tmp_path / "s", {"x": np.ones((100, 10), np.float32)})
    file = tmp_path / "s" / "x.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    Store(tmp_path / "s")  # same size: only the checksum can tell
    with pytest.raises(StoreError, match="SHA-256"):
        Store(tmp_path / "s", verify=True)


def test_incomplete_store_has_a_clear_error(tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(StoreError, match="not a complete store"):
        Store(tmp_path / "s")


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "r.json"
    write_json(target, {"v": 1})
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
