"""The conda environment carries exactly the pins of the pip requirements."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def pins(path):
    return {line.strip() for line in (REPO / path).read_text().splitlines() if line.strip() and not line.startswith("#")}


def test_conda_env_matches_requirements():
    env = yaml.safe_load((REPO / "envs/repabench.yaml").read_text())
    pip_block = next(item for item in env["dependencies"] if isinstance(item, dict))["pip"]
    assert set(pip_block) == pins("requirements/base.txt")
    post = (REPO / "envs/repabench.post-deploy.sh").read_text()
    assert all(pin in post for pin in pins("requirements/offline-assets.txt"))


def test_every_requirement_is_pinned():
    loose = {p for p in pins("requirements/base.txt") | pins("requirements/offline-assets.txt") if "==" not in p}
    assert not loose, f"unpinned: {loose}"
