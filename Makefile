# One install path for people, CI and the Docker image: `make demo` and `make test` each set up what they need.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install sysdeps test lint demo reference bench clean help

help:
	@echo "make demo   - simulate a few spectra, train on the bundled reference data, log to MLflow"
	@echo "make test   - run the test suite (installs everything first)"
	@echo "make lint   - ruff"
	@echo "make reference - (re)generate the bundled reference dataset (resumable)"

install: $(STAMP)

sysdeps:
	@bash scripts/sysdeps.sh

# The stamp name carries a checksum of pyproject.toml + constraints.txt: a changed pin reinstalls.
$(STAMP): pyproject.toml constraints.txt scripts/sysdeps.sh
	@bash scripts/sysdeps.sh
	@command -v $(PYTHON) >/dev/null || { echo "astrops: $(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip<27" wheel
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# 21cmMC's metadata pulls tuesday-eor (numpy>=2) and a 200 MB emulator: install it alone, its real needs are pinned above.
	$(BIN)/pip install -q --no-deps -c constraints.txt "21cmMC==1.0.0"
	@rm -f $(VENV)/.installed-*
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# The whole pipeline on 2 cores in a few minutes: fresh simulations, training on the bundled reference
# data, MLflow logging, the metrics table, and how to open the UI.
demo: $(STAMP)
	$(BIN)/python simulate.py simulation.n=4 simulation.workers=2
	$(BIN)/python -m astrops.store info data/store
	$(BIN)/python train.py callbacks.progress_bar=null
	@echo "Open the MLflow UI: $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/tracking/mlflow.db"

# make reference N=4000 extends the same design (indices 2000..3999 of base seed 1); resumable.
N ?= 2000
reference: $(STAMP)
	$(BIN)/python simulate.py simulation=reference_multiz paths.store_dir=$(CURDIR)/data/reference simulation.workers=2 simulation.n=$(N)

clean:
	rm -rf logs .pytest_cache

# The quick benchmark subset (< 10 minutes on 2 cores); full commands and numbers in docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/store_io.py
	$(BIN)/python benchmarks/simulation_throughput.py --reps 5
	$(BIN)/python benchmarks/training_throughput.py --n 20000 --epochs 1 --reps 3
