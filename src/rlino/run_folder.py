"""The on-disk format of a run folder and of a compare folder, in one place: the trainer writes through it, `compare`
and the report read through it.

A run folder (`rlino train --out DIR`, or `runs/<arm>/` of a compare):

    config.toml                    the resolved config (the method row's choices written out)
    metrics.jsonl                  one JSON object per step (eval/ keys on evaluation steps)
    samples.jsonl                  the first train.log_samples responses of each step
    eval_samples.jsonl             the first eval.log_samples held-out responses of each evaluation
    weights.jsonl                  per step: each response's length, correctness, weight w_i and measured per-token
                                   weight, and the aggregation and normalisers the step's loss used
    checkpoints/step-NNNNNN/       a plain Hugging Face model folder + trainer_state.pt (written to a .tmp folder
                                   and renamed, so a folder with trainer_state.pt is complete); under
                                   train.sharding = "fsdp" also sharded/: every rank's shards of the weights and
                                   optimizer states (torch.distributed.checkpoint), which --resume reads

Every log line carries its `step`. A checkpoint at step s covers the log lines of steps <= s: resuming from it drops
later lines, so a resumed run neither loses nor repeats a step. A run is finished when its last metrics line is at
the configured number of steps.

A compare folder (`rlino compare --out DIR`): `compare.toml` (the compare config as run), `base/eval.json` (the base
model's held-out evaluation; `base/base-B/eval.json` per base seed B when the compare builds several bases),
`runs/<arm>/<replicate>/` (one run folder per arm and seed: `seed-S`, or `base-B-seed-S`), and the report's outputs.
Folders written before seeds existed hold one run folder per arm directly in `runs/<arm>/`; the report reads both.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlino.files import read_jsonl, read_toml

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
EVAL_SAMPLES = "eval_samples.jsonl"
WEIGHTS = "weights.jsonl"
LOG_FILES = (METRICS, SAMPLES, EVAL_SAMPLES, WEIGHTS)
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
"""Optimizer, scheduler, RNG states and the step, next to the model files of a checkpoint."""
TIMING_KEYS = ("step_time_s", "tokens_per_s", "sample_time_s", "update_time_s", "time_s")
"""Keys of a metrics line that measure wall time (they differ between otherwise identical runs)."""


class RunFolder:
    """One run folder: its file names, its logs and its checkpoints."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # ---- state of the run ------------------------------------------------------------------------------------------
    def holds_run(self) -> bool:
        """Whether a run has started writing here (its metrics log exists)."""
        return self.file(METRICS).exists()

    def last_step(self) -> int | None:
        rows = self.read_log(METRICS) if self.file(METRICS).is_file() else []
        return rows[-1]["step"] if rows else None

    def finished(self, steps: int) -> bool:
        """Whether the run logged its last configured step."""
        last = self.last_step()
        return last is not None and last >= steps

    # ---- logs ------------------------------------------------------------------------------------------------------
    def append(self, lines: dict[str, list[dict[str, Any]]]) -> None:
        """Append one step's lines to the named logs, flushed before returning."""
        for name, rows in lines.items():
            with open(self.file(name), "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))

    def read_log(self, name: str) -> list[dict[str, Any]]:
        """The rows of a log, in file order (a partial last line is skipped)."""
        path = self.file(name)
        return read_jsonl(path) if path.is_file() else []

    def truncate_logs(self, step: int) -> None:
        """Drop log lines of steps after `step` (those a checkpoint at `step` does not cover)."""
        for name in LOG_FILES:
            path = self.file(name)
            if not path.exists():
                continue
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if line.strip() and json.loads(line)["step"] <= step:
                        kept.append(line)
                except json.JSONDecodeError:
                    pass  # a line cut short when the process was killed
            path.write_text("".join(ln + "\n" for ln in kept))

    def read_config(self) -> dict[str, Any]:
        return read_toml(self.file(CONFIG)) if self.file(CONFIG).is_file() else {}

    # ---- checkpoints -----------------------------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.path / CHECKPOINTS / f"step-{step:06d}"

    def complete_checkpoints(self) -> list[Path]:
        """Checkpoint folders that were fully written, oldest first."""
        root = self.path / CHECKPOINTS
        if not root.is_dir():
            return []
        return sorted(p for p in root.iterdir() if p.name.startswith("step-") and not p.name.endswith(".tmp")
                      and (p / STATE_FILE).is_file())

    def resume_step(self) -> int:
        """The step a run here resumes from: its last complete checkpoint's, else 0 (it starts over)."""
        done = self.complete_checkpoints()
        return int(done[-1].name.removeprefix("step-")) if done else 0

    def write_checkpoint(self, step: int, write: Callable[[Path], None], keep: int = 0) -> Path:
        """Let `write(folder)` fill a temporary folder, then rename it into place (a checkpoint appears only when
        complete); keep the `keep` most recent checkpoints (0 keeps all)."""
        write(self.start_checkpoint(step))
        return self.commit_checkpoint(step, keep)

    def checkpoint_tmp(self, step: int) -> Path:
        """The temporary folder a checkpoint is written into before it is renamed into place."""
        final = self.checkpoint_dir(step)
        return final.with_name(final.name + ".tmp")

    def start_checkpoint(self, step: int) -> Path:
        """An empty temporary folder for the checkpoint at `step` (several processes may write into it)."""
        tmp = self.checkpoint_tmp(step)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, step: int, keep: int = 0) -> Path:
        """Rename the written temporary folder into place and prune to the `keep` most recent (0 keeps all)."""
        final, tmp = self.checkpoint_dir(step), self.checkpoint_tmp(step)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        if keep:
            for old in self.complete_checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return final


def timestamped(name: str) -> Path:
    """The default output folder of a command: runs/NAME-YYYYmmdd-HHMMSS."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def complete_checkpoints(out: str | Path) -> list[Path]:
    """Checkpoint folders of the run folder `out` that were fully written, oldest first."""
    return RunFolder(out).complete_checkpoints()


def replicate_key(name: str) -> tuple[int, int] | None:
    """(base seed, seed) of a replicate folder name (`seed-3` -> (-1, 3), `base-1-seed-3` -> (1, 3)), else None."""
    parts = name.split("-")
    if len(parts) == 2 and parts[0] == "seed" and parts[1].isdigit():
        return (-1, int(parts[1]))
    if len(parts) == 4 and parts[0] == "base" and parts[2] == "seed" and parts[1].isdigit() and parts[3].isdigit():
        return (int(parts[1]), int(parts[3]))
    return None


class CompareFolder:
    """A compare folder's file names."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "compare.toml"
        self.base_eval = self.path / "base" / "eval.json"
        self.runs = self.path / "runs"

    def arm(self, name: str) -> RunFolder:
        """runs/<arm>/: a run folder itself in folders written before seeds existed, else the seeds' parent."""
        return RunFolder(self.runs / name)

    def run(self, arm: str, replicate: str) -> RunFolder:
        """runs/<arm>/<replicate>/: the run folder of one arm and seed."""
        return RunFolder(self.runs / arm / replicate)

    def replicates_on_disk(self, arm: str) -> list[str]:
        """The replicate folders under runs/<arm>/ (seed-S, base-B-seed-S), sorted by base seed then seed."""
        folder = self.runs / arm
        names = [p.name for p in folder.iterdir() if p.is_dir() and replicate_key(p.name) is not None] \
            if folder.is_dir() else []
        return sorted(names, key=replicate_key)

    def base_eval_for(self, base_seed: int | None) -> Path:
        return self.base_eval if base_seed is None else self.path / "base" / f"base-{base_seed}" / "eval.json"

    def arm_names_on_disk(self) -> list[str]:
        """The run folders present under runs/, sorted (for a folder without compare.toml)."""
        return sorted(p.name for p in self.runs.iterdir() if p.is_dir()) if self.runs.is_dir() else []
