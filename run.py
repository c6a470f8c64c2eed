"""Entry point: compose the Hydra config and run one evaluation job.

    python run.py                                   # toy benchmark, toy model, offline
    python run.py calibration=gr                    # GR-CLIP
    python run.py -m model=clip_b16,openclip_b16 dataset=mixbench_oven calibration=none,gr
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mixsearch.schema import register_configs

log = logging.getLogger("mixsearch")
# conf/config.yaml extends the structured schema: it must be in the ConfigStore before composing
register_configs()


def _pin_gpu(cfg: DictConfig, job_num: int) -> None:
    """Parallel jobs on a multi-GPU machine (joblib launcher) each take their own GPU."""
    if cfg.get("device", "auto") != "auto":
        return
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n > 1:
        cfg.device = f"cuda:{job_num % n}"
        log.info("job %d pinned to %s", job_num, cfg.device)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from mixsearch.config import ConfigError
    from mixsearch.data.benchmark import DataError
    from mixsearch.encoders.base import EncoderError
    from mixsearch.logs import print_error, quiet_repeated_warnings
    from mixsearch.pipeline import run
    from mixsearch.signals import Interrupted, interruptible
    from mixsearch.tracking import RunDirInUse, write_status

    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    multirun = hc.mode == RunMode.MULTIRUN
    # each distinct warning once on the terminal per sweep (every job's run.log keeps all)
    quiet_repeated_warnings(hc.sweep.dir if multirun else None)
    if multirun:
        _pin_gpu(cfg, hc.job.num)
    overrides = list(hc.overrides.task)
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
        with interruptible():
            result = run(container, overrides=overrides)
    except Interrupted as e:  # SIGINT/SIGTERM: record it, then exit 130/143 (a sweep stops too)
        write_status(run_dir, ok=False, error=e, overrides=overrides,
                     status="interrupted", signal=e.signal_name)
        log.error("%s (see %s/status.json)", e, run_dir)
        raise SystemExit(e.exit_code) from None
    except RunDirInUse as e:  # the dir and its status.json belong to the run that holds it
        # in a multirun, another live multirun shares the sweep dir: every job would collide
        log.error("%s", e)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - every failure is recorded in status.json
        write_status(run_dir, ok=False, error=e, overrides=overrides)
        if not multirun and isinstance(e, ConfigError):
            # a wrong option needs its message, not a traceback
            print(f"config error: {e}", file=sys.stderr)
            sys.exit(2)
        if not multirun and isinstance(e, (DataError, EncoderError)):
            # bad data or a model that cannot load: one line; the traceback goes to run.log
            print_error("data" if isinstance(e, DataError) else "model", e)
            sys.exit(1)
        if not multirun:
            raise
        # One failing job must not stop the rest of a sweep: record it, log it, go on.
        log.error("job %s failed: %s: %s (see %s/status.json)", hc.job.num, type(e).__name__, e, run_dir)
        return None
    write_status(run_dir, ok=True, overrides=overrides, warnings=result.get("config_warnings", []))
    return (result.get("metrics") or {}).get(cfg.get("main_metric", "ndcg@10"))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
    # A multirun returns here after every job ran and the summary was written; a failed job
    # makes the whole invocation fail, so shell scripts, CI and SLURM wrappers notice.
    from mixsearch.callbacks import sweep_exit_code

    sys.exit(sweep_exit_code())
