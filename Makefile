# Set-up and everyday commands. Everything installs into .venv; nothing touches the system Python.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLES := examples
EDGEMAKER := $(BIN)/edgemaker

.PHONY: install demo test test-fast bench clean browser constraints upgrade docs

install: $(STAMP)

# Every install goes through constraints.txt: the exact versions the suite passed with, so an install
# made next month gets the same packages (tests/test_constraints.py compares `pip freeze` with it).
PIP_INSTALL := $(BIN)/pip install -q -c constraints.txt

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is a CPU wheel; a looser spec pulls a multi-GB CUDA build.
	$(PIP_INSTALL) torch==2.13.0
	# The TFLite extra names torch too: keeping the pin in the same command stops pip pulling a CUDA build.
	$(PIP_INSTALL) -e '.[dev,more-backbones,tflite,web,ray]' torch==2.13.0
	# aisfx ships the audio embedding weights; its own pins (numpy==1.23, librosa==0.9.2) are stale
	# and unused here, so it is installed without them.
	# --base-model converts ONNX with onnx2torch (the base-model extra). It requires torchvision, which
	# cannot sit beside the CPU torch; only its NMS/RoiAlign converters use it (left out, see
	# backbones/base_model.py), so it is installed without its dependencies. Versions: constraints.txt.
	$(PIP_INSTALL) --no-deps aisfx onnx2torch
	touch $(STAMP)

# constraints.txt from the installed environment (after adding a dependency and passing the suite).
constraints: install
	$(BIN)/pip install -q uv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/constraints.py

# The newest versions pyproject.toml allows: re-pin, reinstall through the new pins, run the suite.
# Commit constraints.txt only if the suite passes.
upgrade: install
	$(BIN)/pip install -q uv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/constraints.py --upgrade
	$(PIP_INSTALL) -e '.[dev,more-backbones,tflite,web,ray]' torch==2.13.0
	$(PIP_INSTALL) --no-deps aisfx onnx2torch
	touch $(STAMP)
	$(BIN)/python -m pytest -q

# Real photos and sounds shipped in examples/ (licences: examples/README.md); offline.
demo: install
	$(EDGEMAKER) train $(EXAMPLES)/photos --out demo-run
	$(EDGEMAKER) predict demo-run/model_int8.onnx $(EXAMPLES)/photos-holdout/*/*.jpg
	$(EDGEMAKER) evaluate demo-run/model_int8.onnx $(EXAMPLES)/photos-holdout
	$(EDGEMAKER) train $(EXAMPLES)/sounds --out demo-run-audio
	$(EDGEMAKER) predict demo-run-audio/model_int8.onnx $(EXAMPLES)/sounds/test/rooster/5-194930-A-1.ogg --windows
	$(EDGEMAKER) evaluate demo-run-audio/model_int8.onnx $(EXAMPLES)/sounds
	$(BIN)/python -m edgemaker.demo demo-run demo-run-audio

test: install browser
	$(BIN)/python -m pytest -q

# The unit and contract tests (every registered backbone and strategy included), in under two minutes:
# what trains, reads ../shared/data, drives a browser or starts Ray is left to `make test`
# (markers set in tests/conftest.py by what each test uses).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not real_data and not browser and not ray"

# The web app's browser tests drive Debian's chromium (Playwright's own browser download does not
# work offline). Installed when missing and we may; otherwise those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser tests will skip"; \
	  else echo "chromium is missing (apt-get install chromium): the browser tests will skip"; fi; }

bench: install
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/probe.py --json bench-probe.json
	$(BIN)/python bench/quality.py --json bench-quality.json

clean:
	rm -rf demo-run demo-run-audio site bench-results.json bench-probe.json bench-quality.json bench-quality.tmp .pytest_cache

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any warning, as tests/test_docs.py does.
docs: install
	$(BIN)/mkdocs build --strict
