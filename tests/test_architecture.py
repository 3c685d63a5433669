"""docs/architecture.md against the code: every stage and rule is on the page, and its three recipes (an encoder,
a method, a config key) work when followed step by step in a copy of the repository."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from workflow_copy import REPO, copy_repo  # noqa: E402

PAGE = REPO / "docs" / "architecture.md"


def _ownership_rows() -> list[tuple[str, str]]:
    """(stage column, module column) of the page's ownership table."""
    rows = []
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].endswith(".smk`"):
            rows.append((cells[1], cells[2]))
    return rows


def test_the_page_names_every_stage_with_the_module_that_holds_it():
    from repabench.cli import STAGES

    rows = _ownership_rows()
    for stage, (target, _) in STAGES.items():
        owners = [module for stages, module in rows if f"`{stage}`" in stages]
        assert owners, f"stage {stage} is not in the ownership table of {PAGE.name}"
        concept = ".".join(target.split(":")[0].split(".")[:2])  # repabench.<module or package>
        assert f"`{concept}`" in owners[0], (stage, owners[0], concept)


def test_the_page_names_every_rule():
    text = PAGE.read_text()
    rules = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        rules |= set(re.findall(r"^\s*rule (\w+):", path.read_text(), flags=re.M))
    rules.discard("all")
    assert len(rules) > 15
    missing = sorted(rule for rule in rules if not re.search(rf"\b{rule}\b", text))
    assert not missing, f"rules missing from {PAGE.name}: {missing}"


def _dry_run_jobs(output: str) -> list[dict[str, str]]:
    """The jobs of `snakemake -n -p`: rule, inputs, outputs and shell command of each."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        out = re.search(r"^\s+output: (.*)$", block, flags=re.M)
        inputs = re.search(r"^\s+input: (.*)$", block, flags=re.M)
        shell = re.search(r"^Shell command: (.*)$", block, flags=re.M)
        jobs.append({"rule": rule, "input": inputs.group(1) if inputs else "", "output": out.group(1) if out else "",
                     "shell": shell.group(1) if shell else ""})
    return jobs


def _run(copy: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy))  # the copy's package, not an installed one
    result = subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result


NEW_WEIGHT = "architecture-test-lite0.pth"
NEW_ENCODER = "archtest-cnn-lite0"
NEW_METHOD = "irepa_kernel1"
NEW_KEY = "architecture_test_marker"


def test_adding_an_encoder_a_method_and_a_config_key_as_the_page_says(tmp_path):
    """The recipes of docs/architecture.md, in their order, in a copy: the new encoder (an existing family,
    EfficientNet-Lite0's packaged file under a new name) is fetched, built and extracted; the method is trained;
    the key reaches the stage's params. The new encoder must give exactly the registered lite0's tokens."""
    from repabench.weight_catalog import WEIGHTS

    copy = copy_repo(tmp_path / "repo")
    lite0 = WEIGHTS["efficientnet-lite0.pth"]

    # encoder, step 1: its weight file in the weight catalog
    with open(copy / "repabench" / "weight_catalog.py", "a") as catalog:
        catalog.write(f"\n_add(WeightFile({NEW_WEIGHT!r}, {lite0.source!r}, {lite0.sha256!r}, note='test'))\n")
    # encoder, step 2: its registry entry, naming the weight
    with open(copy / "repabench" / "encoders" / "catalog.py", "a") as catalog:
        catalog.write(f"\n_add(EncoderEntry({NEW_ENCODER!r}, 'effnet', 112, EFFNET_PREP, (_weight({NEW_WEIGHT!r}),),"
                      " {'variant': 'lite0'}))\n")
    # config key, step 1: the schema with its default
    schema_path = copy / "workflow" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["properties"]["features"]["properties"][NEW_KEY] = {"type": "string", "default": "on the page"}
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    # encoder, step 5 and the method: entries of a config
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config["encoders"].append(NEW_ENCODER)
    config["methods"][NEW_METHOD] = dict(config["methods"]["irepa"], kernel=1, label="iREPA, 1x1 conv")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    listed = _run(copy, "-m", "repabench", "fetch_weights", "--list").stdout
    assert any(line.split("\t")[0] == NEW_WEIGHT for line in listed.splitlines())
    weights_dir = tmp_path / "weights"
    for name in (NEW_WEIGHT, "efficientnet-lite0.pth"):
        _run(copy, "-m", "repabench", "fetch_weights", "--name", name, "--out-dir", str(weights_dir))
    script = ("import json, sys, numpy as np, torch\n"
              "from repabench.encoders import build_encoder\n"
              "images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8))\n"
              f"new, old = (build_encoder(n, sys.argv[1])(images, grid=4) for n in ({NEW_ENCODER!r}, "
              "'effnetlite-cnn-lite0'))\n"
              "print(json.dumps([list(new.shape), bool(torch.isfinite(new).all()), bool(torch.equal(new, old))]))\n")
    shape, finite, same = json.loads(_run(copy, "-c", script, str(weights_dir)).stdout.splitlines()[-1])
    assert shape == [2, 16, 112] and finite and same

    dry = _run(copy, "-m", "snakemake", "-n", "-p", "--nolock", "--configfile", str(config_path)).stdout
    jobs = _dry_run_jobs(dry)
    fetch = [j for j in jobs if j["rule"] == "fetch_weights" and j["output"].endswith(f"/{NEW_WEIGHT}")]
    assert len(fetch) == 1, "the new weight is fetched by the fetch_weights rule"
    extract = [j for j in jobs if j["rule"] == "extract_features" and f"/{NEW_ENCODER}/" in j["output"] + "/"]
    assert len(extract) == 2 and all(j["input"].endswith(f"resources/weights/{NEW_WEIGHT}") for j in extract)
    params = json.loads(re.search(r"--params '([^']*)'", extract[0]["shell"]).group(1))
    assert params["features"][NEW_KEY] == "on the page"
    for rule in ("spatial_metrics", "linear_probe"):
        assert any(j["rule"] == rule and NEW_ENCODER in j["output"] for j in jobs), rule
    trained = {(m.group(1), m.group(2)) for j in jobs if j["rule"] == "train"
               for m in [re.search(r"results/train/[^/]+/([^/]+)/([^/]+)/", j["output"])] if m}
    assert {(e, k) for e in config["encoders"] for k in config["methods"]} == trained
    new_method = next(j for j in jobs if j["rule"] == "train" and f"/{NEW_ENCODER}/{NEW_METHOD}/" in j["output"])
    method = json.loads(re.search(r"--params '([^']*)'", new_method["shell"]).group(1))["method"]
    assert method["kernel"] == 1 and method["projector"] == "conv" and method["spatial_norm"] == "zscore"


@pytest.mark.parametrize("recipe", ["## Adding an encoder", "## Adding a method", "## Adding a config key"])
def test_each_recipe_names_files_that_exist(recipe):
    text = PAGE.read_text()
    section = text[text.index(recipe):]
    section = section[:section.find("\n## ", 3) if "\n## " in section[3:] else len(section)]
    paths = set(re.findall(r"`((?:repabench|workflow|tests|config)/[\w./*-]+)`", section))
    assert paths, recipe
    for path in paths:
        assert list(REPO.glob(path)), f"{recipe}: {path} does not exist"
