# Two environments, both reproducible from the pins in requirements/:
#   .venv/          the runner (editable) + test tools, CPU torch 2.13.0
#   .venv-comfyui/  the same + real ComfyUI 0.0.1 (torch 2.14.1), for the real-ComfyUI tests
# plus .venv-pytrickle/, Livepeer's reference trickle client, used only as a test peer.
PYTHON ?= python3
VENV := .venv
VENV_COMFY := .venv-comfyui
VENV_PYTRICKLE := .venv-pytrickle
PIP_FLAGS := -q --disable-pip-version-check
HOST ?= 0.0.0.0
PORT ?= 8889
ORCH_PORT ?= 8890

.PHONY: serve test test-stress test-fast lint format bench bench-ipc bench-trickle bench-infer bench-latency bench-soak clean

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -c requirements/constraints.txt torch==2.13.0
	$(VENV)/bin/pip install $(PIP_FLAGS) -c requirements/constraints.txt -e '.[test]'
	touch $@

$(VENV_COMFY)/.installed: pyproject.toml requirements/comfyui.txt requirements/comfyui-lock.txt
	$(PYTHON) -m venv $(VENV_COMFY)
	$(VENV_COMFY)/bin/pip install $(PIP_FLAGS) -r requirements/comfyui.txt -c requirements/comfyui-lock.txt
	$(VENV_COMFY)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

$(VENV_PYTRICKLE)/.installed: requirements/pytrickle.txt requirements/pytrickle-lock.txt
	$(PYTHON) -m venv $(VENV_PYTRICKLE)
	$(VENV_PYTRICKLE)/bin/pip install $(PIP_FLAGS) --only-binary av -r requirements/pytrickle.txt -c requirements/pytrickle-lock.txt
	touch $@

# The runner on $(PORT) with the local orchestrator stand-in beside it on $(ORCH_PORT).
serve: $(VENV)/.installed
	$(VENV)/bin/comfystream-byoc serve --host $(HOST) --port $(PORT) --with-orchestrator --orchestrator-port $(ORCH_PORT)

test: $(VENV)/.installed $(VENV_COMFY)/.installed $(VENV_PYTRICKLE)/.installed
	$(VENV)/bin/python -m pytest -m "not comfyui" $(PYTEST_ARGS)
	$(VENV_COMFY)/bin/python -m pytest -m comfyui $(PYTEST_ARGS)

# Every property test at 10,000 examples (the hypothesis "stress" profile, tests/conftest.py).
test-stress: $(VENV)/.installed
	BYOC_STRESS=1 $(VENV)/bin/python -m pytest -m "not comfyui" --timeout 3600 $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not comfyui" -x $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check byoc ingest infer egress ipc benchmarks tests
	$(VENV)/bin/ruff format --check byoc ingest infer egress ipc benchmarks tests
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix byoc ingest infer egress ipc benchmarks tests
	$(VENV)/bin/ruff format byoc ingest infer egress ipc benchmarks tests

bench-ipc: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.ipc

bench-trickle: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.trickle

bench-infer: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.infer

bench-latency: $(VENV)/.installed $(VENV_PYTRICKLE)/.installed
	$(VENV)/bin/python -m benchmarks.latency

bench-soak: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.soak

# Every benchmark in its ~30 s smoke form (what CI runs).
bench: $(VENV)/.installed $(VENV_PYTRICKLE)/.installed
	$(VENV)/bin/python -m benchmarks.ipc --quick --json benchmarks/results/ipc-quick.json
	$(VENV)/bin/python -m benchmarks.trickle --quick
	$(VENV)/bin/python -m benchmarks.infer --quick
	$(VENV)/bin/python -m benchmarks.latency --quick
	$(VENV)/bin/python -m benchmarks.soak --quick

clean:
	rm -rf $(VENV) $(VENV_COMFY) $(VENV_PYTRICKLE) *.egg-info .pytest_cache .mypy_cache .ruff_cache
