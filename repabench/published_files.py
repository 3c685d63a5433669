"""The authors' published files (Hugging Face `REPA-E/iREPA-collections`), resolved into `resources/published/`.

`fetch_published` puts one file or folder of the repository at `<root>/<path in the repository>`, the same place
`hf download <repo> <path> --revision <rev> --local-dir <root>` puts it, so a file downloaded by hand is found
where the workflow expects it. The source is the Hub at a pinned revision, or a local mirror of the repository
layout (a machine without network, a test bundle). Downloads resume: huggingface_hub keeps the partial file under
`<root>/.cache/huggingface/download/` and continues it on the next call.

The SHA-256 of each file (of each folder: over its files, as `weights` does for snapshots) is recorded at the
first fetch in the sidecar `<file>.sha256.json` (weights.py's convention) and checked on every later fetch and by
every importer (`verified_published`). A `published.sha256` entry in the config pins it in advance. The rule's
declared output is a small receipt under results/, so Snakemake never deletes a 20 GB download.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from repabench.atomic import atomic_path, read_json, write_json
from repabench.stage import parse_stage, stage_parser
from repabench.upstream import UpstreamError
from repabench.weights import WeightError, _checksum, _size, sidecar, verified_path

log = logging.getLogger("repabench.published_files")

REPO = "REPA-E/iREPA-collections"


def hf_command(repo: str, revision: str, path: str, root: str | os.PathLike, folder: bool = False) -> str:
    what = f'--include "{path}/*"' if folder else path
    return f"hf download {repo} {what} --revision {revision} --local-dir {root}"


def _copy_from_mirror(mirror: Path, path: str, dest: Path, folder: bool) -> None:
    source = mirror / path
    if not source.exists():
        raise UpstreamError(f"{source} is missing from the local mirror published.mirror = {mirror}")
    if source.resolve() == dest.resolve():
        return
    with atomic_path(dest, directory=folder) as tmp:
        if folder:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        else:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)


def _download(repo: str, revision: str, path: str, root: Path, folder: bool) -> None:
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError as exc:
        raise UpstreamError(f"huggingface_hub is not installed ({exc}); install it or download by hand: "
                            f"{hf_command(repo, revision, path, root, folder)}") from None
    try:
        if folder:
            snapshot_download(repo, revision=revision, allow_patterns=[f"{path}/*"], local_dir=str(root))
        else:
            hf_hub_download(repo, path, revision=revision, local_dir=str(root))
    except Exception as exc:  # offline, 404, auth, disk: the message names the file and the manual command
        raise UpstreamError(
            f"cannot download {path} from {repo}@{revision} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})."
            f" On a machine without network run elsewhere `{hf_command(repo, revision, path, root, folder)}` "
            f"and copy {root / path} here (or set published.mirror to a local copy of the repository)") from None


def fetch_published(path: str, root: str | os.PathLike, *, repo: str = REPO, revision: str = "main",
                    mirror: str | os.PathLike | None = None, folder: bool = False,
                    sha256: str | None = None) -> dict[str, Any]:
    """Resolve `path` of the repository into `root/path`, verify it, record its checksum; returns the record."""
    root = Path(root)
    dest = root / path
    if mirror:
        _copy_from_mirror(Path(mirror), path, dest, folder)
    elif not (dest.exists() and sidecar(dest).exists()):
        _download(repo, revision, path, root, folder)
    if not dest.exists() or (folder and not dest.is_dir()):
        raise UpstreamError(f"{dest} is not there after the fetch; {hf_command(repo, revision, path, root, folder)}")
    actual = _checksum(dest)
    record_file = sidecar(dest)
    recorded = read_json(record_file).get("sha256") if record_file.exists() else None
    for expected, what in ((sha256, "published.sha256 pins"), (recorded, f"{record_file.name} recorded at the first fetch")):
        if expected and actual != expected:
            raise UpstreamError(f"{dest}: SHA-256 {actual} but {what} {expected}: the file changed or is corrupt. "
                                f"Delete it and fetch again ({hf_command(repo, revision, path, root, folder)})")
    record = {"name": path, "source": f"hf:{repo}@{revision}/{path}" if not mirror else f"mirror:{mirror}/{path}",
              "repo": repo, "revision": revision, "sha256": actual, "bytes": _size(dest),
              "note": "published artifact of the iREPA study"}
    if recorded is None:
        write_json(record_file, record)
        log.info("recorded SHA-256 %s of %s", actual, dest)
    return record


def verified_published(path: str | os.PathLike) -> Path:
    """`path` if it matches the checksum recorded when it was fetched (importers call this first)."""
    path = Path(path)
    hint = f"run `python -m repabench fetch_published --path <path in {REPO}> --root <root>` (rule fetch_published)"
    try:
        return verified_path(path, hint=hint)
    except WeightError as exc:
        raise UpstreamError(str(exc)) from None


def fetch_published_main(argv: list[str]) -> int:
    parser = stage_parser("fetch_published", f"resolve a published file of {REPO} into resources/published/")
    parser.add_argument("--path", required=True, help="path inside the repository, e.g. exps_irepa_400k/.../0100000.pt")
    parser.add_argument("--root", default="resources/published", help="local root (the hf --local-dir)")
    parser.add_argument("--repo", default=REPO)
    parser.add_argument("--revision", default="main", help="pinned revision (a commit hash)")
    parser.add_argument("--mirror", default=None, help="a local copy of the repository layout to take the file from")
    parser.add_argument("--folder", action="store_true", help="the path is a folder (all files directly inside)")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 (else recorded at the first fetch)")
    parser.add_argument("--receipt", default=None, help="JSON written when done (the rule's declared output)")
    args, _, _, _ = parse_stage(parser, argv)
    try:
        record = fetch_published(args.path, args.root, repo=args.repo, revision=args.revision, mirror=args.mirror,
                                 folder=args.folder, sha256=args.sha256)
    except UpstreamError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.receipt:
        write_json(args.receipt, {**record, "local_path": str(Path(args.root) / args.path)})
    print(Path(args.root) / args.path)
    return 0
