# Every target works on a fresh machine with nothing but Python: it makes .venv, installs torch 2.13.0 when
# torch is not importable (the CPU wheel; any other spec pulls CUDA packages), then kexue with its dev extra.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kexue-installed
JOBS   ?= 2

.PHONY: test demo bench lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --durations=15 tests

demo: $(STAMP)
	$(BIN)/kexue reproduce ddim --quick --out runs/demo

bench: $(STAMP)
	mkdir -p runs/bench
	$(BIN)/kexue bench trainer --json | tee runs/bench/trainer.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
