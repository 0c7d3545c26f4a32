# Everything runs from the repo-local virtual environments; `make install`
# (pulled in by `test` and `export-all`) creates them on a fresh machine.
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COMPAT_VENV := .venv-compat
COMPAT_PY := $(COMPAT_VENV)/bin/python
STAMP := $(VENV)/.installed
COMPAT_STAMP := $(COMPAT_VENV)/.installed

.PHONY: install compat-env test test-fast export-all docs bench publish publish-local serve clean

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt setup.cfg pyproject.toml
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

compat-env: $(COMPAT_STAMP)

$(COMPAT_STAMP): requirements-compat.txt constraints-compat.txt
	$(PYTHON_BOOT) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install --quiet --upgrade pip
	$(COMPAT_PY) -m pip install --quiet -r requirements-compat.txt -c constraints-compat.txt
	touch $@

# The full suite, including the `compat` tests that run the real hub.Module
# in the second environment.
test: install compat-env
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not compat and not slow" tests

# Exports every published version (skipping what is up to date) and its card.
EXPORT_DIR ?= exports
EXPORT_FLAGS ?=
export-all: install
	$(PY) -m exporters.export_all --export_dir=$(EXPORT_DIR) $(EXPORT_FLAGS)

# Publishes the export tree (archives, cards, manifests) to PUBLISH_DEST, a
# folder or a gs:// URL; CI runs `make publish PUBLISH_DEST=gs://...`.
# publish-local is the same into published/, which `make serve` serves.
PUBLISH_DEST ?= published
PUBLISH_FLAGS ?=
publish: export-all
	$(PY) -m exporters.publish --export_dir=$(EXPORT_DIR) --dest=$(PUBLISH_DEST) $(PUBLISH_FLAGS)

publish-local: PUBLISH_DEST = published
publish-local: publish

SERVE_PORT ?= 8000
serve: install
	$(PY) -m exporters.serve --root=published --port=$(SERVE_PORT)

docs: install
	$(PY) -m exporters.docs --output_dir=docs

# Measures on this machine and writes bench_results/bench.{json,md,png}. The
# CI-sized run (about 15-20 minutes on 2 cores) is
#   make bench BENCH_FLAGS=--models=nasnet_mobile
# without flags every published model is measured (hours on such a machine).
BENCH_FLAGS ?=
bench: install
	$(PY) -m bench $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build *.egg-info
