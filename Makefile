# dockfleet: the two commands a fresh machine needs are `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The lock: every package with its version and hashes (make lock writes both files).
LOCK := requirements.lock
UV_LOCK := requirements-uv.lock
LOCK_ARGS := --generate-hashes --universal --python-version 3.11 --no-header -q
SYSTEM_PACKAGES := docker.io openssh-server busybox-static iproute2 util-linux openssl chromium \
	postgresql

.PHONY: install lock run test lint typecheck pytest system-deps bench bench-fleet bench-scale clean \
	image-deps image-test image-requirements compose-check

install: $(STAMP)

# Installs exactly the lock: uv (itself pinned by hash) syncs the venv to requirements.lock
# (removing anything else), then adds dockfleet itself, editable, without dependencies.
$(STAMP): pyproject.toml $(LOCK) $(UV_LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --no-deps --require-hashes -r $(UV_LOCK)
	$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes $(LOCK)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Re-resolves pyproject.toml's dependencies (newest allowed versions) into the lock.
lock:
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PY) -m venv $(VENV); $(BIN)/pip install -q uv; }
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_ARGS) --upgrade -o $(LOCK)
	grep -E '^uv==' $(LOCK) | cut -d' ' -f1 | $(BIN)/uv pip compile - $(LOCK_ARGS) -o $(UV_LOCK)

run: install
	$(BIN)/dockfleet serve --host $${DOCKFLEET_HOST:-127.0.0.1} --port $${DOCKFLEET_PORT:-9595}

# Installs what the integration tests need (real dockerd, sshd, busybox; chromium for the docs
# pages' browser test; PostgreSQL's server for the throw-away cluster of tests/pgcluster.py)
# when run as root.
system-deps:
	@if [ "$$(id -u)" = "0" ]; then \
	  missing=""; \
	  command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	  test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	  test -x /bin/busybox || missing="$$missing busybox-static"; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  command -v openssl >/dev/null || missing="$$missing openssl"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	else echo "not root: integration tests need root and will be skipped (or fail with CI=true)"; fi

# The container image, built and run with no image registry (needs root): the base is
# debootstrapped from Debian packages (cached in .cache/image/), built on a fleet dockerd, run
# with a fleet daemon's socket mounted, and a run launched through it (tests/image/).
image-deps: system-deps
	@if [ "$$(id -u)" = "0" ]; then \
	  missing=""; \
	  command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
	    || missing="$$missing docker-compose"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	fi

image-test: install image-deps
	$(BIN)/pytest -m image tests/image
	@echo "image-test: $$(tr -d '\n' < .ci/artifacts/image-test.json)"
	@$(MAKE) --no-print-directory compose-check

# docker-compose.yml through `docker compose config` (or docker-compose v1), on a copy beside
# the example env file, with and without the postgres profile; skipped (said so) without either.
compose-check:
	@if docker compose version >/dev/null 2>&1; then compose="docker compose"; \
	elif command -v docker-compose >/dev/null; then compose="docker-compose"; \
	else echo "compose-check: no docker compose plugin (nor docker-compose): docker-compose.yml NOT checked"; exit 0; fi; \
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cp docker-compose.yml "$$tmp/" && cp dockfleet.env.example "$$tmp/dockfleet.env" && \
	cd "$$tmp" && export DOCKER_GID=999 && \
	$$compose config -q && $$compose --profile postgres config -q && \
	echo "compose-check: docker-compose.yml is valid ($$compose config, with and without --profile postgres)"

# Re-pin the image's Python dependencies (requirements-image.txt) from a fresh venv.
image-requirements:
	rm -rf .cache/reqs-venv && $(PY) -m venv .cache/reqs-venv
	.cache/reqs-venv/bin/pip install -q '.[postgres]'
	{ sed -n '1,2p' requirements-image.txt; .cache/reqs-venv/bin/pip freeze --exclude dockfleet; } > requirements-image.txt.new
	mv requirements-image.txt.new requirements-image.txt && rm -rf .cache/reqs-venv

lint: install
	$(BIN)/ruff check app tests bench examples
	$(BIN)/ruff format --check app tests bench examples

typecheck: install
	$(BIN)/mypy

# Two workers (the machine has 2 cores): every test of the real fleet runs in one of them, in
# order, on one fleet; the others are shared out (tests/conftest.py). PYTEST_WORKERS=0: one
# process, as `.venv/bin/pytest` runs it.
PYTEST_WORKERS ?= 2
pytest: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: install system-deps lint typecheck pytest

bench: install
	$(BIN)/python -m bench.placement_bench

# Needs root: starts its own dockerds and sshd (tests/fleet), like the integration tests.
bench-fleet: install system-deps
	$(BIN)/python -m bench.fleet_bench

# A real server (subprocess) against 10, 100 and 1,000 hollow Docker hosts (bench/hollow), then
# the same containers straight through aiodocker; about 25 minutes, no root. Options, e.g.:
# make bench-scale BENCH_SCALE_ARGS="--quick" (or "--fleets 10,100 --cap 300").
BENCH_SCALE_ARGS ?=
bench-scale: install
	$(BIN)/python -m bench.scale_bench $(BENCH_SCALE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
