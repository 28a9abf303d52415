# The commands everyone runs. `make scan LIBRARY=~/Pictures` sets everything
# up on a fresh clone (virtualenv, dependencies, default models) and tags the
# folder; `make test` runs the test suite.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LIBRARY ?=

.PHONY: setup models mlserver scan test test-fast lint bench clean

$(BIN)/tagd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,export]'
	touch $@

setup: $(BIN)/tagd

# Models go to the state dir (~/.local/share/tagd/models; TAGD_MODELS_DIR or
# runtime.models_dir to choose another). A model that cannot be had here (say, a
# registry hiccup) is reported with the step that fixes it; tagging goes on with
# the models that are installed.
models: setup
	$(BIN)/tagd models fetch || echo "tagd: some models are missing (see above)" >&2

# tagd scan exits 1 when some files could not be read (the summary names them):
# the scan itself worked. 2 (it could not run) stays a failure.
scan: models
	@test -n "$(LIBRARY)" || (echo "usage: make scan LIBRARY=/path/to/photos" >&2; exit 2)
	$(BIN)/tagd scan "$(LIBRARY)" || test $$? -eq 1

# The tests' KServe v2 inference servers: MLServer pins its own web stack, so it
# gets a virtualenv of its own (tests/kserve_server.py).
MLSERVER := build/mlserver/bin/mlserver
$(MLSERVER):
	$(PYTHON) -m venv build/mlserver
	build/mlserver/bin/pip install --quiet --upgrade pip
	build/mlserver/bin/pip install --quiet 'mlserver==1.7.1' 'onnxruntime>=1.18'

mlserver: $(MLSERVER)

test: models $(MLSERVER)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# Unit tests only (tests/unit): no model needed, under a minute.
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q tests/unit

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check daemon tests bench

bench: models
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/objects_accuracy.py
	$(BIN)/python bench/rescan.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/models.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
