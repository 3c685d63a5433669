"""Weight files: resolved once into `resources/weights/` by `fetch_weights`, verified by SHA-256.

Library code never downloads; it takes a path and calls `verified_path()`. What can be fetched, from where, with
which checksum, is `repabench.weight_catalog.WEIGHTS` (its docstring lists the kinds of source).

Each fetched item gets a sidecar ``<name>.sha256.json`` with its checksum and source. A missing or
mismatching file is an error that names the file and the command that fetches it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from repabench.atomic import atomic_path, read_json, write_json
from repabench.provenance import sha256_file
from repabench.stage import parse_stage, stage_parser
from repabench.weight_catalog import WEIGHTS, WeightFile

VERIFY_LIMIT_BYTES = 2 << 30  # larger files are checked by size + sidecar at load, fully at fetch


class WeightError(RuntimeError):
    pass


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def _package_file(source: str) -> Path:
    package, _, rel = source.partition("/")
    module = importlib.util.find_spec(package)  # find_spec does not import the package
    if module is None or not module.submodule_search_locations:
        raise WeightError(f"python package {package!r} is not installed (needed for {source}); run `make install`")
    return Path(list(module.submodule_search_locations)[0]) / rel


def _tree_sha256(directory: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(file.relative_to(directory)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def _checksum(path: Path) -> str:
    return _tree_sha256(path) if path.is_dir() else sha256_file(path)


def _expect(weight: WeightFile, actual: str, path: Path) -> None:
    prefix = weight.extra.get("sha256_prefix")
    if weight.sha256 and actual != weight.sha256:
        raise WeightError(f"{path}: SHA-256 {actual} does not match the expected {weight.sha256} for {weight.name}; "
                          f"delete it and rerun fetch_weights (source {weight.source})")
    if prefix and not actual.startswith(prefix):
        raise WeightError(f"{path}: SHA-256 {actual} does not start with {prefix} as expected for {weight.name}")


def _expect_md5(weight: WeightFile, fetched: Path, dest: Path) -> None:
    """Sources that publish only an MD5 (`extra["md5"]`) are checked against it once, at fetch."""
    if not weight.extra.get("md5"):
        return
    import hashlib

    digest = hashlib.md5()
    with open(fetched, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != weight.extra["md5"]:
        raise WeightError(f"{dest}: MD5 {digest.hexdigest()} does not match the published {weight.extra['md5']} for "
                          f"{weight.name}; the download is corrupt or the release changed (source {weight.source})")


def fetch(weight: WeightFile, dest_dir: str | os.PathLike) -> Path:
    """Copy or download `weight` into `dest_dir/<name>`, verify it and write its sidecar."""
    dest = Path(dest_dir) / weight.name
    kind, _, rest = weight.source.partition(":")
    directory = kind == "hfrepo"
    with atomic_path(dest, directory=directory) as tmp:
        if kind == "package":
            shutil.copyfile(_package_file(rest), tmp)
        elif kind == "url":
            import torch.hub

            torch.hub.download_url_to_file(rest, str(tmp), progress=True)
        elif kind in {"hf", "hfrepo"}:
            from huggingface_hub import hf_hub_download, snapshot_download

            repo, _, tail = rest.partition("@")
            revision, _, filename = tail.partition("/")
            if directory:
                snapshot_download(repo, revision=revision or None, local_dir=str(tmp))
                shutil.rmtree(tmp / ".cache", ignore_errors=True)
            else:
                shutil.copyfile(hf_hub_download(repo, filename, revision=revision or None), tmp)
        else:
            raise WeightError(f"unknown weight source {weight.source!r} for {weight.name}")
        actual = _checksum(tmp)
        _expect(weight, actual, dest)
        _expect_md5(weight, tmp, dest)
    write_json(sidecar(dest), {"name": weight.name, "source": weight.source, "sha256": actual,
                               "bytes": _size(dest), "note": weight.note})
    return dest


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def fetch_hint(name: str, dest: Path) -> str:
    weight = WEIGHTS.get(name)
    how = f" ({weight.note})" if weight and weight.note else ""
    return (f"run `snakemake {dest}` or `python -m repabench fetch_weights --name {name} --out-dir {dest.parent}`"
            f"{how}")


def verified_path(path: str | os.PathLike, name: str | None = None, hint: str | None = None) -> Path:
    """Return `path` if it exists and matches its recorded checksum, else raise a WeightError.

    `hint` replaces the default advice (the fetch_weights command) in the error messages."""
    path = Path(path)
    name = name or path.name
    if not path.exists():
        raise WeightError(f"weight file {path} is missing; {hint or fetch_hint(name, path)}")
    record_file = sidecar(path)
    weight = WEIGHTS.get(name)
    expected = weight.sha256 if weight else None
    record = read_json(record_file) if record_file.exists() else None
    if record is None and expected is None:
        raise WeightError(f"{path} has no checksum record ({record_file.name}); {hint or fetch_hint(name, path)}")
    expected = expected or record["sha256"]
    size = _size(path)
    if record is not None and record.get("bytes") not in (None, size):
        raise WeightError(f"{path} has {size} bytes, {record['bytes']} were fetched (truncated or replaced); "
                          f"delete it and {hint or fetch_hint(name, path)}")
    if size <= VERIFY_LIMIT_BYTES or record is None:
        actual = _checksum(path)
        if actual != expected:
            raise WeightError(f"{path}: SHA-256 {actual} does not match {expected} (corrupt or a different file); "
                              f"delete it and {hint or fetch_hint(name, path)}")
    return path


def fetch_main(argv: list[str]) -> int:
    parser = stage_parser("fetch_weights", "Resolve a registered weight file into a directory and verify it.")
    parser.add_argument("--name", required=True, help="registered weight name (see --list)")
    parser.add_argument("--out-dir", default="resources/weights")
    parser.add_argument("--list", action="store_true", help="list registered weights and exit")
    if "--list" in argv:
        for spec in sorted(WEIGHTS.values(), key=lambda s: s.name):
            print(f"{spec.name}\t{spec.source}\t{spec.sha256 or '(recorded on fetch)'}")
        return 0
    args, _, _, _ = parse_stage(parser, argv)
    if args.name not in WEIGHTS:
        raise SystemExit(f"unknown weight {args.name!r}; known: {', '.join(sorted(WEIGHTS))}")
    path = fetch(WEIGHTS[args.name], args.out_dir)
    print(path)
    return 0

