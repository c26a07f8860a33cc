# Two commands do everything on a fresh machine (Python >= 3.10 is the only prerequisite):
#   make demo   the main job on the embedded default dataset, ending with the dashboard open
#               (make demo HEADLESS=1 on a server: no browser is opened, the URL is printed)
#   make test   the test suite (what CI runs)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup setup-demo demo test lint docs bench clean

# everything (every extra, the test tools, Chromium for the browser tests)
setup:
	@scripts/setup.sh test

# what the demo needs: the core plus the dashboard and the notebooks
setup-demo:
	@scripts/setup.sh demo

demo: setup-demo
	$(BIN)/drkd-viz demo $(if $(HEADLESS),--headless)

# figures and screenshots the tests save for a person to look at (temporary folders are removed)
DRKD_TEST_ARTIFACTS ?= $(CURDIR)/test-artifacts
export DRKD_TEST_ARTIFACTS

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# the documentation site at http://127.0.0.1:8000 (the test suite builds it with --strict)
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

bench: setup .venv-tide/bin/python
	$(BIN)/python bench/eval_speed.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/drkd_overhead.py
	$(BIN)/python bench/onnx_speed.py --run runs/demo/baseline-s0
	$(BIN)/python bench/proposal_speed.py --runs runs/demo
	$(BIN)/python bench/install_size.py
	$(BIN)/python bench/error_analysis.py --runs runs/demo
	$(BIN)/python bench/app_latency.py --runs runs/demo

# tidecv (TIDE's authors' package), only for bench/error_analysis.py's comparison: it needs opencv-python and
# seaborn, which the project does not depend on, so it lives in an environment of its own
.venv-tide/bin/python:
	python3 -m venv .venv-tide && .venv-tide/bin/pip install -q tidecv==1.0.1 "numpy<2"

clean:
	rm -rf $(VENV) .venv-tide runs site .pytest_cache .ruff_cache
