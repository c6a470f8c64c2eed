# mixsearch — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# Tests never touch the network, the hub or W&B servers.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint demo toy-model bench clean

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_.-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

install: ## Install mixsearch (editable) with test and FAISS extras
	$(PIP) install -e ".[dev,faiss]"

test: ## Run the offline test suite
	$(TEST_ENV) $(PYTHON) -m pytest -q

test-fast: ## Run the tests without the slow end-to-end ones
	$(TEST_ENV) $(PYTHON) -m pytest -q -m "not slow"

lint: ## Lint with ruff
	$(PYTHON) -m ruff check mixsearch experiments tests run.py

demo: ## The default job on the toy benchmark, without and with GR calibration
	$(PYTHON) run.py calibration=none
	$(PYTHON) run.py calibration=gr

toy-model: ## Retrain the shipped toy CLIP (mixsearch/assets/toy_clip), CPU, a few minutes
	$(PYTHON) -m mixsearch.toymodel.train --out mixsearch/assets/toy_clip

clean: ## Remove outputs/ and caches (keeps data/)
	rm -rf outputs multirun .cache .pytest_cache .ruff_cache

# ---------------------------------------------------------------------------------------
# Paper reproduction (tables and figures)
# ---------------------------------------------------------------------------------------
