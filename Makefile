# armlab: `make demo` and `make test` each set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.armlab-installed

.PHONY: install demo test test-slow test-all test-browser lint format bench bench-generative clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install armlab with the dev tools

demo: $(STAMP)  ## the main job: envs, CMA-ES per stage, the y(x) landscape plot
	$(BIN)/armlab demo --out runs/demo

test: $(STAMP)  ## the test suite without `slow` tests, on both cores (pytest-xdist; about 5 minutes on 2 cores)
	$(BIN)/python -m pytest -n 2 --durations=10

test-slow: $(STAMP)  ## only the `slow` tests: the SAC target, the bench and kill runs, the report in Chromium
	$(BIN)/python -m pytest -n 2 -m slow --durations=10

test-all: test test-slow  ## every test: `make test` (the README's command), then the `slow` ones (what CI runs)

test-browser: $(STAMP)  ## the demo's report.html in headless Chromium (apt-get install chromium)
	$(BIN)/python -m pytest -m slow tests/test_report_browser.py

lint: $(STAMP)  ## ruff, and the import contracts (arrows one way; generative never loads the simulator)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## speed and feasibility benchmarks (installs panda-gym for the comparison)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/armlab bench env
	$(BIN)/armlab bench feasibility --robot arm2
	$(BIN)/armlab bench feasibility --robot arm3
	$(BIN)/armlab bench dataset

bench-generative: $(STAMP)  ## GAN, CycleGAN and diffusion benchmarks (each 25-45 min on 2 CPU cores)
	$(BIN)/armlab bench gan --json
	$(BIN)/armlab bench cyclegan --json
	$(BIN)/armlab bench diffusion --json

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .ruff_cache
