# Quick start: `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean promtool

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scr demo

lint: $(STAMP)
	$(BIN)/ruff check scr_middleware tests benchmarks example_apps
	$(BIN)/ruff format --check scr_middleware

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) promtool
	$(BIN)/python -m pytest -q -p no:cacheprovider

# promtool checks and unit-tests docs/prometheus-alerts.yaml. Best effort: unpacked from
# Debian's prometheus package (nothing is installed or started); its tests skip without it.
promtool: .tools/promtool
.tools/promtool:
	-@mkdir -p .tools/deb && cd .tools/deb && \
	  (apt-get download prometheus >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1)) && \
	  dpkg -x prometheus_*.deb pkg && cp pkg/usr/bin/promtool ../promtool && \
	  cd .. && rm -rf deb || echo "promtool unavailable: its tests will be skipped"

test: lint typecheck pytest

bench: $(STAMP)
	@command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null 2>&1 || \
	  echo "wrk unavailable: the servers benchmark uses its asyncio load generator"
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .tools build *.egg-info .mypy_cache .ruff_cache
