# Set-up and everyday commands. Everything installs into .venv; nothing touches the system Python.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-data

.PHONY: install demo test bench clean browser constraints upgrade

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

demo: install
	$(BIN)/python -m edgemaker.demo $(DEMO)
	$(BIN)/edgemaker train $(DEMO)/shapes --out demo-run
	$(BIN)/edgemaker predict demo-run/model_int8.onnx $(DEMO)/holdout/circle/circle_000.jpg $(DEMO)/holdout/triangle/triangle_000.jpg
	$(BIN)/edgemaker evaluate demo-run/model_int8.onnx $(DEMO)/holdout
	$(BIN)/edgemaker train $(DEMO)/sounds --out demo-run-audio
	$(BIN)/edgemaker predict demo-run-audio/model_int8.onnx $(DEMO)/sounds-holdout/knock/knock_000.wav --windows
	$(BIN)/edgemaker evaluate demo-run-audio/model_int8.onnx $(DEMO)/sounds-holdout
	@echo "Open demo-run/report.html and demo-run-audio/report.html to see the reports."

test: install browser
	$(BIN)/python -m pytest -q

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
	rm -rf demo-run demo-run-audio $(DEMO) bench-results.json bench-probe.json bench-quality.json bench-quality.tmp .pytest_cache
