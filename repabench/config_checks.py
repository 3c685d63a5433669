"""Config checks that need the size of the data, run while the workflow is parsed (before any job).

The training set size is known from the config (the demo set's `data.demo.n_train`) or, for an image folder, from
the manifest of an already prepared store; when neither is there yet the train stage checks it itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

TRAIN_STORE = Path("results/data/train")


def train_set_size(config: Mapping[str, Any], train_store: Path = TRAIN_STORE) -> tuple[int, str] | None:
    """(number of training images, where that number comes from), or None when it is not known yet."""
    data = config["data"]
    if data["source"] == "demo":
        return int(data["demo"]["n_train"]), "data.demo.n_train"
    manifest = Path(train_store) / "manifest.json"
    if manifest.is_file():
        try:
            count = json.loads(manifest.read_text()).get("count")
        except ValueError:
            return None
        if isinstance(count, int):
            return count, f"{train_store} (the prepared training images)"
    return None


def check_batch_fits(config: Mapping[str, Any], train_store: Path = TRAIN_STORE) -> None:
    """train.global_batch must not exceed the training images (one batch per step, drop-last epochs)."""
    if config.get("published", {}).get("enabled"):
        return  # the checkpoints are imported, nothing is trained
    size = train_set_size(config, train_store)
    batch = int(config["train"]["global_batch"])
    if size is not None and batch > size[0]:
        raise ValueError(f"train.global_batch = {batch} exceeds the {size[0]} training images ({size[1]}); "
                         "lower train.global_batch or use more training images")
