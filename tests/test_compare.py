"""`rlino compare`, `rlino eval`, `rlino report` and the embedded base recipe, on tiny models and few steps."""

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch

from rlino.base_model import RECIPE, Recipe, base_model_dir, corpus, write_trace
from rlino.cli import main
from rlino.compare import load_compare_config
from rlino.errors import RlinoError
from rlino.tasks import load_task

SMALL = """
[compare]
arms = ["grpo", {name = "fisft_pos_neg_tokmean", method = "fisft_pos_neg", set = ["method.aggregation=token-mean"]}]

[model]
name_or_path = "embedded:tiny"

[task]
name = "toy_task:make"

[train]
steps = 3
prompts_per_step = 2
group_size = 4
learning_rate = 1e-3
save_every = 0

[sampling]
max_new_tokens = 8

[eval]
every = 2
num_items = 16
temperature = 1.0
"""


def test_small_compare_writes_the_report(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "cmp"
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    for name in ("report.html", "report.md", "results.json", "base/eval.json", "compare.toml"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["grpo", "fisft_pos_neg_tokmean"]
    assert results["arms"]["fisft_pos_neg_tokmean"]["aggregation"] == "token-mean"
    for arm in results["arms"].values():
        assert arm["steps"] == 3 and 0 <= arm["accuracy"] <= 1
    md = (out / "report.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and ("Base" in ln or "grpo" in ln or "fisft" in ln)]
    assert len([ln for ln in table if not ln.startswith("| Base")]) >= 2
    # every arm saw the same prompts in the same order
    prompts = [[json.loads(s)["prompt"] for s in (out / "runs" / a / "samples.jsonl").read_text().splitlines()]
               for a in results["arms"]]
    assert prompts[0] == prompts[1]
    # re-rendering from the run folders alone gives the same results
    (out / "results.json").unlink()
    assert main(["report", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["arms"] == results["arms"]
    # a second compare into the same folder needs --resume, which skips the finished arms
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert main(["compare", str(cfg), "--out", str(out), "--resume"]) == 0
    assert "already finished, skipped" in capsys.readouterr().out


@pytest.mark.parametrize("arms,message", [
    ('["grpo", "gpro"]', "unknown method 'gpro' (did you mean 'grpo'?)"),
    ("[]", "compare.arms must be a non-empty list"),
    ('["grpo", "grpo"]', "duplicate arm name(s) ['grpo']"),
    ('[{name = "x", methd = "grpo"}]', "unknown key(s) ['methd']"),
    ('[{name = "x", method = "grpo", set = ["method.aggregation=tokenmean"]}]', "did you mean 'token-mean'"),
])
def test_bad_arms_fail_before_anything_runs(tmp_path, arms, message, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL.replace(SMALL.splitlines()[2], f"arms = {arms}"))
    assert main(["compare", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_compare_config(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_default_config_matches_the_base_recipe():
    raw, shared, arms = load_compare_config(None, [])
    assert [a.name for a in arms] == ["grpo", "fisft_pos_neg", "fisft_pos"]
    assert shared.model.name_or_path == "embedded:countdown"
    assert shared.task.options == RECIPE.task_options
    assert shared.eval.num_items >= 500
    assert arms[0].config(shared).method.name == "grpo"


def test_eval_matches_the_trainers_own_evaluation(tmp_path, capsys):
    from rlino.trainer import train

    for temperature in (0.0, 1.0):
        run = tmp_path / f"run{temperature}"
        final = train(None, ["task.name=toy_task:make", "train.steps=2", "train.prompts_per_step=2",
                             "train.group_size=4", "train.learning_rate=1e-3", "sampling.max_new_tokens=8",
                             "eval.every=2", "eval.num_items=16", f"eval.temperature={temperature}"], out=run)
        trainer_acc = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]["eval/accuracy"]
        out = tmp_path / f"eval{temperature}.json"
        assert main(["eval", "--model", str(final), "--task", "toy_task:make", "--set", "eval.num_items=16",
                     "--set", "sampling.max_new_tokens=8", "--k", "4", "--temperature", "1.0",
                     "--json", str(out)]) == 0
        result = json.loads(out.read_text())
        key = "greedy_accuracy" if temperature == 0 else "first_sample_accuracy"
        assert result[key] == trainer_acc
        assert {"pass@4", "sampled_accuracy", "length_correct_mean", "length_wrong_mean"} <= set(result)
        assert result["pass@4"] >= result["sampled_accuracy"]
    assert "pass@4" in capsys.readouterr().out
    # the run's own config.toml supplies task, sampling and eval settings
    out = tmp_path / "from_config.json"
    assert main(["eval", "--model", str(final), "--config", str(run / "config.toml"), "--k", "4",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["first_sample_accuracy"] == trainer_acc
    assert main(["eval", "--model", str(final)]) == 2
    assert "needs --task NAME or --config FILE" in capsys.readouterr().err


def test_solver_traces_are_right_and_mistakes_are_wrong():
    task = load_task("countdown", **RECIPE.task_options)
    rng = random.Random(0)
    items = task.items("test")[:300]
    assert all(task.score(write_trace(i.numbers, i.target, "+-*", None, rng), i) == 1.0 for i in items)
    false_yes = [task.score(write_trace(i.numbers, i.target, "+-*", "false_yes", rng), i) for i in items]
    assert sum(false_yes) < 0.8 * len(items)
    pairs = corpus(dataclasses.replace(RECIPE, traces=500), seed=0)
    test_prompts = {i.prompt for i in task.items("test")}
    assert not any(p in test_prompts for p, _ in pairs)  # warm-up never sees a held-out problem


TINY_RECIPE = dataclasses.replace(RECIPE, traces=64, hidden_size=32, intermediate_size=64, num_layers=1,
                                  num_heads=2, num_kv_heads=1, steps=3, batch_size=8, warmup_steps=1)


def test_base_recipe_is_deterministic_and_cached(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    built = []
    monkeypatch.setenv("RLINO_CACHE", str(tmp_path / "a"))
    a = base_model_dir(seed=0, recipe=TINY_RECIPE, log=built.append)
    assert built and a.is_dir()
    built.clear()
    assert base_model_dir(seed=0, recipe=TINY_RECIPE, log=built.append) == a and not built  # reused
    monkeypatch.setenv("RLINO_CACHE", str(tmp_path / "b"))
    b = base_model_dir(seed=0, recipe=TINY_RECIPE, log=built.append)
    c = base_model_dir(seed=1, recipe=TINY_RECIPE, log=built.append)
    sa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    sb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    sc = AutoModelForCausalLM.from_pretrained(c).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert TINY_RECIPE.key(0) != TINY_RECIPE.key(1) != RECIPE.key(0)


def test_length_ablation_config_crosses_arms_with_aggregations():
    from rlino.objectives import resolve_method

    root = Path(__file__).parents[1]
    _, shared, arms = load_compare_config(root / "configs" / "length-ablation.toml", [])
    cells = {(a.method, resolve_method(a.config(shared).method).aggregation) for a in arms}
    for method in ("grpo", "fisft_pos_neg"):
        for agg in ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"):
            assert (method, agg) in cells
    assert ("fisft_pos", "seq-mean-token-mean") in cells
    assert shared.model.name_or_path == "embedded:countdown" and shared.task.options == RECIPE.task_options


def test_shared_method_keys_apply_to_every_arm_and_the_arm_set_wins():
    _, shared, arms = load_compare_config(None, ["method.epochs_per_batch=2", "method.neg_weight=0.5",
                                                 'compare.arms=["grpo", {name = "x", method = "fisft_pos_neg", '
                                                 'set = ["method.neg_weight=0.25"]}]'])
    grpo, x = (arm.config(shared).method for arm in arms)
    assert (grpo.name, grpo.epochs_per_batch, grpo.neg_weight) == ("grpo", 2, 0.5)
    assert (x.name, x.epochs_per_batch, x.neg_weight) == ("fisft_pos_neg", 2, 0.25)
    with pytest.raises(RlinoError, match="method.name does not apply to a compare"):
        load_compare_config(None, ["method.name=grpo"])
