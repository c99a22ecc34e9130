# phonehome: the commands a newcomer needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck bench fuzz clean

$(STAMP): pyproject.toml setup.py src/phonehome/_lane.c src/phonehome/_detect.c src/phonehome/_http1.c src/phonehome/_slots.c
	@# tshark checks that the demo capture opens in Wireshark's dissectors; installed where missing.
	@command -v tshark >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null) \
		|| echo "tshark not installed: the test that opens the demo capture in it will skip"; }
	@# PostgreSQL's server binaries let the history-store tests start a throwaway server of their own.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "postgresql not installed: the PostgreSQL store tests will skip"; }
	@# Headless Chromium renders the HTML reports in the browser tests (offline, no sandbox).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium not installed: the tests that open the HTML reports in a browser will skip"; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@# mitmproxy (phonehome live) without pip's dependency check: see the live extra in pyproject.toml.
	$(BIN)/pip install -q --no-deps mitmproxy==11.0.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/phonehome demo --out demo-out

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Benchmarks are not tests: they print throughput beside tshark on the same file.
bench: $(STAMP)
	@command -v tshark >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark)
	$(BIN)/python bench/run.py

# Every fuzz target for FUZZ_SECONDS each (atheris when it installs, else a mutational loop);
# crashes are saved under fuzz/crashes/<target>/. `python fuzz/run.py --summary` totals all runs.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	@$(BIN)/pip install -q -e '.[fuzz]' || echo "atheris not installable here: the mutational engine is used"
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache build src/phonehome/*.so
