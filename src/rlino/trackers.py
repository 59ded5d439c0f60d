"""Experiment trackers beside `metrics.jsonl`: TensorBoard, Weights & Biases, Trackio (`train.report_to`).

`metrics.jsonl` stays the source of truth (the report reads it, `--resume` truncates it); a tracker receives the same
numbers under the same names, one call per step, from rank 0 only. Each tracker is an optional package, imported
when asked for, with an install hint when missing:

    tensorboard   <run>/tensorboard/ event files (torch.utils.tensorboard; `pip install tensorboard`); a resumed run
                  purges the steps after its checkpoint, so the curves match metrics.jsonl
    wandb         one W&B run per rlino run, named after it; WANDB_MODE=offline (or `wandb offline`) is honoured,
                  files under <run>/wandb/
    trackio       one Trackio run per rlino run (local-first: its own SQLite store; TRACKIO_DIR where set)
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

from rlino.errors import RlinoError

TRACKERS = ("tensorboard", "wandb", "trackio")
"""Each also the name of its package (to import and to pip install)."""


def check_report_to(names: list[str]) -> None:
    """Known names, each once (a config check: nothing is imported)."""
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or len(set(names)) != len(names):
        raise RlinoError(f"train.report_to must be a list of distinct names from {', '.join(TRACKERS)}, got {names}")


def _require(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise RlinoError(f"train.report_to lists '{name}' but the package is not installed: "
                         f"pip install {name}") from None


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics line (bools, None, NaN and text left out), names unchanged."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and k != "step"}


class Trackers:
    """The trackers of one run; `log(metrics)` sends a metrics line to each, `close()` flushes them."""

    def __init__(self, names: list[str], folder: Path, run_name: str, config: dict[str, Any], resume_step: int = 0):
        check_report_to(names)
        for name in names:  # every package checked before any tracker starts
            _require(name)
        self._sinks: list[tuple[str, Any]] = []
        for name in names:
            self._sinks.append((name, getattr(self, f"_open_{name}")(folder, run_name, config, resume_step)))

    @staticmethod
    def _open_tensorboard(folder: Path, run_name: str, config: dict[str, Any], resume_step: int) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events at or after it (from steps the checkpoint does not cover) are dropped on resume
        return SummaryWriter(log_dir=str(folder / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    @staticmethod
    def _open_wandb(folder: Path, run_name: str, config: dict[str, Any], resume_step: int) -> Any:
        wandb = _require("wandb")
        return wandb.init(project="rlino", name=run_name, dir=str(folder), config=config, reinit="create_new")

    @staticmethod
    def _open_trackio(folder: Path, run_name: str, config: dict[str, Any], resume_step: int) -> Any:
        trackio = _require("trackio")
        trackio.init(project="rlino", name=run_name, config=config, resume="allow" if resume_step else "never")
        return trackio  # its log() and finish() act on the run just initialised

    def log(self, metrics: dict[str, Any]) -> None:
        step, values = int(metrics["step"]), scalars(metrics)
        for name, sink in self._sinks:
            if name == "tensorboard":
                for key, value in values.items():
                    sink.add_scalar(key, value, global_step=step)
            else:  # wandb and trackio runs share the call
                sink.log(values, step=step)

    def close(self) -> None:
        for name, sink in self._sinks:
            if name == "tensorboard":
                sink.close()
            else:
                sink.finish()
        self._sinks = []
