"""Data parallel and FSDP2 sharding with torchrun (2 gloo processes on CPU): the same global batch gives the same
update as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rlino.config import load_config
from rlino.distributed import World
from rlino.errors import RlinoError
from rlino.run_folder import TIMING_KEYS, complete_checkpoints
from rlino.sharding import SHARDED_DIR
from rlino.trainer import train, validate

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
                                    ["method.name=ppo", "method.beta=0.01", "train.steps=2"],
                                    # FSDP2: the policy, its reference and the critic sharded over the 2 ranks
                                    ["method.name=ppo", "method.beta=0.01", "train.steps=2", "train.sharding=fsdp"],
                                    # two optimizer steps per batch: the ratio to the sampling-time policy and its
                                    # clip, on sharded weights
                                    ["method.name=grpo", "method.epochs_per_batch=2", "train.sharding=fsdp"],
                                    # PPO mini-batches: each part's counts summed over the ranks, π_old of the
                                    # second part read before the first optimizer step, on sharded weights
                                    ["method.name=nsr", "method.mini_batches=2", "train.prompts_per_step=4",
                                     "train.sharding=fsdp"]],
                         ids=["grpo", "fisft_pos_neg", "ppo", "ppo-fsdp", "grpo-epochs2-fsdp", "nsr-minibatches2-fsdp"])
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
    if "train.sharding=fsdp" in method:
        models = ["policy", "critic"] if "method.name=ppo" in method else ["policy"]
        assert_sharded(complete_checkpoints(tmp_path / "two")[-1], models)


def assert_sharded(checkpoint: Path, models: list[str], ranks: int = 2) -> None:
    """What each rank held when it wrote the checkpoint (torch.distributed.checkpoint's metadata): of every decoder
    layer's weight matrix and its AdamW moment, one block of rows per rank, 1/ranks of the whole. A run whose layers
    were not sharded (every rank holding the full model) fails here."""
    from torch.distributed.checkpoint import FileSystemReader

    entries = FileSystemReader(str(checkpoint / SHARDED_DIR)).read_metadata().state_dict_metadata
    for model in models:
        keys = [k for k in entries if k.startswith(f"{model}.") and ".layers." in k and k.endswith("proj.weight")]
        keys += [k.replace(f"{model}.", f"{model}_optimizer.state.", 1) + ".exp_avg" for k in keys]
        assert len(keys) >= 2 * 7 * 2  # 7 projections in each of the tiny model's 2 layers, weights and moments
        for key in keys:
            chunks, size = entries[key].chunks, entries[key].size
            assert len(chunks) == ranks, key
            assert [c.offsets[0] for c in chunks] == [r * size[0] // ranks for r in range(ranks)], key
            assert all(c.sizes[0] * ranks == size[0] and c.sizes[1:] == size[1:] for c in chunks), key


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


def test_fsdp_two_ranks_match_one_process_and_resume_like_it(tmp_path):
    """FSDP2 over 2 gloo ranks (grpo: the policy and its KL reference sharded): after 2 steps the same loss, gradient
    norm and weights as one process (1e-5); stopped there and resumed on 2 ranks, step 3 is the uninterrupted run's;
    and the sharded checkpoint resumes on one process."""
    sets = COMMON + ["method.name=grpo", "train.save_every=1", "train.keep_checkpoints=0"]
    train(SMOKE, sets + ["train.steps=3"], out=tmp_path / "one")
    args = [SMOKE, "--out", str(tmp_path / "two")]
    for item in sets + ["train.steps=2", "train.sharding=fsdp"]:
        args += ["--set", item]
    torchrun(args)  # stopped after step 2
    one, two = tmp_path / "one" / "checkpoints", tmp_path / "two" / "checkpoints"
    assert rel_diff(weights(two / "step-000002"), weights(one / "step-000002")) <= 1e-5
    for a, b in zip(metrics(tmp_path / "one")[:2], metrics(tmp_path / "two")):
        for key in ("loss", "grad_norm", "kl", "reward_mean"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-9), key
    assert metrics(tmp_path / "one")[1]["kl"] > 0  # the reference is used (and was sharded)
    assert_sharded(two / "step-000002", ["policy"])
    torchrun(["--resume", str(tmp_path / "two"), "--set", "train.steps=3"])
    from rlino.embedded import load_embedded

    assert_same_run(tmp_path / "one", tmp_path / "two", load_embedded("embedded:tiny", seed=0)[0].state_dict())
    assert_sharded(two / "step-000003", ["policy"])
    # the 2-rank sharded checkpoint of step 2 resumes on one process (torch.distributed.checkpoint reshards it)
    for step in ("step-000003", "step-000001"):
        (two / step).rename(tmp_path / step)
    train(None, ["train.steps=3"], resume=tmp_path / "two")
    assert rel_diff(weights(two / "step-000003"), weights(one / "step-000003")) <= 1e-5


def test_sharding_settings_are_checked():
    with pytest.raises(RlinoError, match="train.sharding must be one of none, fsdp"):
        validate(load_config(SMOKE, ["train.sharding=zero3"]))
    with pytest.raises(RlinoError, match=r"train.sharding = 'fsdp' is for full fine-tuning; with LoRA"):
        validate(load_config(SMOKE, ["train.sharding=fsdp", "model.lora.rank=4"]))


def test_shares_cover_every_item_once_in_order():
    for n in (3, 7, 64):
        for size in (1, 2, 3):
            parts = [list(World(rank, size).share(n)) for rank in range(size)]
            assert sum(parts, []) == list(range(n)) and max(map(len, parts)) - min(map(len, parts)) <= 1


SLOW_SAVE = '''
import os, time
import torch.distributed.checkpoint as dcp

# every Python process of the launch (torchrun's agent and each rank) leaves its pid, so the test can kill them all:
# torchrun starts the ranks in sessions of their own, which a kill of the launcher's process group does not reach
open(os.path.join(os.environ["RLINO_TEST_PIDS"], str(os.getpid())), "w").close()

_save = dcp.save


def save(state, *args, checkpoint_id=None, **kwargs):
    out = _save(state, *args, checkpoint_id=checkpoint_id, **kwargs)
    if "step-000002.tmp" in str(checkpoint_id):  # this rank's shards are on disk; the checkpoint is not complete
        open(os.path.join(os.environ["RLINO_TEST_MARKS"], os.environ["RANK"]), "w").close()
        time.sleep(600)
    return out


dcp.save = save
'''


def kill_launch(proc: subprocess.Popen, pids: Path, out: Path) -> None:
    """SIGKILL to the launcher's process group and to every process of the launch that left its pid in `pids` and
    still runs with `out` on its command line (so a pid reused by another process is left alone)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group had already exited
        pass
    for f in pids.iterdir():
        try:
            if str(out).encode() in Path(f"/proc/{f.name}/cmdline").read_bytes():
                os.kill(int(f.name), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):  # already exited
            pass
    proc.wait()


def test_fsdp_killed_during_a_sharded_save_resumes_from_the_last_complete_checkpoint(tmp_path):
    """SIGKILL to every process of a 2-rank FSDP run while it saves step 2 (each rank's shards written, the
    checkpoint not yet renamed into place): the folder keeps step 1 as its last complete checkpoint, and --resume
    on 2 ranks ends where the uninterrupted run does."""
    import time

    sets = COMMON + ["method.name=grpo", "train.save_every=1", "train.keep_checkpoints=0", "train.steps=3"]
    train(SMOKE, sets, out=tmp_path / "one")
    hooks, marks, pids = tmp_path / "hooks", tmp_path / "marks", tmp_path / "pids"
    for folder in (hooks, marks, pids):
        folder.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_SAVE)  # imported by every Python process of the launch
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hooks), str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", RLINO_TEST_MARKS=str(marks), RLINO_TEST_PIDS=str(pids))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rlino", "train",
           SMOKE, "--out", str(tmp_path / "two")]
    for item in sets + ["train.sharding=fsdp"]:
        cmd += ["--set", item]
    log = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would stall the run before the save
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=TESTS, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while len(list(marks.iterdir())) < 2:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never reached the save of step 2"
                time.sleep(0.2)
        finally:  # the kill under test, and no sleeping ranks left behind, whether the test passes or fails
            kill_launch(proc, pids, tmp_path / "two")
    ckpts = tmp_path / "two" / "checkpoints"
    assert (ckpts / "step-000002.tmp" / SHARDED_DIR / ".metadata").exists()  # killed mid-save, shards on disk
    assert [p.name for p in complete_checkpoints(tmp_path / "two")] == ["step-000001"]
    torchrun(["--resume", str(tmp_path / "two")])
    from rlino.embedded import load_embedded

    assert_same_run(tmp_path / "one", tmp_path / "two", load_embedded("embedded:tiny", seed=0)[0].state_dict())
    assert_sharded(ckpts / "step-000003", ["policy"])
    assert not (ckpts / "step-000002.tmp").exists()


def test_a_process_a_test_leaves_running_is_found_by_its_mark():
    """The guard after every test (conftest.no_process_outlives_its_test) finds a process by the mark in its
    environment: here a grandchild in a session of its own whose parent has exited, as torchrun's ranks are after
    their launcher is killed. Once killed it is no longer listed."""
    import signal

    from conftest import processes_left

    code = ("import subprocess as s; print(s.Popen(['sleep', '120'], start_new_session=True, stdin=s.DEVNULL, "
            "stdout=s.DEVNULL, stderr=s.DEVNULL).pid)")
    pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    try:
        assert [cmd for p, cmd in processes_left() if p == pid] == ["sleep 120"]
    finally:
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):  # the kernel drops it once its new parent (init) reaps it
        if pid not in dict(processes_left()):
            break
        time.sleep(0.05)
    assert pid not in dict(processes_left())
