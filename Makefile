# The single entry point. `make run` and `make test` each do all the set-up they need.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PORT ?= 8080

.PHONY: setup run serve test test-unit test-integration test-e2e test-infra lint typecheck synth layer \
        bench bench-write bench-retrieval bench-query bench-compress bench-sandbox clean

setup: $(STAMP) system-deps

# Debian packages the service and its tests use: redis-server (cache tests) and bubblewrap
# (sandbox isolation). Installed only when missing; needs root (CI and dev machines are).
system-deps:
	@missing=""; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	 command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	   else echo "please install:$$missing (apt-get install$$missing)"; fi; fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	rm -f .venv/.installed-*; touch $(STAMP)

# The local service on the embedded default, with a short demo; Ctrl-C stops it.
run: setup
	.venv/bin/context-engine serve --port $(PORT) --demo

serve: setup
	.venv/bin/context-engine serve --port $(PORT)

test: setup
	.venv/bin/pytest tests -q

test-unit: setup
	.venv/bin/pytest tests/unit -q
test-integration: setup
	.venv/bin/pytest tests/integration -q
test-e2e: setup
	.venv/bin/pytest tests/e2e -q
test-infra: setup
	.venv/bin/pytest tests/infra -q

lint: setup
	.venv/bin/ruff check .
typecheck: setup
	.venv/bin/mypy

layer: setup
	$(PY) scripts/build_layer.py
synth: setup
	$(PY) infra_cdk/app.py

bench-write: setup
	$(PY) bench/write_query_bench.py
bench-retrieval: setup
	$(PY) bench/retrieval_bench.py
bench-query: setup
	$(PY) bench/query_bench.py
bench-compress: setup
	$(PY) bench/compress_bench.py
bench-sandbox: setup
	$(PY) bench/sandbox_bench.py
bench: bench-write bench-query bench-retrieval bench-compress bench-sandbox

clean:
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache
