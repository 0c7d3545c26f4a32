# Everything runs from the repo-local virtual environments; `make install`
# (pulled in by `test` and `export-all`) creates them on a fresh machine.
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COMPAT_VENV := .venv-compat
COMPAT_PY := $(COMPAT_VENV)/bin/python
STAMP := $(VENV)/.installed
COMPAT_STAMP := $(COMPAT_VENV)/.installed
TFJS_VENV := .venv-tfjs
TFJS_PY := $(TFJS_VENV)/bin/python
TFJS_STAMP := $(TFJS_VENV)/.installed
METADATA_VENV := .venv-metadata
METADATA_PY := $(METADATA_VENV)/bin/python
METADATA_STAMP := $(METADATA_VENV)/.installed
TFJS_RUNTIME := exporters/tfjs_runtime
TFJS_RUNTIME_STAMP := $(TFJS_RUNTIME)/node_modules/.installed

.PHONY: install compat-env tfjs-env metadata-env metadata-libusb tfjs-runtime test test-fast export-all docs bench publish publish-local serve clean

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

# The TF.js converter (tensorflowjs) in its own environment: see
# requirements-tfjs.txt and exporters/formats/tfjs.py for why.
tfjs-env: $(TFJS_STAMP)

$(TFJS_STAMP): requirements-tfjs.txt requirements-tfjs-nodeps.txt constraints-tfjs.txt
	$(PYTHON_BOOT) -m venv $(TFJS_VENV)
	$(TFJS_PY) -m pip install --quiet --upgrade pip
	$(TFJS_PY) -m pip install --quiet -r requirements-tfjs.txt -c constraints-tfjs.txt
	$(TFJS_PY) -m pip install --quiet --no-deps -r requirements-tfjs-nodeps.txt -c constraints-tfjs.txt
	touch $@

# The TFLite metadata writer (tflite-support) in its own environment: see
# requirements-metadata.txt. Its native module needs Debian's libusb-1.0-0,
# installed here when missing (as root, or through sudo).
metadata-env: metadata-libusb $(METADATA_STAMP)

metadata-libusb:
	@ldconfig -p | grep -q 'libusb-1.0.so.0 ' || { \
	  echo "installing Debian's libusb-1.0-0 (the TFLite metadata writer links it)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q libusb-1.0-0 >/dev/null; }; }

$(METADATA_STAMP): requirements-metadata.txt requirements-metadata-nodeps.txt constraints-metadata.txt
	$(PYTHON_BOOT) -m venv $(METADATA_VENV)
	$(METADATA_PY) -m pip install --quiet --upgrade pip
	$(METADATA_PY) -m pip install --quiet -r requirements-metadata.txt -c constraints-metadata.txt
	$(METADATA_PY) -m pip install --quiet --no-deps -r requirements-metadata-nodeps.txt -c constraints-metadata.txt
	touch $@

# The real TF.js runtime (Node.js; the WebAssembly backend, its binaries inside
# the npm package, and the pure-JS CPU backend) that export-all verifies each
# TF.js deployment in and the TF.js tests load them with.
tfjs-runtime: $(TFJS_RUNTIME_STAMP)

$(TFJS_RUNTIME_STAMP): $(TFJS_RUNTIME)/package.json $(TFJS_RUNTIME)/package-lock.json
	npm ci --prefix $(TFJS_RUNTIME) --no-audit --no-fund --ignore-scripts
	touch $@

# The full suite, including the `compat` tests that run the real hub.Module
# in the second environment.
test: install compat-env tfjs-env metadata-env tfjs-runtime
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not compat and not slow and not tfjs" tests

# Exports every published version (skipping what is up to date) and its card,
# into EXPORT_DIR (docs/ is `make docs`). MIRROR is where missing checkpoint
# archives are fetched from (a folder or URL; default: $CHECKPOINT_MIRROR, else
# the publisher); EXPORT_FLAGS takes any other flag, e.g.
#   make export-all MIRROR=/srv/ckpt-archives EXPORT_FLAGS="--models=nasnet_mobile --jobs=2"
# It also converts the TF.js deployments (registry [tfjs]) in .venv-tfjs and
# verifies each in the TF.js runtime, building both first (EXPORT_FLAGS=--notfjs
# leaves them out); without npm the runtime is not installed and the
# deployments are converted but not verified (export-all says so).
EXPORT_DIR ?= exports
EXPORT_FLAGS ?=
MIRROR ?=
export-all: install tfjs-env metadata-env $(if $(shell command -v npm),tfjs-runtime)
	@$(PY) -m exporters.export_all --export_dir=$(EXPORT_DIR) $(if $(MIRROR),--mirror=$(MIRROR)) $(EXPORT_FLAGS)

# Publishes the export tree (archives, cards, manifests) to PUBLISH_DEST, a
# folder or a gs:// URL; CI runs `make publish PUBLISH_DEST=gs://...`.
# It runs export-all first (one line when everything is up to date; its
# MIRROR and EXPORT_FLAGS apply); PUBLISH_FLAGS takes publish's flags, e.g.
# --force. publish-local is the same into published/, which `make serve` serves.
PUBLISH_DEST ?= published
PUBLISH_FLAGS ?=
publish: export-all
	@$(PY) -m exporters.publish --export_dir=$(EXPORT_DIR) --dest=$(PUBLISH_DEST) $(PUBLISH_FLAGS)

publish-local: PUBLISH_DEST = published
publish-local: publish

SERVE_PORT ?= 8000
serve: install
	$(PY) -m exporters.serve --root=published --port=$(SERVE_PORT)

# docs/ holds the cards in the registry's default card schema ([cards]
# default_schema); another schema goes elsewhere, e.g. the hub's current one:
#   make docs DOCS_FLAGS="--card_schema=2021-06 --output_dir=/tmp/cards"
DOCS_FLAGS ?=
docs: install
	$(PY) -m exporters.docs --output_dir=docs $(DOCS_FLAGS)

# Measures on this machine and writes bench_results/bench.{json,md,png}. The
# CI-sized run (about 15-20 minutes on 2 cores) is
#   make bench BENCH_FLAGS=--models=nasnet_mobile
# without flags every published model is measured (hours on such a machine).
BENCH_FLAGS ?=
bench: install
	$(PY) -m bench $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(TFJS_VENV) $(METADATA_VENV) $(TFJS_RUNTIME)/node_modules build *.egg-info
