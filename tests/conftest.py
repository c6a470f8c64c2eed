"""Test-wide settings: everything offline, every cache in a temp dir."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Set before any test module imports transformers/datasets/wandb, so their import-time
# configuration is offline too.
_TMP = tempfile.mkdtemp(prefix="mixsearch-tests-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "HF_HOME": os.path.join(_TMP, "hf"),
    "WANDB_DIR": os.path.join(_TMP, "wandb"),
    "MPLBACKEND": "Agg",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)

# conf/config.yaml extends the structured schema: tests that compose conf/ with Hydra's compose
# API need it in the ConfigStore, as run.py puts it there (after the environment above is set).
from mixsearch.schema import register_configs  # noqa: E402

register_configs()
