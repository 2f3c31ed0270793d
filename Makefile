# `make test` and (later) `make demo` set up everything they need; both are safe to rerun.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The SageMaker Python SDK, for its tests only: its pins cannot share .venv (requirements-sdk.txt).
SDK_VENV := .venv-sdk
SDK_STAMP := $(SDK_VENV)/.installed
# The model server's C code (CSV parser, JSON writer), compiled from source (never committed).
NATIVE := containers/model_kit/serving/_native.so

.PHONY: setup test lint clean synth demo bench rehearse image-test fuzz redrive

setup: $(PY_STAMP) $(NODE_STAMP) $(NATIVE)

$(NATIVE): $(wildcard containers/model_kit/serving/*.c) containers/model_kit/serving/native.py
	$(PYTHON) containers/model_kit/serving/native.py

# The dev virtualenv: every pinned package, and model_kit (containers/) installed editable, so
# the tests, the app's synth-time checks and the tools import it like the images do.
$(PY_STAMP): requirements.txt requirements-dev.txt constraints.txt containers/requirements-model.txt \
		containers/requirements-training.txt containers/requirements-inference.txt \
		containers/requirements-lightgbm.txt containers/requirements-xgboost.txt \
		containers/requirements-training-lightgbm.txt containers/requirements-training-xgboost.txt \
		containers/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e containers
	touch $@

$(SDK_STAMP): requirements-sdk.txt constraints-sdk.txt
	test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-sdk.txt -c constraints-sdk.txt
	touch $@

# The pinned CDK CLI and Node 22 (package-lock.json); `npx cdk` runs both from node_modules/.bin.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

synth: setup
	npx cdk synth --quiet

# The whole pipeline on this machine (no AWS account): synth, train, package, serve, score.
# DEMO_ARGS: `-c KEY=VALUE` overrides for the synth, e.g. DEMO_ARGS="-c config.model_family=xgboost".
# MODE: the endpoint's hosting (`serving.mode`), e.g. MODE=serverless.
demo: setup
	$(PY) -m local.demo $(if $(MODE),-c config.serving.mode=$(MODE)) $(DEMO_ARGS)

# Re-submit the client's failed events (needs AWS credentials); REDRIVE_ARGS, e.g. --dry-run.
redrive: setup
	$(PY) -m tools.redrive $(REDRIVE_ARGS)

# `cdk deploy --all` into moto (new account, unchanged tree, retrain) and `cdk destroy --all`
# (retain, destroy), checked; prints what the emulator skipped. `make test` runs it too.
rehearse: setup
	$(PY) -m local.rehearsal

# Both images built from the folders `cdk synth` stages, `train` and `serve` run inside them.
# Docker where an engine runs; otherwise podman on a stand-in base built from Debian packages
# (podman, runc and debootstrap are installed from Debian when missing: that needs root).
# The image storage stays under build/images (the cache); `make clean` removes it.
image-test: setup
	$(PY) -m local.images $(IMAGE_TEST_ARGS)

# Coverage-guided fuzzing of every request decoder and the answer writer, the server's C code
# built with clang under ASan and UBSan (FUZZ_SECONDS, default 300). Installs atheris, and clang from Debian (as root).
FUZZ_SECONDS ?= 300
fuzz: $(PY_STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-fuzz.txt -c constraints.txt
	@if ! command -v clang >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang; \
		else \
			echo "make fuzz needs clang: sudo apt-get install -y clang"; exit 1; \
		fi; \
	fi
	$(PY) -m local.fuzz --seconds $(FUZZ_SECONDS)

# Our model server beside the classic nginx + gunicorn gevent + flask container (~14 min):
# writes benchmarks/RESULTS.md and benchmarks/results.png. Installs its own tools.
bench: $(PY_STAMP) $(NATIVE)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt -c constraints.txt
	@if ! { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || ! command -v wrk >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk; \
		else \
			echo "make bench needs nginx and wrk: sudo apt-get install -y nginx-light wrk"; exit 1; \
		fi; \
	fi
	$(PY) -m pytest -q tests/benchmarks   # the harness and the reference server, now with its tools
	$(PY) -m benchmarks.run_bench

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint $(SDK_STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(SDK_VENV) node_modules cdk.out build .pytest_cache .ruff_cache $(NATIVE)
