# mixsearch — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# the system Chromium the viewer's browser tests drive (playwright never downloads one)
CHROMIUM ?= /usr/bin/chromium
# Tests never touch the network, the hub or W&B servers.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled \
	MIXSEARCH_CHROMIUM=$(CHROMIUM)

.DEFAULT_GOAL := help
.PHONY: help install chromium test test-fast lint check-readme demo toy-model bench bench-gpu bench-perf clean view

help: ## Show this help: the targets, then the variables they take
	@echo "Targets:"
	@grep -hE '^[a-zA-Z0-9_.-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'
	@echo "Variables (e.g. make table1 BENCH=toy LOGGER=wandb):"
	@grep -hE '^#> ' $(MAKEFILE_LIST) | \
		awk '{name = $$2; $$1 = ""; $$2 = ""; sub(/^ +/, ""); printf "  \033[36m%-14s\033[0m %s\n", name, $$0}'

install: ## Install mixsearch (editable) with test and FAISS extras, and Chromium for the browser tests
	$(PIP) install -e ".[dev,faiss]"
	@$(MAKE) --no-print-directory chromium

chromium: ## The system Chromium of the viewer's browser tests (apt-get install chromium, as root)
	@if [ -x "$(CHROMIUM)" ]; then echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else echo "No Chromium at $(CHROMIUM): the viewer's browser tests need one. Run" \
		"'sudo apt-get install -y chromium' (Debian), or pass CHROMIUM=/path/to/chromium." >&2; exit 1; fi

test: ## Run the offline test suite
	$(TEST_ENV) $(PYTHON) -m pytest -q

test-fast: ## Run the tests without the slow end-to-end ones
	$(TEST_ENV) $(PYTHON) -m pytest -q -m "not slow"

# the pages whose marked commands check-readme re-runs (experiments/check_readme.py)
PAGES ?= README.md docs/*.md
CHECK_ARGS ?=
check-readme: ## Re-run the commands README.md and docs/ show, compare their printed numbers (PAGES=..., CHECK_ARGS=--slow)
	$(TEST_ENV) $(PYTHON) -m experiments.check_readme $(CHECK_ARGS) $(PAGES)

lint: ## Lint with ruff
	$(PYTHON) -m ruff check mixsearch experiments tests run.py

demo: ## Offline demo sweep: toy benchmark x toy CLIP, calibration none/gr x corpus released/remix
	$(PYTHON) run.py -m experiment=demo

toy-model: ## Retrain the shipped toy CLIP (mixsearch/assets/toy_clip), CPU, a few minutes
	$(PYTHON) -m mixsearch.toymodel.train --out mixsearch/assets/toy_clip

bench: ## Benchmark scripts (search, alpha sweep, extraction, memory); each ends with a name=value line
	$(PYTHON) experiments/bench_retrieval.py
	$(PYTHON) experiments/bench_sweep.py
	$(PYTHON) experiments/bench_extract.py
	$(PYTHON) experiments/bench_memory.py

bench-gpu: ## Encoder images/s, texts/s, joint items/s and MFU (CLIP-L/336, SigLIP-so400m, 2B Qwen2-VL shape; needs a GPU, ~5 min)
	$(PYTHON) experiments/bench_gpu.py --out outputs/bench_gpu.md

bench-perf: ## CPU performance figures: alpha sweep ratio, extraction ratio (--toy), 1M-doc scale run
	$(PYTHON) experiments/bench_sweep.py
	$(PYTHON) experiments/bench_extract.py --toy
	$(PYTHON) experiments/bench_scale.py --docs 1000000 --queries 1000

#> RUN            make view: the run dir to show (e.g. the calibration=gr run)
#> BASELINE       make view: a run dir to compare it with (e.g. the calibration=none run)
#> VIEW           make view: the HTML file to write (default view.html)
RUN ?=
BASELINE ?=
VIEW ?= view.html
view: ## Self-contained HTML viewer of a run's rankings (RUN=dir [BASELINE=dir] [VIEW=file])
	@test -n "$(RUN)" || { echo "make view RUN=<run dir> [BASELINE=<run dir>] [VIEW=view.html]" >&2; exit 2; }
	$(PYTHON) -m mixsearch.viewer $(RUN) $(BASELINE) --out $(VIEW)

clean: ## Remove outputs/ and caches (keeps data/)
	rm -rf outputs multirun .cache .pytest_cache .ruff_cache

# ---------------------------------------------------------------------------------------
# Paper reproduction (tables and figures)
# ---------------------------------------------------------------------------------------
# Each target = a Hydra multirun of conf/experiment/paper/<setting>.yaml + the report
# (experiments/report.py). Results: $(OUT)/$(BENCH)/<time>/{mixbench,setting1,setting2} (sweeps)
# and {table1,figure2,figure3,figure4,report}/ (artefacts). Variables (`make help` lists the
# lines starting with "#>"):
#> BENCH          mixbench (default) | toy: the same targets offline on the toy benchmark and toy model
#> MODELS         model configs, comma-separated (default: the paper's five CLIP-family models)
#> LAUNCHER       hydra/launcher: basic (default) | local | slurm (site settings in conf/local/) | joblib
#> LOGGER         none (default) | csv | wandb (W&B: WANDB_MODE=online|offline, WANDB_PROJECT, WANDB_ENTITY)
#> OUT            where sweeps and artefacts go (default outputs/paper)
#> HYDRA_ARGS     extra overrides, e.g. HYDRA_ARGS="dataset.root=/data/MixBench25 paths.hf_cache=/shared/hf"
#> SWEEP          reuse a finished sweep instead of running one: its dir (with multirun.yaml) or a dir holding mixbench/ setting1/ setting2/
#> PYTHON         the interpreter (default python3)
#> PAGES          check-readme: the markdown pages to check (default README.md docs/*.md)
#> CHECK_ARGS     check-readme: --slow also runs the blocks marked slow (the zoo sweep), --show prints every output
BENCH ?= mixbench
LAUNCHER ?= basic
LOGGER ?= none
OUT ?= outputs/paper
HYDRA_ARGS ?=
STAMP := $(shell date +%Y-%m-%d_%H-%M-%S)
RUN_DIR := $(OUT)/$(BENCH)/$(STAMP)

ifeq ($(BENCH),toy)
MODELS ?= toy
DATASETS := toy
# overrides the experiments' dataset sweep: both toy subsets instead of the MixBench ones
BENCH_ARGS := dataset=toy dataset.subset=ToyCOCO,ToyOVEN
else ifeq ($(BENCH),mixbench)
MODELS ?= clip_b16,clip_l14_336,openclip_b16,openclip_l14,siglip_so400m
DATASETS := mixbench_google_wit,mixbench_mscoco,mixbench_oven,mixbench_visualnews
BENCH_ARGS :=
else
$(error BENCH=$(BENCH): choose mixbench or toy)
endif

WANDB_ON := $(filter wandb,$(LOGGER))
# W&B reads WANDB_MODE, WANDB_PROJECT, WANDB_ENTITY and WANDB_DIR from the environment
LOGGER_ARGS := logger=$(LOGGER)
REPORT_ARGS := $(if $(WANDB_ON),--wandb)
REPORT := $(PYTHON) -m experiments.report

.PHONY: download calibration-sets table1 figure2 figure3 figure4 reproduce

# The paper's GR calibration pools (training splits of MSCOCO, VisualNews, OVEN, Google WIT and
# NFCorpus; experiments/calibration_sets.py). When they exist, table1/figure4 run the paper's
# recipe: calibration=gr_paper (unified means) on Google WIT, MSCOCO and VisualNews, and
# calibration=gr_paper_oven (OVEN's own query mean) on OVEN, as a second sweep mixbench_oven/;
# otherwise GR fits cross-fitted means on MixBench itself (labelled so in the table).
#   CALIBRATION_SETS_ARGS="--mbeir-images /data/mbeir_images [--mbeir DIR --wit DIR]"
DATA_DIR ?= $(or $(MIXSEARCH_DATA_DIR),data)
CALIBRATION_SETS_ARGS ?=
PAPER_POOLS := $(wildcard $(DATA_DIR)/calibration/MANIFEST.json)
COMMA := ,
OVEN_OWN := $(and $(PAPER_POOLS),$(filter mixbench,$(BENCH)))
$(RUN_DIR)/mixbench/multirun.yaml: CAL_ARGS := $(if $(OVEN_OWN),dataset=mixbench_google_wit$(COMMA)mixbench_mscoco$(COMMA)mixbench_visualnews calibration=none$(COMMA)gr_paper)
$(RUN_DIR)/mixbench_oven/multirun.yaml: CAL_ARGS := dataset=mixbench_oven calibration=none$(COMMA)gr_paper_oven

download: ## Pre-fetch the models and datasets of a reproduction into the caches (needs the hub)
	$(PYTHON) -m experiments.download --models $(MODELS) --datasets $(DATASETS) $(HYDRA_ARGS)

calibration-sets: ## The paper's GR calibration pools into data/calibration (CALIBRATION_SETS_ARGS="--mbeir-images DIR")
	$(PYTHON) -m experiments.calibration_sets --data-dir $(DATA_DIR) $(CALIBRATION_SETS_ARGS)

# The sweep of a setting: $(SWEEP) (or its <setting>/ subdir) when given, else a new one.
SWEEP ?=
sweep_dir = $(if $(SWEEP),$(if $(wildcard $(SWEEP)/$(1)/multirun.yaml),$(SWEEP)/$(1),$(SWEEP)),$(RUN_DIR)/$(1))
sweep_dep = $(if $(SWEEP),,$(RUN_DIR)/$(1)/multirun.yaml)
# Setting 3's sweeps: mixbench/, plus mixbench_oven/ (OVEN with gr_paper_oven) when the pools
# exist, or when a reused SWEEP holds one.
mixbench_sweeps = $(strip $(call sweep_dir,mixbench) $(if $(SWEEP),$(patsubst %/multirun.yaml,%,$(wildcard $(SWEEP)/mixbench_oven/multirun.yaml)),$(if $(OVEN_OWN),$(RUN_DIR)/mixbench_oven)))
mixbench_deps = $(call sweep_dep,mixbench) $(if $(and $(OVEN_OWN),$(if $(SWEEP),,1)),$(RUN_DIR)/mixbench_oven/multirun.yaml)
check_sweep = @test -f $(call sweep_dir,$(1))/multirun.yaml || { echo "SWEEP=$(SWEEP): no multirun.yaml in $(SWEEP) or $(SWEEP)/$(1) (give the sweep dir of the $(1) setting)" >&2; exit 2; }

# One sweep per paper setting and make invocation (table1 and figure4 share the mixbench one).
# The cache check fails fast, before any job, when a model or dataset is not pre-downloaded.
$(RUN_DIR)/%/multirun.yaml:
	$(PYTHON) -m experiments.download --check --models $(MODELS) --datasets $(DATASETS) $(HYDRA_ARGS)
	$(PYTHON) run.py -m experiment=paper/$(patsubst %_oven,%,$*) model=$(MODELS) hydra/launcher=$(LAUNCHER) \
		hydra.sweep.dir=$(RUN_DIR)/$* $(LOGGER_ARGS) $(BENCH_ARGS) $(CAL_ARGS) $(HYDRA_ARGS)

table1: $(mixbench_deps) ## Table 1: MixBench none vs GR, side by side with the paper
	$(call check_sweep,mixbench)
	$(REPORT) $(mixbench_sweeps) --out $(RUN_DIR)/table1 --figures table1 $(REPORT_ARGS)

figure2: $(call sweep_dep,setting1) ## Figure 2: NDCG@10 vs image ratio p (none, GR, push-down)
	$(call check_sweep,setting1)
	$(REPORT) $(call sweep_dir,setting1) --out $(RUN_DIR)/figure2 --figures figure2 $(REPORT_ARGS)

figure3: $(call sweep_dep,setting2) ## Figure 3: NDCG@10 vs text weight alpha (none vs GR)
	$(call check_sweep,setting2)
	$(REPORT) $(call sweep_dir,setting2) --out $(RUN_DIR)/figure3 --figures figure3 $(REPORT_ARGS)

figure4: $(mixbench_deps) ## Figure 4: per-subset NDCG@10 bars, none vs GR
	$(call check_sweep,mixbench)
	$(REPORT) $(mixbench_sweeps) --out $(RUN_DIR)/figure4 --figures figure4 $(REPORT_ARGS)

reproduce: table1 figure2 figure3 figure4 ## All of the above, plus one combined report
	$(REPORT) $(mixbench_sweeps) $(call sweep_dir,setting1) $(call sweep_dir,setting2) --out $(RUN_DIR)/report $(REPORT_ARGS)
	@echo "reproduction: $(RUN_DIR)/report/report.md"
