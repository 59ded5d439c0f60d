"""Data parallel with torchrun (2 gloo processes on CPU): the same global batch gives the same update as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rlino.distributed import World
from rlino.run_folder import TIMING_KEYS, complete_checkpoints
from rlino.trainer import train

TESTS = Path(__file__).parent
SMOKE = str(TESTS.parent / "configs" / "smoke.toml")
# 3 prompts on 2 ranks: an uneven share (1 and 2 prompts), so nothing relies on equal shares
COMMON = ["task.name=toy_task:make", "task.options={}", "train.prompts_per_step=3", "train.group_size=4",
          "train.micro_batch_size=5", "eval.every=1", "eval.num_items=7", "train.learning_rate=1e-3"]


def torchrun(args: list[str], nproc: int = 2) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "rlino", "train", *args]
    done = subprocess.run(cmd, env=env, cwd=TESTS, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    diff = sum(float((a[k].double() - b[k].double()).norm() ** 2) for k in a) ** 0.5
    return diff / sum(float(b[k].double().norm() ** 2) for k in b) ** 0.5


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def assert_same_run(one: Path, two: Path, initial: dict[str, torch.Tensor]) -> None:
    a, b = weights(complete_checkpoints(one)[-1]), weights(complete_checkpoints(two)[-1])
    assert rel_diff(b, a) <= 1e-5
    assert rel_diff(a, initial) > 1e-4  # the step really moved the weights
    ma, mb = metrics(one), metrics(two)
    assert [r["step"] for r in ma] == [r["step"] for r in mb]
    for ra, rb in zip(ma, mb):
        assert set(ra) == set(rb)
        for key in ra:  # same samples, rewards, lengths and evaluation; float sums may differ in the last bits
            if isinstance(ra[key], float):
                assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-7), key
            else:
                assert ra[key] == rb[key], key
    wa = (one / "weights.jsonl").read_text().splitlines()
    wb = (two / "weights.jsonl").read_text().splitlines()
    for la, lb in zip(wa, wb):
        ra, rb = json.loads(la), json.loads(lb)
        assert ra["length"] == rb["length"] and ra["correct"] == rb["correct"]
        assert ra["token_weight"] == pytest.approx(rb["token_weight"], rel=1e-4)


@pytest.mark.parametrize("method", [["method.name=grpo"],  # per-response averaging, KL and clip
                                    ["method.name=fisft_pos_neg", "method.aggregation=token-mean"],
                                    # the critic: whitening over ranks, its loss's normaliser, the KL in the reward
                                    ["method.name=ppo", "method.beta=0.01", "train.steps=2"]],
                         ids=["grpo", "fisft_pos_neg", "ppo"])
def test_two_ranks_match_one_process(tmp_path, method):
    sets = COMMON + ["train.steps=1"] + method
    train(SMOKE, sets, out=tmp_path / "one")
    args = [SMOKE, "--out", str(tmp_path / "two")]
    for item in sets:
        args += ["--set", item]
    torchrun(args)
    first = json.loads((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < first["accuracy"] < 1  # rewards vary, so the gradient is not trivially zero
    from rlino.embedded import load_embedded

    assert_same_run(tmp_path / "one", tmp_path / "two", load_embedded("embedded:tiny", seed=0)[0].state_dict())
    if "method.name=ppo" in method:
        one, two = (load_file(str(complete_checkpoints(tmp_path / d)[-1] / "critic.safetensors"))
                    for d in ("one", "two"))
        assert rel_diff(two, one) <= 1e-5 and float(one["head.weight"].abs().sum()) > 0


def test_two_rank_resume_continues_like_an_uninterrupted_run(tmp_path):
    sets = COMMON + ["method.name=grpo", "train.save_every=1"]
    train(SMOKE, sets + ["train.steps=3"], out=tmp_path / "one")
    args = [SMOKE, "--out", str(tmp_path / "two")]
    for item in sets + ["train.steps=2"]:
        args += ["--set", item]
    torchrun(args)  # stopped after step 2
    torchrun(["--resume", str(tmp_path / "two"), "--set", "train.steps=3"])
    from rlino.embedded import load_embedded

    assert_same_run(tmp_path / "one", tmp_path / "two", load_embedded("embedded:tiny", seed=0)[0].state_dict())
    # and a 2-rank checkpoint resumes on one process
    (tmp_path / "two" / "checkpoints" / "step-000003").rename(tmp_path / "two" / "step3")
    train(None, ["train.steps=3"], resume=tmp_path / "two")
    assert rel_diff(weights(complete_checkpoints(tmp_path / "two")[-1]), weights(tmp_path / "two" / "step3")) <= 1e-5


def test_shares_cover_every_item_once_in_order():
    for n in (3, 7, 64):
        for size in (1, 2, 3):
            parts = [list(World(rank, size).share(n)) for rank in range(size)]
            assert sum(parts, []) == list(range(n)) and max(map(len, parts)) - min(map(len, parts)) <= 1
