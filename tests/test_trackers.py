"""train.report_to: TensorBoard gets the same scalars as metrics.jsonl (read back with TensorBoard's own reader);
unknown or missing trackers are errors before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlino.errors import RlinoError
from rlino.trainer import train

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.toml")
TOY = ["task.name=toy_task:make", "task.options={}", "train.prompts_per_step=2", "train.group_size=4",
       "train.learning_rate=1e-3", "eval.every=2", "eval.num_items=4"]


def events_of(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar event TensorBoard's own reader finds in the folder, as (step, value) in order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def scalars_of(folder: Path) -> dict[str, dict[int, float]]:
    return {tag: dict(events) for tag, events in events_of(folder).items()}


def test_tensorboard_gets_every_number_of_metrics_jsonl(tmp_path):
    out = tmp_path / "run"
    train(SMOKE, TOY + ["train.steps=3", "train.report_to=['tensorboard']", "method.name=ppo"], out=out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    board = scalars_of(out / "tensorboard")
    expected = {(k, r["step"]): v for r in rows for k, v in r.items()
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    got = {(k, step): v for k, steps in board.items() for step, v in steps.items()}
    assert got.keys() == expected.keys()  # same names, same steps (eval/ keys on eval steps only)
    assert len(got) == sum(len(events) for events in events_of(out / "tensorboard").values())  # each logged once
    assert {"eval/accuracy", "critic/value_loss", "reward_mean"} <= {k for k, _ in got}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key  # TensorBoard stores float32


def test_a_resumed_run_purges_the_steps_its_checkpoint_does_not_cover(tmp_path):
    out = tmp_path / "run"
    common = TOY + ["train.report_to=['tensorboard']", "train.save_every=2"]
    train(SMOKE, common + ["train.steps=3"], out=out)  # steps 1-3 logged, checkpoint at step 2 (and 3)
    (out / "checkpoints" / "step-000003").rename(tmp_path / "dropped")  # as if killed after step 3's logs
    train(None, ["train.steps=4"], resume=out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = events_of(out / "tensorboard")["reward_mean"]
    assert [step for step, _ in events] == [1, 2, 3, 4]  # step 3 once: its first logging was purged
    assert [v for _, v in events] == pytest.approx([r["reward_mean"] for r in rows])


@pytest.mark.parametrize("value,message", [("['tensorbord']", "train.report_to must be a list of distinct names"),
                                           ("['tensorboard', 'tensorboard']", "distinct")])
def test_bad_tracker_names_are_errors(tmp_path, value, message):
    with pytest.raises(RlinoError, match=message):
        train(SMOKE, TOY + [f"train.report_to={value}"], out=tmp_path / "run")


def test_a_missing_tracker_package_says_what_to_install(tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *args):
        if name == "wandb":
            raise ImportError("no wandb here")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(RlinoError, match="pip install wandb"):
        train(SMOKE, TOY + ["train.report_to=['wandb']"], out=tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
