# One install path for people, CI and the Docker image: `make demo` and `make test` each set up what they need.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install sysdeps test lint demo reference bench gpu-check clean help

help:
	@echo "make demo   - simulate a few spectra, train on the bundled reference data, log to MLflow"
	@echo "make test   - run the test suite (installs everything first)"
	@echo "make lint   - ruff"
	@echo "make reference - (re)generate the bundled reference dataset (resumable)"
	@echo "make gpu-check - dense and CNN on CUDA against the CPU (exit 3 without CUDA: CUDA is untested)"

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
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=20 tests

# The whole pipeline on 2 cores in a few minutes: fresh simulations, training on the bundled reference
# data, MLflow logging, the metrics table, and how to open the UI.
demo: $(STAMP)
	$(BIN)/python simulate.py simulation.n=4 simulation.workers=2
	$(BIN)/python -m astrops store info data/store
	$(BIN)/python train.py callbacks.progress_bar=null
	@echo "Open the MLflow UI: $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/tracking/mlflow.db, then the link train.py printed (it ends in ?workflowType=machine_learning: MLflow 3 opens on runs, not its GenAI view)"

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

# CUDA against the CPU for model=dense and model=cnn (scripts/gpu_check.py): same weights -> outputs within
# 1e-4 relative, 50 epochs from one seed -> test R² within 0.01, samples/s on each. Exit 0 pass, 1 a check
# failed, 2 bad arguments, 3 no CUDA device ("CUDA is untested"). Without a GPU, check the check:
# make gpu-check GPU_CHECK_ARGS="--accelerator cpu"
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/gpu_check.py $(GPU_CHECK_ARGS)

# Refresh docs/figures/mlflow_{runs,compare,confusion}.png: the seed's four runs (the full training, several
# minutes on 2 cores) in a temporary store, a real `mlflow ui`, and tests/test_mlflow_ui.py's browser tour.
.PHONY: screenshots
screenshots: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/mlflow_screenshots.py --out docs/figures

# How far a stored spectrum mapped onto another k-grid (observation.k_bins) is from the same box binned there
# directly (scripts/kgrid_error.py; ~2 min on one core; numbers in docs/observations.md)
.PHONY: kgrid-error
kgrid-error: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/kgrid_error.py --n 10

# Thermal-noise tables of the observation layer (docs/observations.md): data/noise/<observation>/z<z>.npz,
# 21cmSense 2.2.0, 10-25 s and ~450 MB per table on one core, 16 tables. Resumable: existing tables are
# skipped (FORCE=1 recomputes); fine in the background: nohup make noise-tables > noise-tables.log &
# One observation: make noise-tables OBSERVATION=hera350_1000h
.PHONY: noise-tables
OBSERVATION ?= all
noise-tables: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m astrops noise-tables $(OBSERVATION) --out data/noise $(if $(FORCE),--force)
